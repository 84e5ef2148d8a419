"""GPT-2 in the Hugging Face layout <-> `DecoderLM` params, as numpy trees (no files here:
`jaxdl.pretrained` reads and writes the directories).

`GPT2LMHeadModel` stores its linear layers as `Conv1D` weights of shape (in, out), the
transpose of PyTorch's `Linear` (which nanoGPT uses). The attention's query, key and value
are one fused `c_attn` of (dim, 3 dim); the output layer is the token table `wte` (tied);
positions are learned (`wpe`). `save_pretrained` names every tensor under `transformer.`
and leaves out the tied `lm_head.weight`; the checkpoints on the Hub name them without the
prefix. Both are read. The Conv1D layout is jaxdl's own kernel layout, so the mapping is
reshapes only:

    transformer.wte.weight (vocab, dim)          embed/embedding
    transformer.wpe.weight (positions, dim)      pos/table
    h.I.ln_1 / ln_2 / ln_f  weight, bias         blockI/ln_self / ln_mlp, ln_final: scale, bias
    h.I.attn.c_attn.weight (dim, 3 dim)          blockI/self_attn/{query,key,value}/kernel
                                                   (dim, heads, head_dim) each
    h.I.attn.c_attn.bias (3 dim)                 blockI/self_attn/{query,key,value}/bias
                                                   (heads, head_dim) each
    h.I.attn.c_proj.weight (dim, dim)            blockI/self_attn/out/kernel (heads, head_dim, dim)
    h.I.mlp.c_fc / c_proj  weight, bias          blockI/mlp/fc / proj: kernel, bias
"""

import numpy as np

from jaxdl.errors import UserError

PREFIX = "transformer."
# What a GPT-2 config must say for DecoderLM with nanoGPT's architecture to compute it.
ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
MLP_ACTIVATION = {"gelu_tanh": "gelu_new", "gelu": "gelu"}
LAYER_NORM_EPS = 1e-5
FIXED = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
         "reorder_and_upcast_attn": False, "add_cross_attention": False}


def model_options(hf_config: dict, where: str) -> dict:
    """The decoder_lm config keys a GPT-2 `config.json` means; a config this model cannot
    compute is a one-line error naming the field."""
    if hf_config.get("model_type") != "gpt2":
        raise UserError(f"{where} is a {hf_config.get('model_type')!r} checkpoint; jaxdl "
                        "imports GPT-2 (model_type 'gpt2') only")
    activation = hf_config.get("activation_function", "gelu_new")
    if activation not in ACTIVATIONS:
        raise UserError(f"{where}: activation_function {activation!r} is not one jaxdl "
                        f"computes ({', '.join(ACTIVATIONS)})")
    eps = float(hf_config.get("layer_norm_epsilon", LAYER_NORM_EPS))
    if abs(eps - LAYER_NORM_EPS) > 1e-12:
        raise UserError(f"{where}: layer_norm_epsilon {eps} differs from jaxdl's "
                        f"{LAYER_NORM_EPS}")
    for key, want in FIXED.items():
        if bool(hf_config.get(key, want)) != want:
            raise UserError(f"{where}: {key}={hf_config[key]} is not GPT-2's attention; "
                            "jaxdl computes only the standard one")
    if not hf_config.get("tie_word_embeddings", True):
        raise UserError(f"{where}: tie_word_embeddings is false; jaxdl imports GPT-2 with "
                        "its output layer tied to the token table")
    dim, heads = int(hf_config["n_embd"]), int(hf_config["n_head"])
    if dim % heads:
        raise UserError(f"{where}: n_embd {dim} is not divisible by n_head {heads}")
    inner = hf_config.get("n_inner")
    return {"num_layers": int(hf_config["n_layer"]), "num_heads": heads, "dim": dim,
            "vocab_size": int(hf_config["vocab_size"]),
            "max_positions": int(hf_config["n_positions"]),
            "mlp": ACTIVATIONS[activation], "mlp_dim": int(inner) if inner else 0,
            "use_bias": True, "positional": "learned", "norm": "layernorm",
            "qk_norm": False, "tie_embeddings": True, "logit_softcap": 0.0}


def hf_config(options: dict) -> dict:
    """The `config.json` of a GPT2LMHeadModel with these decoder_lm options (what
    `model_options` reads back)."""
    return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
            "vocab_size": options["vocab_size"], "n_positions": options["max_positions"],
            "n_embd": options["dim"], "n_layer": options["num_layers"],
            "n_head": options["num_heads"], "n_inner": options["mlp_dim"] or None,
            "activation_function": MLP_ACTIVATION[options["mlp"]],
            "layer_norm_epsilon": LAYER_NORM_EPS, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
            "attn_pdrop": 0.0, "initializer_range": 0.02, "scale_attn_weights": True,
            "tie_word_embeddings": True, "use_cache": True,
            "bos_token_id": options["vocab_size"] - 1, "eos_token_id": options["vocab_size"] - 1}


