"""The compiled train step's memory (`compiled.memory_analysis()`): gradient accumulation,
remat and dtype, for the decoder LM recipe at one shape (figures, not assertions).

    python -m benchmarks.memory [--layers 4 --dim 128 --seq 128 --batch 32]

Prints a markdown table: temporary bytes (activations and workspace XLA allocates for the
step), argument bytes (the state and the batch) and output bytes, in MB.
"""

from __future__ import annotations

import argparse

import jax

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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    a = p.parse_args(argv)
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
