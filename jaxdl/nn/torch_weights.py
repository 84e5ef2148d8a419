"""PyTorch weights into jaxdl params: the reference MY_NET and nanoGPT's GPT.

Both take a `state_dict` as plain numpy arrays (`{k: v.numpy() for k, v in
model.state_dict().items()}`), so jaxdl itself never needs torch. Each is tested against
golden outputs written by a PyTorch script under tests/ (logits; for nanoGPT also a whole
training trajectory).
"""

from collections.abc import Mapping

import numpy as np

from jaxdl.errors import UserError


def mynet_params_from_torch(state_dict: Mapping[str, np.ndarray]) -> dict:
    """Convert the reference `MY_NET.state_dict()` (as numpy arrays) into MyNet params.

    conv weights OIHW -> HWIO; linear weights (out, in) -> (in, out); and fc1's
    input axis re-ordered, because PyTorch flattens (C=128, H=12, W=12) while
    NHWC flattens (H, W, C).
    """
    sd = {k: np.asarray(v, np.float32) for k, v in state_dict.items()}
    missing = [k for k in ("conv1.weight", "conv2.weight", "conv3.weight", "fc1.weight",
                           "fc2.weight") if k not in sd]
    if missing:
        raise UserError(f"state_dict lacks {missing}; pass MY_NET().state_dict() as numpy")
    params = {}
    for name in ("conv1", "conv2", "conv3"):
        params[name] = {"kernel": sd[f"{name}.weight"].transpose(2, 3, 1, 0),
                        "bias": sd[f"{name}.bias"]}
    fc1 = sd["fc1.weight"]  # (512, 128*12*12) indexed (c, h, w)
    out = fc1.shape[0]
    params["fc1"] = {"kernel": fc1.reshape(out, 128, 12, 12).transpose(2, 3, 1, 0).reshape(-1, out),
                     "bias": sd["fc1.bias"]}
    params["fc2"] = {"kernel": sd["fc2.weight"].T, "bias": sd["fc2.bias"]}
    return params


def decoder_lm_params_from_nanogpt(state_dict, num_heads: int) -> dict:
    """Convert a nanoGPT `GPT.state_dict()` (numpy arrays, nanoGPT's key names) into params
    of `DecoderLM(vocab, num_layers, num_heads, dim, max_len, use_bias=..., positional=
    'learned')`, with or without biases. Linear weights (out, in) become (in, out) kernels;
    `c_attn`'s fused (3*dim, dim) projection splits into query/key/value kernels of
    (dim, heads, head_dim), and `c_proj` into the attention output's (heads, head_dim, dim).
    `lm_head.weight` is the tied token embedding. A `torch.compile` prefix is stripped.
    """
    sd = {k.removeprefix("_orig_mod."): np.asarray(v, np.float32)
          for k, v in state_dict.items()}
    if "transformer.wte.weight" not in sd:
        raise UserError("not a nanoGPT state_dict (no 'transformer.wte.weight'); pass "
                        "{k: v.numpy() for k, v in model.state_dict().items()} of a nanoGPT GPT")
    dim = sd["transformer.wte.weight"].shape[1]
    if dim % num_heads:
        raise UserError(f"model width {dim} is not divisible by {num_heads} heads")
    head = (num_heads, dim // num_heads)
    bias = "transformer.ln_f.bias" in sd

    def norm(prefix):
        out = {"scale": sd[f"{prefix}.weight"]}
        return {**out, "bias": sd[f"{prefix}.bias"]} if bias else out

    def dense(prefix, kernel_fn=lambda w: w.T, bias_fn=lambda b: b):
        out = {"kernel": kernel_fn(sd[f"{prefix}.weight"])}
        return {**out, "bias": bias_fn(sd[f"{prefix}.bias"])} if bias else out

    params = {"embed": {"embedding": sd["transformer.wte.weight"]},
              "pos": {"table": sd["transformer.wpe.weight"]},
              "ln_final": norm("transformer.ln_f")}
    n_layers = len({k.split(".")[2] for k in sd if k.startswith("transformer.h.")})
    for i in range(n_layers):
        p = f"transformer.h.{i}"
        attn = {name: dense(f"{p}.attn.c_attn",
                            lambda w, j=j: w[j * dim:(j + 1) * dim].T.reshape(dim, *head),
                            lambda b, j=j: b[j * dim:(j + 1) * dim].reshape(head))
                for j, name in enumerate(("query", "key", "value"))}
        attn["out"] = dense(f"{p}.attn.c_proj", lambda w: w.T.reshape(*head, dim))
        params[f"block{i}"] = {"ln_self": norm(f"{p}.ln_1"), "ln_mlp": norm(f"{p}.ln_2"),
                               "self_attn": attn,
                               "mlp": {"fc": dense(f"{p}.mlp.c_fc"),
                                       "proj": dense(f"{p}.mlp.c_proj")}}
    return params