def _unprefixed(tensors: dict) -> dict:
    """Tensor names without `transformer.`, without the tied head and the attention
    buffers older checkpoints carry (`attn.bias`, `attn.masked_bias`: causal masks)."""
    out = {}
    for name, value in tensors.items():
        name = name.removeprefix(PREFIX)
        if name == "lm_head.weight" or name.endswith(("attn.masked_bias",)) or (
                name.endswith("attn.bias") and np.ndim(value) == 4):
            continue
        out[name] = value
    return out


def params_from_hf(tensors: dict, num_heads: int, where: str = "the checkpoint") -> dict:
    """DecoderLM params (float32 numpy) from a GPT2LMHeadModel's tensors."""
    sd = _unprefixed(tensors)
    head_of = tensors.get("lm_head.weight", tensors.get(PREFIX + "lm_head.weight"))
    if "wte.weight" not in sd:
        raise UserError(f"{where} has no GPT-2 token table (transformer.wte.weight)")
    if head_of is not None and not np.array_equal(np.asarray(head_of), sd["wte.weight"]):
        raise UserError(f"{where}: lm_head.weight differs from the token table; jaxdl "
                        "imports GPT-2 with its output layer tied")
    f32 = {k: np.asarray(v, np.float32) for k, v in sd.items()}
    dim = f32["wte.weight"].shape[1]
    head = (num_heads, dim // num_heads)
    layers = sorted({int(k.split(".")[1]) for k in f32 if k.startswith("h.")})

    def ln(name):
        return {"scale": f32[f"{name}.weight"], "bias": f32[f"{name}.bias"]}

    def dense(name):
        return {"kernel": f32[f"{name}.weight"], "bias": f32[f"{name}.bias"]}

    params = {"embed": {"embedding": f32["wte.weight"]}, "pos": {"table": f32["wpe.weight"]},
              "ln_final": ln("ln_f")}
    try:
        for i in layers:
            p = f"h.{i}"
            w, b = f32[f"{p}.attn.c_attn.weight"], f32[f"{p}.attn.c_attn.bias"]
            attn = {name: {"kernel": w[:, j * dim:(j + 1) * dim].reshape(dim, *head),
                           "bias": b[j * dim:(j + 1) * dim].reshape(head)}
                    for j, name in enumerate(("query", "key", "value"))}
            attn["out"] = {"kernel": f32[f"{p}.attn.c_proj.weight"].reshape(*head, dim),
                           "bias": f32[f"{p}.attn.c_proj.bias"]}
            params[f"block{i}"] = {"ln_self": ln(f"{p}.ln_1"), "ln_mlp": ln(f"{p}.ln_2"),
                                   "self_attn": attn, "mlp": {"fc": dense(f"{p}.mlp.c_fc"),
                                                              "proj": dense(f"{p}.mlp.c_proj")}}
    except KeyError as e:
        raise UserError(f"{where} lacks the GPT-2 tensor {PREFIX}{e.args[0]}") from None
    return params


def hf_from_params(params: dict) -> dict:
    """A GPT2LMHeadModel's tensors (float32 numpy, named as `save_pretrained` names them)
    from DecoderLM params with nanoGPT's architecture (learned positions, LayerNorm, tied
    head). A model without biases (nanoGPT's `bias=False`) is GPT-2 with zero biases."""

    def bias(module, size):
        return module["bias"] if "bias" in module else np.zeros(size, np.float32)

    embed = np.asarray(params["embed"]["embedding"])
    dim = embed.shape[1]
    out = {"wte.weight": embed, "wpe.weight": params["pos"]["table"],
           "ln_f.weight": params["ln_final"]["scale"],
           "ln_f.bias": bias(params["ln_final"], dim)}
    for i in range(sum(1 for k in params if k.startswith("block"))):
        b = params[f"block{i}"]
        a, fc, proj = b["self_attn"], b["mlp"]["fc"], b["mlp"]["proj"]
        qkv = [a[n] for n in ("query", "key", "value")]
        out.update({
            f"h.{i}.ln_1.weight": b["ln_self"]["scale"],
            f"h.{i}.ln_1.bias": bias(b["ln_self"], dim),
            f"h.{i}.ln_2.weight": b["ln_mlp"]["scale"],
            f"h.{i}.ln_2.bias": bias(b["ln_mlp"], dim),
            f"h.{i}.attn.c_attn.weight": np.concatenate(
                [np.asarray(m["kernel"]).reshape(dim, dim) for m in qkv], axis=1),
            f"h.{i}.attn.c_attn.bias": np.concatenate(
                [np.reshape(bias(m, dim), dim) for m in qkv]),
            f"h.{i}.attn.c_proj.weight": np.asarray(a["out"]["kernel"]).reshape(dim, dim),
            f"h.{i}.attn.c_proj.bias": bias(a["out"], dim),
            f"h.{i}.mlp.c_fc.weight": fc["kernel"],
            f"h.{i}.mlp.c_fc.bias": bias(fc, np.shape(fc["kernel"])[1]),
            f"h.{i}.mlp.c_proj.weight": proj["kernel"],
            f"h.{i}.mlp.c_proj.bias": bias(proj, dim)})
    return {PREFIX + k: np.ascontiguousarray(np.asarray(v, np.float32)) for k, v in out.items()}
