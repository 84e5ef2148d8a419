"""The compiled train step's memory (`compiled.memory_analysis()`): gradient accumulation,
remat and dtype, for the decoder LM recipe at one shape (figures, not assertions); and
the LM loss, plain against chunked (`--config.loss_impl`), by vocabulary size, with the
step's time on this machine: where `auto` should chunk.

    python -m benchmarks.memory [--layers 4 --dim 128 --seq 128 --batch 32]
    python -m benchmarks.memory --loss [--vocabs 65,1024,8192,50304]

Prints markdown tables: temporary bytes (activations and workspace XLA allocates for the
step), argument bytes (the state and the batch), in MB; for the loss, also the step's
best time of 5 (ms).
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import numpy as np

from jaxdl import recipes
from jaxdl.train import make_train_step

ROWS = [  # (grad_accum_steps, remat, dtype, opt_state_dtype)
    (1, "none", "float32", "float32"), (2, "none", "float32", "float32"),
    (4, "none", "float32", "float32"), (1, "block", "float32", "float32"),
    (1, "full", "float32", "float32"), (1, "none", "bfloat16", "float32"),
    (1, "none", "bfloat16", "bfloat16"), (4, "full", "bfloat16", "bfloat16"),
]


def measure(layers: int, dim: int, seq: int, batch: int) -> list[dict]:
    recipe = recipes.get("decoder_lm")
    out = []
    for k, remat, dtype, state_dtype in ROWS:
        config = recipe.get_config()
        config.update(num_layers=layers, dim=dim, num_heads=max(dim // 32, 1), seq_len=seq,
                      batch_size=batch, remat=remat, dtype=dtype, grad_accum_steps=k,
                      opt_state_dtype=state_dtype)
        data = recipe.load_data(config)
        task = recipe.build(config, data)
        state = task.abstract_state(0)
        shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                              next(recipe.train_loader(config, data).epoch(0)))
        step = jax.jit(make_train_step(task.loss_fn, task.model, grad_accum_steps=k))
        mem = step.lower(state, shapes).compile().memory_analysis()
        out.append({"grad_accum_steps": k, "remat": remat, "dtype": dtype,
                    "opt_state_dtype": state_dtype,
                    "temp_mb": mem.temp_size_in_bytes / 1e6,
                    "argument_mb": mem.argument_size_in_bytes / 1e6,
                    "output_mb": mem.output_size_in_bytes / 1e6})
    return out


def loss_rows(vocabs, layers: int, dim: int, seq: int, batch: int) -> list[dict]:
    """nanoGPT's architecture at this shape, one row per (vocabulary, loss_impl)."""
    from jaxdl.recipes.decoder_lm import build_model_and_optimizer
    from jaxdl.tasks import language
    from jaxdl.train import create_train_state
    from jaxdl.train.compile import compile_step

    config = recipes.get("decoder_lm").nanogpt_config()
    config.update(num_layers=layers, dim=dim, num_heads=max(dim // 32, 1), seq_len=seq)
    out = []
    for vocab in vocabs:
        tokens = np.random.default_rng(0).integers(0, vocab, (batch, seq + 1), dtype=np.int32)
        for impl in ("plain", "chunked"):
            model, tx, _ = build_model_and_optimizer(config, vocab)
            loss = functools.partial(language.next_token_loss, loss_impl=impl)
            state = create_train_state(model, tx, jax.random.PRNGKey(0), tokens[:1, :-1])
            step = compile_step(make_train_step(loss, model))
            batch_ = {"tokens": tokens}
            mem = step.lower(state, batch_).compile().memory_analysis()
            state, m = step(state, batch_)
            times = []
            for _ in range(5):
                t = time.perf_counter()
                state, m = step(state, batch_)
                jax.block_until_ready(m)
                times.append(time.perf_counter() - t)
            out.append({"vocab": vocab, "loss_impl": impl, "temp_mb": mem.temp_size_in_bytes
                        / 1e6, "step_ms": 1000 * min(times),
                        "logits_mb": 4 * batch * seq * vocab / 1e6})
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--loss", action="store_true", help="the loss table instead")
    p.add_argument("--vocabs", default="65,1024,8192,50304")
    a = p.parse_args(argv)
    if a.loss:
        rows = loss_rows([int(v) for v in a.vocabs.split(",")], a.layers, a.dim, a.seq,
                         a.batch)
        print(f"decoder LM (nanoGPT's architecture) {a.layers} x {a.dim}, batch {a.batch} x "
              f"{a.seq}, {jax.devices()[0].device_kind}")
        print("| vocabulary | float32 logits (MB) | loss_impl | temporary (MB) | step (ms) |")
        print("|---:|---:|---|---:|---:|")
        for r in rows:
            print(f"| {r['vocab']:,} | {r['logits_mb']:.1f} | {r['loss_impl']} | "
                  f"{r['temp_mb']:.1f} | {r['step_ms']:.1f} |")
        return
    rows = measure(a.layers, a.dim, a.seq, a.batch)
    print(f"decoder LM {a.layers} x {a.dim}, batch {a.batch} x {a.seq}, "
          f"{jax.devices()[0].device_kind}")
    print("| grad_accum_steps | remat | dtype | opt_state_dtype | temporary (MB) | "
          "arguments (MB) |")
    print("|---:|---|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['grad_accum_steps']} | {r['remat']} | {r['dtype']} | "
              f"{r['opt_state_dtype']} | {r['temp_mb']:.1f} | {r['argument_mb']:.1f} |")


if __name__ == "__main__":
    main()
