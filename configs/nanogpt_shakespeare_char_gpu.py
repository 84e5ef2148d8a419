"""nanoGPT's GPU recipe of `shakespeare_char` (its config/train_shakespeare_char.py).

    python -m jaxdl.run --config=configs/nanogpt_shakespeare_char_gpu.py --workdir runs/ngpu

6 layers, 6 heads, width 384, context 256, batch 64, dropout 0.2 (embeddings, attention,
residual branches), 5,000 iterations, AdamW lr 1e-3 (100 warmup steps, cosine to 1e-4 at
5,000), beta2 0.99, weight decay 0.1 on matrices, clip 1.0, no biases, tied embeddings,
learned positions, LayerNorm, GELU; bfloat16 matmuls, as nanoGPT's autocast on a GPU.
nanoGPT's README: val 1.4697 after about 3 minutes on one A100.

Result: see docs/accelerators.md, "the GPU race"
(`python -m benchmarks.gpu_race`, which runs this config beside nanoGPT's PyTorch loop).
On a CPU a step takes seconds: this config is for GPUs and TPUs.
"""

from jaxdl import recipes


def get_config():
    c = recipes.get("decoder_lm").nanogpt_config()
    c.num_layers, c.num_heads, c.dim, c.seq_len = 6, 6, 384, 256
    c.batch_size = 64
    c.dropout = c.attention_dropout = 0.2
    c.num_steps = 5000
    c.batches_per_epoch = 500  # a checkpoint and a curve point every 500 steps
    c.learning_rate, c.min_learning_rate, c.warmup_steps = 1e-3, 1e-4, 100
    c.dtype = "bfloat16"
    c.eval_every = 500
    return c
