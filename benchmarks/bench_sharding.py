"""The GPT-2-small decoder LM (configs/gpt2_small.py, float32 here) on 8 fake CPU devices
under each mesh: per-device state bytes, the compiled step's memory and its step time.

    python -m benchmarks.bench_sharding [--quick] [--window N]     (also in `make bench`)

The model is GPT-2 small's whole (85.8M parameters, context 1024); each step trains on a
batch of 8 windows of `--window` tokens (default 256; the parameters, hence the state,
do not depend on it, the activations do). The device count is fixed before JAX starts,
so the measuring runs in a child process. Every mesh is compiled (`memory_analysis` is
per device); its steps run only where 8 devices' worth of arguments and temporaries fit
in 60% of this machine's free memory (data parallelism at full context does not, on a
24 GB host). Figures, not assertions: on one CPU the 8 "devices" share its cores, so
step times show the cost of the collectives rather than a speed-up; the memory columns
are what a slice of 8 chips would hold per chip. tests/test_sharding.py runs `measure`
for its (fsdp 8) memory bound.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MESHES = {"data8": (8, 1, 1), "fsdp8": (1, 8, 1), "data2_fsdp4": (2, 4, 1),
          "data2_fsdp2_tensor2": (2, 2, 2)}
BATCH = 8  # one sequence per device


def gpt2_config(**overrides):
    """configs/gpt2_small.py's config, in float32, with `overrides`."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpt2_small", ROOT / "configs" / "gpt2_small.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.update(dtype="float32", batch_size=BATCH, **overrides)
    return config


def free_bytes() -> int:
    """MemAvailable of this host (Linux), or 8 GiB where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def measure(meshes: dict, *, window: int, steps: int = 2, layers: int | None = None,
            run_on=None) -> dict:
    """Per mesh name -> (data, fsdp, tensor): the state's bytes per device (from its
    shardings, nothing allocated), the compiled step's `memory_analysis`, and (where it
    fits this host, and the name is in `run_on`, default all) `steps` train steps' times
    and losses. Needs 8 devices."""
    import jax
    import numpy as np

    from jaxdl import recipes
    from jaxdl.train import make_mesh, make_train_step, parallel, sharding
    from jaxdl.train.placement import Placement

    config = gpt2_config(**({"num_layers": layers} if layers else {}))
    recipe = recipes.get("decoder_lm")
    data = recipe.load_data(config)
    task = recipe.build(config, data)
    batch = {k: np.asarray(v)[:, :window] if np.ndim(v) == 2 else v
             for k, v in next(recipe.train_loader(config, data).epoch(0)).items()}
    abstract = task.abstract_state()
    out = {"params": int(sum(x.size for x in jax.tree.leaves(abstract.params))),
           "layers": config.num_layers, "context": config.seq_len, "window": window,
           "batch": BATCH}
    budget = 0.6 * free_bytes()
    for name, (d, f, t) in meshes.items():
        mesh = make_mesh(data=d, fsdp=f, tensor=t)
        shardings = Placement(mesh).state_shardings(  # (data 8): every leaf whole on each device
            abstract, task.logical_specs())
        placed = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                              abstract, shardings)
        step = parallel.compile_sharded_train_step(
            make_train_step(task.loss_fn, task.model), mesh, state_sharding=shardings)
        split = parallel.data_sharding(mesh)
        data_in = {k: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype, sharding=split)
                   for k, x in batch.items()}
        t0 = time.perf_counter()
        mem = step.lower(placed, data_in).compile().memory_analysis()
        row = {**_state_bytes(placed), "compile_s": time.perf_counter() - t0,
               "temp_bytes": int(mem.temp_size_in_bytes),
               "argument_bytes": int(mem.argument_size_in_bytes)}
        need = 8 * (row["argument_bytes"] + row["temp_bytes"] + mem.output_size_in_bytes
                    - mem.alias_size_in_bytes)
        if steps and need < budget and (run_on is None or name in run_on):
            state = jax.jit(task.init, out_shardings=shardings)(jax.random.PRNGKey(0))
            host_batch = parallel.shard_batch(batch, mesh)
            times, losses = [], []
            for _ in range(steps):
                t0 = time.perf_counter()
                state, metrics = step(state, host_batch)
                jax.block_until_ready(metrics)
                times.append(time.perf_counter() - t0)
                losses.append(float(metrics["loss_sum"] / metrics["count"]))
            row.update(step_s=min(times), losses=losses, steps=int(state.step),
                       measured_state_bytes_per_device=sharding.state_bytes(state)[
                           "state_bytes_per_device"])
            del state
        else:
            row.update(step_s=None, needs_bytes=int(need), budget_bytes=int(budget))
        out[name] = row
        print(name, json.dumps(row), file=sys.stderr, flush=True)
    return out


def _state_bytes(placed) -> dict:
    """Total and per-device bytes of a state given as ShapeDtypeStructs with shardings,
    and the bytes of the leaves every device holds whole."""
    import jax

    total = per_device = whole = 0
    for leaf in jax.tree.leaves(placed):
        size = math.prod(leaf.shape) * leaf.dtype.itemsize
        shard = math.prod(leaf.sharding.shard_shape(leaf.shape)) * leaf.dtype.itemsize
        total, per_device = total + size, per_device + shard
        whole += size if shard == size else 0
    return {"state_bytes_total": int(total), "state_bytes_per_device": int(per_device),
            "unsplit_bytes": int(whole)}


def run(quick: bool = False, say=print, log=None, *, window: int = 256) -> dict:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu"}
    args = ["--window", str(64 if quick else window)] + (["--layers", "2"] if quick else [])
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_sharding", "--child", *args],
                          env=env, capture_output=True, text=True, cwd=ROOT)
    if log is not None:
        log.write(proc.stderr)
    if proc.returncode:
        raise RuntimeError(f"bench_sharding failed:\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    say(f"sharding: {out}")
    return out


def table(out: dict) -> str:
    mb = 1e6
    lines = [f"GPT-2 small, {out['layers']} layers, {out['params']:,} parameters (context "
             f"{out['context']}), batch {out['batch']} x {out['window']} tokens, float32, "
             "8 fake CPU devices",
             "| mesh | state / device (MB) | state total (MB) | step temporaries / device (MB) "
             "| compile (s) | step (s) |", "|---|---:|---:|---:|---:|---:|"]
    for name in MESHES:
        r = out[name]
        step = (f"not run: needs {r['needs_bytes'] / 1e9:.0f} GB" if r["step_s"] is None
                else f"{r['step_s']:.1f}")
        lines.append(f"| {name} | {r['state_bytes_per_device'] / mb:,.0f} | "
                     f"{r['state_bytes_total'] / mb:,.0f} | {r['temp_bytes'] / mb:,.0f} | "
                     f"{r['compile_s']:.0f} | {step} |")
    return "\n".join(lines)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--child", action="store_true")
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--layers", type=int, default=0)
    p.add_argument("--test", action="store_true",
                   help="tests/test_sharding.py's run: (data 8) compiled, (fsdp 8) 2 steps")
    a = p.parse_args()
    if a.test:
        print(json.dumps(measure({k: MESHES[k] for k in ("data8", "fsdp8")}, window=a.window,
                                 run_on=("fsdp8",))))
    elif a.child:
        print(json.dumps(measure(MESHES, window=a.window, layers=a.layers or None)))
    else:
        print(table(run(a.quick, window=a.window)))
