"""jaxdl against PyTorch peers on whatever accelerator this machine has (or the CPU).

    benchmarks/accelerator.sh            # every case, at most 7 minutes, on a GPU machine
    python -m benchmarks.accelerator --quick --out /tmp/acc.json   # tiny shapes (CI, CPU)

Each (side, case) runs in a process of its own (JAX preallocates most of a GPU's memory),
one after the other, on the same random data shapes; the jaxdl side is
benchmarks/accelerator_jax.py, the peers benchmarks/accelerator_torch.py.

  lm         nanoGPT's architecture at GPT-2-small shape on both sides (12 layers, 12 heads,
             width 768, context 1024, vocabulary 50304, no biases, tied head, learned
             positions, GELU, AdamW with nanoGPT's settings; random tokens), bfloat16, the
             largest of 64/32/16/8 sequences that fits: train tokens/s, MFU by the jaxpr
             count (attention counted whichever kernel runs) and `mfu_6n` by nanoGPT's
             6N + 12 L H Q T against the chip's dense peak. jaxdl: `nanogpt_config()` at that
             shape, the plain and the chunked loss and the GPU train-step candidates (the
             fastest is the figure; a profile of it comes back); peer: nanoGPT's GPT with
             bf16 autocast, scaled_dot_product_attention, fused AdamW, torch.compile.
  lm_recipe  jaxdl's own decoder recipe (Muon, rotary, untied head...) at that shape, jaxdl
             only: how far it is from the nanoGPT-architecture step.
  generate   KV-cache generation at GPT-2-small shape, bfloat16, 16 prompt tokens + 256 new,
             batch 1 and 64: jaxdl's one-program `generate_cached` (each GPU candidate,
             e.g. command buffers for the loop; copies of the cache in its HLO; device ops
             per token) against nanoGPT's eager cached loop and gpt-fast's static cache
             under torch.compile(mode="reduce-overhead").
  cnn        MyNet (the reference CNN) at batch 256: train and inference images/s in
             float32 as TF32 and as full float32 (both sides alike, named), and bfloat16.
  unet       the text2img recipe's UNet train step at batch 256, images/s, float32 at both
             precisions (the small text encoder is not part of either side).

A deadline (`--budget`, 420 s) bounds the whole run: each worker gets the time left, and a
case that cannot start is reported as skipped. Each worker's wall time is printed. Writes
one JSON (figures, ratios jaxdl/peer, the device, versions) and prints a table.
`--quick` shrinks every shape so the whole script runs on a CPU in a few minutes: it
checks the script, not the speed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.accelerator_cases import GENERATE, GPT2, GPT2_QUICK

CASES = ("lm", "generate", "lm_recipe", "cnn", "unet")
SIDES = {"lm": ("jaxdl", "torch"), "generate": ("jaxdl", "torch"), "lm_recipe": ("jaxdl",),
         "cnn": ("jaxdl", "torch"), "unet": ("jaxdl", "torch")}
BUDGET = 420  # seconds for the whole run (an H200 machine's lease is short)


def run_worker(side: str, case: str, quick: bool) -> dict:
    """In this process: the (side, case) worker's figures."""
    if side == "jaxdl":
        from benchmarks import accelerator_jax as workers
    else:
        from benchmarks import accelerator_torch as workers
    return getattr(workers, case)(quick)


# ----------------------------------------------------------------------------- driver
def worker(side: str, case: str, quick: bool, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.accelerator", "--worker", side, case]
    cmd += ["--quick"] if quick else []
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=Path(__file__).resolve().parent.parent)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "wall_s": timeout}
    wall = time.perf_counter() - t
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-6:],
                "wall_s": wall}
    return {**json.loads(lines[-1]), "wall_s": wall}


def device_info() -> dict:
    import jax

    d = jax.devices()[0]
    info = {"platform": d.platform, "device_kind": d.device_kind, "jax": jax.__version__}
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


