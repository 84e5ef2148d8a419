"""jaxdl's own decoder recipe at nanoGPT's GPU `shakespeare_char` shape: the race entry.

    python -m jaxdl.run --config=configs/shakespeare_char_gpu.py --workdir runs/jgpu

The default decoder_lm recipe (rotary positions, RMSNorm, QK-norm, ReLU² MLP, untied head,
zero-initialised output projections, logit soft-cap 15; Muon on the block matrices with
AdamW on the rest, warmup then linear decay to zero) at nanoGPT's GPU shape: 6 layers, 6
heads, width 384, context 256, batch 64, bfloat16; dropout 0.2 on the residual branches
and embeddings as nanoGPT, none on the attention weights (so attention stays one fused
kernel); 2,000 steps, 100 of warmup. Goal: full-split val <= 1.47 in at most half of
nanoGPT's wall time on the same GPU.

Result: see docs/accelerators.md, "the GPU race"
(`python -m benchmarks.gpu_race`).
"""

from jaxdl import recipes


def get_config():
    c = recipes.get("decoder_lm").get_config()
    c.num_layers, c.num_heads, c.dim, c.seq_len = 6, 6, 384, 256
    c.batch_size = 64
    c.dropout = 0.2
    c.num_steps = 2000
    c.warmup_steps = 100
    c.batches_per_epoch = 500
    c.dtype = "bfloat16"
    c.eval_every = 250
    return c
