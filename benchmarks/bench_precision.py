"""bfloat16 against float32 on this CPU: jaxdl's and PyTorch's own ratio, side by side.

    python -m benchmarks.bench_precision [--quick]     (also in `make bench`)

Cases, each side in its own process:
  matmul    the best 2048x2048 matmul (GFLOP/s) in float32 and bfloat16: XLA:CPU vs
            PyTorch (oneDNN, which uses AMX tiles where the CPU has `amx_bf16`)
  cnn       MyNet train and inference at batch 64 (random images), float32 vs bfloat16
            (`--config.dtype=bfloat16`; the peer under bf16 autocast): benchmarks/accelerator's
            workers at this batch
Figures are medians over repetitions; the ratio is bf16 / f32 within one side.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BATCH = 64
PRECISIONS = ("float32_highest", "bfloat16")  # full float32 (no TF32 on CPUs anyway)


def jax_side(quick: bool) -> dict:
    from jaxdl.train import flops

    peaks = {dt: flops.measured_cpu_peak(dt) / 1e9 for dt in ("float32", "bfloat16")}
    from benchmarks import accelerator_jax

    return {"matmul_gflops": peaks,
            "cnn": accelerator_jax.cnn(quick, BATCH, 3 if quick else 10, PRECISIONS)}


def torch_side(quick: bool) -> dict:
    import time

    import torch

    peaks = {}
    for name, dt in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a = torch.ones(2048, 2048, dtype=dt)
        a @ a
        best = min(_time(lambda a=a: a @ a, time) for _ in range(5))
        peaks[name] = 2 * 2048**3 / best / 1e9
    from benchmarks import accelerator_torch

    return {"matmul_gflops": peaks,
            "cnn": accelerator_torch.cnn(quick, BATCH, 3 if quick else 10, PRECISIONS)}


def _time(fn, time) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run(quick: bool = False, say=print, log=None) -> dict:
    out = {}
    for side in ("jaxdl", "torch"):
        proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_precision", "--worker",
                               side] + (["--quick"] if quick else []), capture_output=True,
                              text=True, cwd=Path(__file__).resolve().parent.parent)
        if log is not None:
            log.write(proc.stderr)
        if proc.returncode:
            raise RuntimeError(f"bench_precision {side} failed:\n{proc.stderr[-2000:]}")
        out[side] = json.loads(proc.stdout.strip().splitlines()[-1])
        say(f"precision {side}: {out[side]}")
    for side in out.values():
        side["bf16_over_f32"] = {
            "matmul": side["matmul_gflops"]["bfloat16"] / side["matmul_gflops"]["float32"],
            **{what: side["cnn"]["bfloat16"][f"{what}_img_per_s"] /
               side["cnn"]["float32_highest"][f"{what}_img_per_s"]
               for what in ("train", "infer")}}
    return out


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    if "--worker" in sys.argv:
        side = sys.argv[sys.argv.index("--worker") + 1]
        print(json.dumps((jax_side if side == "jaxdl" else torch_side)(quick), default=float))
    else:
        print(json.dumps(run(quick), indent=1, default=float))