def add_peer_mfu(results: dict) -> None:
    """The peer's mfu_6n by the same formula and peak as jaxdl's (its own N)."""
    import jax

    from jaxdl.train import flops

    peer = results.get("lm", {}).get("torch", {})
    if "num_params_6n" not in peer:
        return
    s = GPT2_QUICK if results["quick"] else GPT2
    peak = flops.peak_flops(jax.devices()[0], "bfloat16")
    per_token = flops.flops_per_token_6n(peer["num_params_6n"], s["layers"], s["heads"],
                                         s["dim"] // s["heads"], s["context"])
    peer["mfu_6n"] = peer["tokens_per_s"] * per_token / peak if peak else None


def ratios(results: dict) -> list[tuple[str, float | None, float | None, float | None]]:
    """(figure, jaxdl, peer, jaxdl/peer) rows."""
    rows = []

    def add(label, j, t=None):
        ok = isinstance(j, int | float) and isinstance(t, int | float) and t
        rows.append((label, j, t, j / t if ok else None))

    get = lambda side, case, *keys: _dig(results.get(case, {}).get(side, {}), keys)  # noqa
    add("GPT-2 small, nanoGPT architecture, bf16 train (tokens/s)",
        get("jaxdl", "lm", "tokens_per_s"), get("torch", "lm", "tokens_per_s"))
    add("  MFU by nanoGPT's 6N + 12LHQT (mfu_6n)", get("jaxdl", "lm", "mfu_6n"),
        get("torch", "lm", "mfu_6n"))
    add("  MFU by the jaxpr count (jaxdl)", get("jaxdl", "lm", "mfu"))
    add("GPT-2 small, jaxdl's recipe, bf16 train (tokens/s)",
        get("jaxdl", "lm_recipe", "tokens_per_s"), get("jaxdl", "lm", "tokens_per_s"))
    for batch in GENERATE["batches_quick"] if results["quick"] else GENERATE["batches"]:
        for peer in ("eager", "static_cache_compiled"):
            add(f"KV-cache generation, batch {batch}, vs {peer} (tokens/s)",
                get("jaxdl", "generate", f"batch{batch}", "tokens_per_s"),
                get("torch", "generate", f"batch{batch}", peer, "tokens_per_s"))
    for dt in ("float32_tf32", "float32_highest", "bfloat16"):
        for what in ("train", "infer"):
            add(f"MyNet {what}, batch 256, {dt} (img/s)",
                get("jaxdl", "cnn", dt, f"{what}_img_per_s"),
                get("torch", "cnn", dt, f"{what}_img_per_s"))
    for dt in ("float32_tf32", "float32_highest"):
        add(f"UNet train step, batch 256, {dt} (img/s)",
            get("jaxdl", "unet", dt, "train_img_per_s"),
            get("torch", "unet", dt, "train_img_per_s"))
    return rows


def _dig(d, keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny shapes: a smoke run on a CPU")
    p.add_argument("--out", type=Path, default=Path("accelerator.json"))
    p.add_argument("--cases", default=",".join(CASES), help=f"some of {', '.join(CASES)}")
    p.add_argument("--sides", default="jaxdl,torch")
    p.add_argument("--budget", type=float, default=BUDGET, help="seconds for the whole run")
    p.add_argument("--worker", nargs=2, metavar=("SIDE", "CASE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(*args.worker, args.quick), default=float), flush=True)
        return 0
    t0 = time.perf_counter()
    results = {"device": device_info(), "quick": args.quick,
               "date": time.strftime("%Y-%m-%d")}
    sides = args.sides.split(",")
    for case in args.cases.split(","):
        results[case] = {}
        for side in (s for s in SIDES[case] if s in sides):
            left = args.budget - (time.perf_counter() - t0)
            if left < 20:
                r = {"error": "skipped: the run's time budget is spent"}
            else:
                r = worker(side, case, args.quick, left)
            results[case][side] = r
            print(f"{case:9s} {side:6s} {r.get('wall_s', 0):6.1f} s  "
                  f"{json.dumps(r, default=float)[:400]}", flush=True)
    add_peer_mfu(results)
    results["table"] = ratios(results)
    results["seconds"] = time.perf_counter() - t0
    args.out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(f"\n{results['device']['device_kind']} ({results['device']['platform']}), "
          f"jax {results['device']['jax']}, torch {results['device']['torch']}")
    fmt = lambda v: "-" if v is None else f"{v:,.3g}" if v < 10 else f"{v:,.0f}"  # noqa: E731
    for label, j, t, r in results["table"]:
        if j is None and t is None:
            continue  # a case not run (--cases) or failed: its error is above
        print(f"| {label} | {fmt(j)} | {fmt(t)} | {'-' if r is None else f'{r:.2f}x'} |")
    walls = ", ".join(f"{c}/{s} {r.get('wall_s', 0):.0f} s" for c in args.cases.split(",")
                      for s, r in results[c].items())
    print(f"worker wall times: {walls}")
    print(f"wrote {args.out} ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "true")
    sys.exit(main())
