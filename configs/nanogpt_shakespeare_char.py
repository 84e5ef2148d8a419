"""nanoGPT's own CPU recipe of `shakespeare_char`, followed step for step.

    python -m jaxdl.run --config=configs/nanogpt_shakespeare_char.py --workdir runs/nanogpt

4 layers, 4 heads, width 128, context 64, batch 12, 2000 iterations, dropout 0, AdamW lr
1e-3 (100 warmup steps, cosine to 1e-4), beta2 0.99, weight decay 0.1 on matrices, clip
1.0, no biases, tied embeddings, learned positions, LayerNorm, GELU: nanoGPT's README
command `python train.py config/train_shakespeare_char.py --device=cpu --compile=False
--eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4
--n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0`.

Result: full-split validation loss 1.9106 (seed 0; nanoGPT itself 1.891-1.920 over five
seeds) on a 2-core Xeon; `tests/test_transformer.py` checks it step for step against
nanoGPT's train.py. jaxdl's default decoder recipe beats it in the same wall time
(docs/transformers.md, the race).
"""

from jaxdl import recipes


def get_config():
    return recipes.get("decoder_lm").nanogpt_config()
