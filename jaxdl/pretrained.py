"""Pretrained checkpoints in and out, in the Hugging Face GPT-2 layout:

    DIR/config.json         GPT2Config (model_type "gpt2")
    DIR/model.safetensors   the GPT2LMHeadModel's tensors (read with `safetensors`: no torch)
    DIR/tokenizer.json      its tokenizer, where it has one

`read_gpt2("hf:DIR")` gives the decoder_lm options that architecture means (nanoGPT's:
learned positions, LayerNorm with biases, tied head, GPT-2's tanh GELU) and its params;
`write_gpt2` writes a decoder_lm run back in that layout, which `transformers`'
`GPT2LMHeadModel.from_pretrained(DIR)` loads. `jaxdl.nn.hf_gpt2` maps the tensors. Every
bad input is one line, before any work."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np

from jaxdl.errors import UserError
from jaxdl.nn import hf_gpt2

SCHEME = "hf:"
FILES = ("config.json", "model.safetensors")
# decoder_lm options GPT-2's layout fixes, with the value it needs (what export checks).
# (A model without biases is GPT-2 with zero biases: exported, it reads back with them.)
EXPRESSIBLE = {"positional": "learned", "norm": "layernorm", "qk_norm": False,
               "tie_embeddings": True, "logit_softcap": 0.0}


@dataclasses.dataclass
class Pretrained:
    directory: Path
    options: dict  # decoder_lm config keys (num_layers, dim, ...) plus vocab_size, max_positions
    params: dict  # DecoderLM params, float32 numpy
    tokenizer: Path | None  # DIR/tokenizer.json, where there is one


def directory_of(spec: str) -> Path:
    """`hf:DIR` -> DIR (one line for another form)."""
    if not str(spec).startswith(SCHEME):
        raise UserError(f"init_from {spec!r} is not a pretrained checkpoint; give hf:DIR, a "
                        "directory with config.json and model.safetensors")
    return Path(str(spec)[len(SCHEME):]).expanduser()


def read_config(directory: Path) -> dict:
    """The decoder_lm options of DIR's config.json (checked: files, architecture)."""
    if not directory.is_dir():
        raise UserError(f"{directory} is not a directory; give hf:DIR, a Hugging Face GPT-2 "
                        "directory (config.json, model.safetensors)")
    missing = [f for f in FILES if not (directory / f).is_file()]
    if missing:
        raise UserError(f"{directory} has no {' and no '.join(missing)}; a Hugging Face "
                        "checkpoint directory has both (save_pretrained writes them)")
    try:
        config = json.loads((directory / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{directory / 'config.json'} is not JSON ({e})") from None
    return hf_gpt2.model_options(config, str(directory))


def read_gpt2(spec: str) -> Pretrained:
    directory = directory_of(spec)
    options = read_config(directory)
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(directory / "model.safetensors")
    except (SafetensorError, OSError) as e:
        raise UserError(f"{directory / 'model.safetensors'} cannot be read ({e})") from None
    params = hf_gpt2.params_from_hf(tensors, options["num_heads"], str(directory))
    rows = params["embed"]["embedding"].shape[0]
    if rows != options["vocab_size"]:
        raise UserError(f"{directory}: the token table has {rows} rows, config.json says "
                        f"vocab_size {options['vocab_size']}")
    tokenizer = directory / "tokenizer.json"
    if tokenizer.is_file():
        size = tokenizer_size(tokenizer)
        if size != rows:
            raise UserError(f"{tokenizer} has {size} tokens and the weights {rows}: a "
                            "tokenizer of another model; give the checkpoint's own")
    return Pretrained(directory, options, params, tokenizer if tokenizer.is_file() else None)


def tokenizer_size(path: Path) -> int:
    """Tokens of a Hugging Face `tokenizer.json` (one line if it is not one)."""
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path)).get_vocab_size(with_added_tokens=True)
    except Exception as e:  # noqa: BLE001 - the tokenizers library raises plain Exception
        raise UserError(f"{path} is not a Hugging Face tokenizer ({str(e)[:120]})") from None


def check_expressible(config) -> None:
    """One line naming the first decoder_lm option the GPT-2 layout cannot hold."""
    for key, want in EXPRESSIBLE.items():
        if config.get(key) != want:
            raise UserError(f"the GPT-2 layout cannot express {key}={config.get(key)!r} "
                            f"(it needs {key}={want!r}); export runs with nanoGPT's "
                            "architecture (--config=configs/nanogpt_shakespeare_char.py)")
    if config.get("mlp") not in hf_gpt2.MLP_ACTIVATION:
        raise UserError(f"the GPT-2 layout cannot express mlp={config.get('mlp')!r} (it "
                        f"needs one of {', '.join(hf_gpt2.MLP_ACTIVATION)})")


def write_gpt2(out: Path, config, params, tokenizer: Path | None = None) -> dict:
    """`out`/config.json, model.safetensors (and tokenizer.json) for a decoder_lm run's
    config and params; returns the config.json written."""
    from safetensors.numpy import save_file

    check_expressible(config)
    out = Path(out)
    if any((out / f).exists() for f in FILES):
        raise UserError(f"{out} already holds a checkpoint; choose another --out or remove it")
    vocab, dim = np.shape(params["embed"]["embedding"])
    options = {"vocab_size": int(vocab), "max_positions": int(np.shape(params["pos"]["table"])[0]),
               "dim": int(dim), "num_layers": sum(1 for k in params if k.startswith("block")),
               "num_heads": int(config.num_heads), "mlp": config.mlp,
               "mlp_dim": int(config.get("mlp_dim", 0))}
    hf = hf_gpt2.hf_config(options)
    out.mkdir(parents=True, exist_ok=True)
    save_file(hf_gpt2.hf_from_params(params), out / "model.safetensors",
              metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    if tokenizer is not None:
        shutil.copyfile(tokenizer, out / "tokenizer.json")
    return hf
