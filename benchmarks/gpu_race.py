"""The GPU race: nanoGPT's `shakespeare_char` GPU run in PyTorch, the same recipe in jaxdl,
and jaxdl's own recipe at that shape, one after another on the same GPU.

    python -m benchmarks.gpu_race --out gpu_race.json     # about 5 minutes on an H200
    python -m benchmarks.gpu_race --quick --sides jaxdl   # a smoke run on a CPU

1. nanoGPT (PyTorch): `GPTPeer` (nanoGPT's model.py, dropout 0.2) trained by nanoGPT's
   loop as its config/train_shakespeare_char.py sets it: 6 layers, 6 heads, width 384,
   context 256, batch 64, 5,000 iterations, AdamW 1e-3 -> 1e-4 (cosine, 100 warmup),
   beta2 0.99, weight decay 0.1, clip 1.0, bf16 autocast, fused AdamW, torch.compile;
   random training windows as its get_batch draws them (here from the split on the GPU).
2. jaxdl, nanoGPT's recipe: `jaxdl.run --config=configs/nanogpt_shakespeare_char_gpu.py`.
3. jaxdl's own recipe: `jaxdl.run --config=configs/shakespeare_char_gpu.py`.

Every side is evaluated on the whole val split (each non-overlapping 256-character window)
at its evaluation points, and those evaluations are taken off its training clock
(compilation stays on it). The table gives the final loss, training seconds, the seconds
at which the loss first reached the target (1.47, nanoGPT's README figure rounded), and
process seconds; the goal is jaxdl's recipe at or below the target in at most half of
nanoGPT's training seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.47
NANOGPT = dict(layers=6, heads=6, dim=384, context=256, batch=64, steps=5000, dropout=0.2,
               lr=1e-3, min_lr=1e-4, warmup=100, eval_every=500)
QUICK = dict(layers=2, heads=2, dim=64, context=64, batch=8, steps=40, dropout=0.2,
             lr=1e-3, min_lr=1e-4, warmup=5, eval_every=20)
CONFIGS = {"jaxdl_nanogpt": "configs/nanogpt_shakespeare_char_gpu.py",
           "jaxdl_recipe": "configs/shakespeare_char_gpu.py"}


def peer(quick: bool, seed: int = 0) -> dict:
    """nanoGPT's loop in this process: (training seconds, full-split val loss) points."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from benchmarks import torch_peers
    from jaxdl.data import text as textdata
    from jaxdl.data.loader import eval_windows

    c = QUICK if quick else NANOGPT
    device = "cuda" if torch.cuda.is_available() else "cpu"
    corpus = textdata.load_text("tinyshakespeare", "")
    vocab = textdata.make_vocab("char", corpus)
    train_ids, val_ids = textdata.train_val_split(vocab.encode(corpus), 0.1)
    train = torch.from_numpy(np.asarray(train_ids, np.int64)).to(device)
    val = torch.from_numpy(eval_windows(np.asarray(val_ids), c["context"]).astype(np.int64))
    val = val.to(device)
    torch_peers.seed_all(seed)
    net = torch_peers.GPTPeer(len(vocab), c["layers"], c["heads"], c["dim"], c["context"],
                              bias=False, dropout=c["dropout"]).to(device)
    model = torch.compile(net) if device == "cuda" else net
    step = torch_peers.make_gpt_trainer(model, lr=c["lr"], min_lr=c["min_lr"],
                                        warmup=c["warmup"], total=c["steps"],
                                        fused=device == "cuda",
                                        autocast=torch.bfloat16 if device == "cuda" else None)
    offsets = torch.arange(c["context"], device=device)

    @torch.no_grad()
    def val_loss() -> float:
        """The uncompiled module (the same weights): eval mode and a last partial batch
        would each make torch.compile recompile."""
        net.eval()
        total = 0.0
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            for chunk in val.split(256):
                logits = net(chunk[:, :-1])
                total += float(F.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                               chunk[:, 1:].reshape(-1), reduction="sum"))
        net.train()
        return total / (val.shape[0] * c["context"])

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    curve, off_clock = [], 0.0
    t0 = time.perf_counter()
    for i in range(1, c["steps"] + 1):
        ix = torch.randint(len(train) - c["context"], (c["batch"],), device=device)
        idx = ix[:, None] + offsets  # nanoGPT's get_batch, indexed on the device
        step(train[idx], train[idx + 1])
        if i % c["eval_every"] == 0 or i == c["steps"]:
            sync()
            clock = time.perf_counter() - t0 - off_clock
            e = time.perf_counter()
            curve.append((clock, i, val_loss()))
            off_clock += time.perf_counter() - e
    return {"val_loss": curve[-1][2], "train_seconds": curve[-1][0], "steps": c["steps"],
            "curve": curve, "device": device,
            "tokens_per_s": c["steps"] * c["batch"] * c["context"] / curve[-1][0]}


