"""GPT-2 small's shape for the decoder LM, FSDP over every device, bfloat16 compute.

    # one host (a TPU VM v5e-8 / v4-8, or a GPU box): every chip on fsdp
    python -m jaxdl.run --config=configs/gpt2_small.py --workdir runs/gpt2_small
    # a multi-host slice (v5e-32, v4-32 ...): the same command on every host at once
    #   gcloud compute tpus tpu-vm ssh NAME --worker=all --command="cd jaxdl && \\
    #     .venv/bin/python -m jaxdl.run --config=configs/gpt2_small.py \\
    #     --workdir /mnt/shared/gpt2 --config.distributed=True --config.mesh.data=-1 \\
    #     --config.mesh.fsdp=8"

12 layers, 12 heads, width 768, context 1024 (GPT-2 small), no biases, tied embeddings,
on tiny shakespeare's characters: 85.8M parameters with the 65-character vocabulary
(GPT-2's own 124M is this plus its 50,257-token BPE table, 38.6M). AdamW at nanoGPT's
GPT-2 settings (lr 6e-4 with warmup, cosine to 6e-5, beta2 0.95, weight decay 0.1, clip
1.0). `mesh.data=1, mesh.fsdp=-1`: the parameters and Adam's moments split over every
device of the host (add hosts along `data`); `dtype=bfloat16` matmuls on float32 master
weights; batch 32 sequences per step (give 4 to each of 8 chips; raise with the slice).

Result: not yet trained on an accelerator (none lent so far). On CPU,
`python -m benchmarks.bench_sharding` compiles and runs its step under each 8-device mesh
(docs/sharding.md; the whole path: docs/gpt2_small.md); the single-device command is
`python -m jaxdl.run --config=configs/gpt2_small.py --workdir runs/gpt2_small`.
"""

from jaxdl import recipes


def get_config():
    c = recipes.get("decoder_lm").nanogpt_config()  # GPT-2 as nanoGPT trains it
    c.num_layers, c.num_heads, c.dim, c.seq_len = 12, 12, 768, 1024
    c.dropout = 0.0
    c.batch_size = 32
    c.num_steps = 5000
    c.batches_per_epoch = 500
    c.learning_rate, c.min_learning_rate, c.warmup_steps = 6e-4, 6e-5, 200
    c.beta2 = 0.95
    c.dtype = "bfloat16"
    c.mesh.data, c.mesh.fsdp = 1, -1
    c.eval_batch_size = 32
    return c
