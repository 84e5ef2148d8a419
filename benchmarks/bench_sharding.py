"""The GPT-2-small decoder LM (configs/gpt2_small.py, float32 here) on 8 fake CPU devices
under each mesh: per-device state bytes, the compiled step's memory and its step time.

    python -m benchmarks.bench_sharding [--quick]      (also in `make bench`)

The device count is fixed before JAX starts, so the measuring runs in a child process.
Figures, not assertions: on one CPU the 8 "devices" share its cores, so step times show
the cost of the collectives rather than a speed-up; the memory columns are what a slice
of 8 chips would hold per chip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

MESHES = {"data8": (8, 1, 1), "fsdp8": (1, 8, 1), "data2_fsdp4": (2, 4, 1),
          "data2_fsdp2_tensor2": (2, 2, 2)}


def child(quick: bool) -> dict:
    import importlib.util

    import jax
    import numpy as np

    from jaxdl import recipes
    from jaxdl.train import make_train_step, parallel, sharding

    spec = importlib.util.spec_from_file_location(
        "gpt2_small", Path(__file__).resolve().parent.parent / "configs" / "gpt2_small.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.update(dtype="float32", batch_size=8, seq_len=128 if quick else 1024)
    if quick:
        config.update(num_layers=2)
    recipe = recipes.get("decoder_lm")
    data = recipe.load_data(config)
    task = recipe.build(config, data)
    batch = next(recipe.train_loader(config, data).epoch(0))
    out = {"params": None, "seq_len": config.seq_len, "layers": config.num_layers}
    for name, (d, f, t) in MESHES.items():
        mesh = parallel.make_mesh(data=d, fsdp=f, tensor=t)
        shardings = task.state_shardings(mesh)
        state = task.init_state(0, shardings)
        out["params"] = int(sum(x.size for x in jax.tree.leaves(state.params)))
        step = parallel.compile_sharded_train_step(
            make_train_step(task.loss_fn, task.model), mesh, state_sharding=shardings)
        placed = parallel.shard_batch(batch, mesh)
        t0 = time.perf_counter()
        compiled = step.lower(state, placed).compile()
        compile_s = time.perf_counter() - t0
        mem = compiled.memory_analysis()
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            state, metrics = step(state, placed)
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - t0)
        out[name] = {**sharding.state_bytes(state), "compile_s": compile_s,
                     "temp_bytes": mem.temp_size_in_bytes,
                     "argument_bytes": mem.argument_size_in_bytes,
                     "step_s": min(times), "loss": float(metrics["loss_sum"] / metrics["count"])}
        del state
        print(name, json.dumps(out[name]), file=sys.stderr, flush=True)
    assert np.isfinite(out["fsdp8"]["loss"])
    return out


def run(quick: bool = False, say=print, log=None) -> dict:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_sharding", "--child"] +
                          (["--quick"] if quick else []), env=env, capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parent.parent)
    if log is not None:
        log.write(proc.stderr)
    if proc.returncode:
        raise RuntimeError(f"bench_sharding failed:\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    say(f"sharding: {out}")
    return out


def table(out: dict) -> str:
    mb = 1e6
    lines = [f"GPT-2 small shape, {out['layers']} layers, {out['params']:,} parameters, batch 8 x "
             f"{out['seq_len']}, float32, 8 fake CPU devices",
             "| mesh | state / device (MB) | state total (MB) | step temporaries (MB) | "
             "compile (s) | step (s) |", "|---|---:|---:|---:|---:|---:|"]
    for name in MESHES:
        r = out[name]
        lines.append(f"| {name} | {r['state_bytes_per_device'] / mb:,.0f} | "
                     f"{r['state_bytes_total'] / mb:,.0f} | {r['temp_bytes'] / mb:,.0f} | "
                     f"{r['compile_s']:.0f} | {r['step_s']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    if "--child" in sys.argv:
        print(json.dumps(child(quick)))
    else:
        print(table(run(quick)))