def jaxdl_run(name: str, quick: bool, workdir: Path, timeout: float | None = None) -> dict:
    """One jaxdl config through the runner, as a user runs it, in its own process."""
    cmd = [sys.executable, "-m", "jaxdl.run", f"--config={CONFIGS[name]}",
           "--workdir", str(workdir)]
    if quick:
        q = QUICK
        cmd += [f"--config.num_layers={q['layers']}", f"--config.num_heads={q['heads']}",
                f"--config.dim={q['dim']}", f"--config.seq_len={q['context']}",
                f"--config.batch_size={q['batch']}", f"--config.num_steps={q['steps']}",
                f"--config.warmup_steps={q['warmup']}", f"--config.eval_every={q['eval_every']}",
                f"--config.log_every={q['eval_every']}",
                "--config.batches_per_epoch=20", "--config.sample_tokens=20",
                "--config.val_windows=64"]
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-5:], "wall_seconds": wall}
    results = json.loads((workdir / "results.json").read_text())
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    seconds = {r["step"]: r["train/seconds"] for r in rows if "train/seconds" in r}
    final = results["step"]
    curve = [(seconds[r["step"]], r["step"], r["val/loss"]) for r in rows
             if "val/loss" in r and r["step"] in seconds and r["step"] < final]
    curve.append((seconds[final], final, results["val_loss"]))
    config = json.loads((workdir / "config.json").read_text())
    return {"val_loss": results["val_loss"], "train_seconds": seconds[final],
            "wall_seconds": wall, "steps": final, "curve": curve,
            "tokens_per_s": final * config["batch_size"] * config["seq_len"] / seconds[final],
            "mfu_6n": results.get("mfu_6n"), "params": results.get("num_params")}


def _peer_process(quick: bool, timeout: float) -> dict:
    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_race", "--peer"]
                              + (["--quick"] if quick else []), cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout,  # its jax import takes no GPU
                              env={**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                                   "JAX_PLATFORMS": "cpu"})
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-5:]}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]),
            "wall_seconds": time.perf_counter() - t}


def reached(curve, target: float = TARGET) -> float | None:
    """Training seconds at the first evaluation at or below `target`."""
    return next((s for s, _, loss in curve if loss <= target), None)


def table(out: dict) -> str:
    lines = ["| side | val loss (nats/char) | train s | s to <= 1.47 | process s | tokens/s |",
             "|---|---|---|---|---|---|"]
    for name, label in (("nanogpt_torch", "nanoGPT, PyTorch (torch.compile, bf16)"),
                        ("jaxdl_nanogpt", "jaxdl, nanoGPT's recipe"),
                        ("jaxdl_recipe", "jaxdl's own recipe")):
        r = out.get(name)
        if not r or "error" in r:
            lines.append(f"| {label} | {'-' if not r else 'failed'} | | | | |")
            continue
        hit = reached(r["curve"])
        wall = r.get("wall_seconds")
        lines.append(f"| {label} | {r['val_loss']:.4f} | {r['train_seconds']:.1f} | "
                     f"{'-' if hit is None else f'{hit:.1f}'} | "
                     f"{'-' if wall is None else f'{wall:.0f}'} | {r['tokens_per_s']:,.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny shapes and steps (a CPU)")
    p.add_argument("--sides", default="torch,jaxdl_recipe,jaxdl_nanogpt",
                   help="some of torch, jaxdl_recipe, jaxdl_nanogpt (run in this order)")
    p.add_argument("--out", type=Path, default=Path("gpu_race.json"))
    p.add_argument("--budget", type=float, default=330.0,
                   help="seconds for the whole race: a side that cannot start is skipped")
    p.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.peer:
        print(json.dumps(peer(args.quick)))
        return 0
    out, sides = {"date": time.strftime("%Y-%m-%d"), "quick": args.quick}, args.sides.split(",")
    t0 = time.perf_counter()
    for side, name in (("torch", "nanogpt_torch"), ("jaxdl_recipe", "jaxdl_recipe"),
                       ("jaxdl_nanogpt", "jaxdl_nanogpt")):  # the goal's pair first
        if side not in sides:
            continue
        left = args.budget - (time.perf_counter() - t0)
        if left < 30:
            out[name] = {"error": "skipped: the race's time budget is spent"}
        elif name == "nanogpt_torch":
            out[name] = _peer_process(args.quick, left)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                out[name] = jaxdl_run(name, args.quick, Path(tmp) / name, left)
        print(name, json.dumps(out[name])[:300], flush=True)
        args.out.write_text(json.dumps(out, indent=1) + "\n")  # what is done survives a kill
    out["table"] = table(out)
    base, mine = out.get("nanogpt_torch", {}), out.get("jaxdl_recipe", {})
    if "curve" in base and "curve" in mine:
        hit = reached(mine["curve"])
        out["goal_met"] = hit is not None and hit <= 0.5 * base["train_seconds"]
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(out["table"])
    print(f"goal (jaxdl's recipe <= {TARGET} within half of nanoGPT's training seconds): "
          f"{out.get('goal_met', 'not measured')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
