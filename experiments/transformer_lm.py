"""A GPT-style decoder-only Transformer, character level, on tiny shakespeare.

    python -m experiments.transformer_lm --workdir runs/transformer_lm
    jaxdl sample --workdir runs/transformer_lm --prompt "ROMEO:" --num 200

The default config is jaxdl's own recipe (`jaxdl.recipes.decoder_lm`: nanoGPT's CPU shape
with rotary positions, RMSNorm, QK-norm, ReLU^2, an untied head and Muon, batch 32, 300
steps). Measured here (2-core AMD EPYC, 2026-12-02, benchmarks/lm_race.py): full-split
validation loss 1.7098 +- 0.0073 over three seeds in 110-123 s of training, where nanoGPT's
recipe in PyTorch reaches 1.9120 in 149-155 s. nanoGPT's recipe itself:
`--config=configs/nanogpt_shakespeare_char.py` (docs/transformers.md).
"""

from jaxdl import recipes, run
from jaxdl.entry import run_experiment


def get_config():
    return recipes.get("decoder_lm").get_config()


main = run.train

if __name__ == "__main__":
    run_experiment(main, get_config, "runs/transformer_lm")
