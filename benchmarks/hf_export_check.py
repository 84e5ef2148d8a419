"""jaxdl's GPT-2 export, loaded by `transformers` itself: the golden checkpoint
(tests/golden_hf_gpt2.py) imported into jaxdl, exported with `jaxdl.pretrained.write_gpt2`,
loaded with `GPT2LMHeadModel.from_pretrained`, and both models' logits compared on the same
tokens. Part of `make bench` (which installs torch and transformers); needs neither jaxdl's
tests nor the network:

    python -m benchmarks.hf_export_check
"""

import tempfile
from pathlib import Path

import numpy as np

# Both in float32 on the CPU; jaxdl against the golden logits: 1.8e-7 (2-core Intel Xeon,
# 2026-12-06).
TOL = 1e-5


def main() -> dict:
    import jax
    import jax.numpy as jnp
    import torch
    from transformers import GPT2LMHeadModel

    from jaxdl import pretrained, recipes
    from jaxdl.recipes.decoder_lm import build_model
    from tests.golden_hf_gpt2 import GOLDEN, tokens

    got = pretrained.read_gpt2(f"hf:{GOLDEN}")
    config = recipes.get("decoder_lm").get_config()
    config.update({k: v for k, v in got.options.items() if k in config})
    config.seq_len = got.options["max_positions"]
    model = build_model(config, got.options["vocab_size"])
    ids = tokens()
    ours = np.asarray(model.apply({"params": jax.tree.map(jnp.asarray, got.params)},
                                  jnp.asarray(ids, jnp.int32)))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "export"
        pretrained.write_gpt2(out, config, got.params)
        theirs = GPT2LMHeadModel.from_pretrained(out).eval()
        with torch.no_grad():
            logits = theirs(torch.from_numpy(ids)).logits.numpy()
    gap = float(np.abs(ours - logits).max())
    print(f"GPT-2 export loaded by transformers: max |logits gap| {gap:.2e} (bound {TOL:g})")
    if not gap < TOL:
        raise SystemExit(f"error: the exported GPT-2 gives other logits in transformers "
                         f"(max gap {gap:.2e} >= {TOL:g})")
    return {"max_logit_gap": gap, "bound": TOL}


if __name__ == "__main__":
    main()
