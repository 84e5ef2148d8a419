"""The race: nanoGPT's recipe in PyTorch against jaxdl's default decoder recipe, same
machine, same data split, same wall-clock budget.

    python -m benchmarks.lm_race                  # seed 0 (also `make bench`)
    python -m benchmarks.lm_race --seeds 0,1,2    # the README's three seeds
    python -m benchmarks.lm_race --quick          # a smoke run (a few hundred steps)

For each seed, one after the other, each side in its own process:

1. the peer: nanoGPT's `GPT` (benchmarks/torch_peers.py) with nanoGPT's CPU recipe of
   `shakespeare_char` (4 layers, 4 heads, 128 wide, context 64, batch 12, AdamW 1e-3,
   warmup + cosine to 1e-4, 2000 iterations), on nanoGPT's random training windows of the
   first 90% of tiny shakespeare. Its training time for the 2000 iterations is the budget.
2. jaxdl: `python -m jaxdl.run --config.recipe=decoder_lm` with the recipe's defaults, as
   a user runs it (checkpoints, logs, evaluation and sample included).

Both are evaluated on every non-overlapping window of the last 10% (each with its own
context) every 250 steps (the peer) or 50 (jaxdl: about the same number of points) and at
the end; the evaluations are taken off both clocks, not off the process times. The
table gives the final losses, each side's training seconds and whole-process seconds, and
the training tokens/s; `--png` (default benchmarks/lm_race.png) draws validation loss
against training seconds for both.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVAL_EVERY = 250  # the peer's 2000 steps
JAXDL_EVAL_EVERY = 50  # jaxdl's 300


def peer(seed: int, steps: int) -> dict:
    """nanoGPT's recipe in this process: curve of (training seconds, full-split val loss)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from benchmarks import torch_peers
    from jaxdl.data import text as textdata
    from jaxdl.data.loader import eval_windows

    layers, heads, dim, context, batch = 4, 4, 128, 64, 12
    corpus = textdata.load_text("tinyshakespeare", "")
    vocab = textdata.make_vocab("char", corpus)
    train_ids, val_ids = textdata.train_val_split(vocab.encode(corpus), 0.1)
    train = torch.from_numpy(np.asarray(train_ids, np.int64))
    val = torch.from_numpy(eval_windows(np.asarray(val_ids), context).astype(np.int64))
    torch_peers.seed_all(seed)
    model = torch_peers.GPTPeer(len(vocab), layers, heads, dim, context, bias=False)
    step = torch_peers.make_gpt_trainer(model, total=steps, warmup=min(100, steps // 10))

    @torch.no_grad()
    def val_loss() -> float:
        model.eval()
        total = 0.0
        for chunk in val.split(256):
            logits = model(chunk[:, :-1])
            total += float(F.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                           chunk[:, 1:].reshape(-1), reduction="sum"))
        model.train()
        return total / (val.shape[0] * context)

    curve, clock = [], 0.0
    for i in range(1, steps + 1):
        t = time.perf_counter()
        ix = torch.randint(len(train) - context, (batch,))  # nanoGPT's get_batch
        x = torch.stack([train[j:j + context] for j in ix])
        y = torch.stack([train[j + 1:j + 1 + context] for j in ix])
        step(x, y)
        clock += time.perf_counter() - t
        if i % EVAL_EVERY == 0 or i == steps:
            curve.append((clock, val_loss()))
    return {"val_loss": curve[-1][1], "train_seconds": clock, "steps": steps,
            "tokens_per_s": steps * batch * context / clock, "curve": curve,
            "threads": torch.get_num_threads()}


def jaxdl_run(seed: int, workdir: Path, overrides: list[str]) -> dict:
    """The default recipe through the runner, as a whole process."""
    cmd = [sys.executable, "-m", "jaxdl.run", "--config.recipe=decoder_lm",
           f"--config.seed={seed}", f"--config.eval_every={JAXDL_EVAL_EVERY}",
           f"--config.log_every={JAXDL_EVAL_EVERY}",
           "--workdir", str(workdir), *overrides]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "JAX_PLATFORMS": os.environ.get(
                              "JAX_PLATFORMS", "cpu")})
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"jaxdl run failed:\n{proc.stderr[-3000:]}")
    results = json.loads((workdir / "results.json").read_text())
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    # `train/seconds` leaves the evaluations out (results.json's train_seconds has them in)
    seconds = {r["step"]: r["train/seconds"] for r in rows if "train/seconds" in r}
    clock = seconds[results["step"]]
    curve = [(seconds[r["step"]], r["val/loss"]) for r in rows
             if "val/loss" in r and r["step"] in seconds and r["step"] < results["step"]]
    curve.append((clock, results["val_loss"]))
    config = json.loads((workdir / "config.json").read_text())
    tokens = results["step"] * config["batch_size"] * config["seq_len"]
    return {"val_loss": results["val_loss"], "train_seconds": clock, "wall_seconds": wall,
            "steps": results["step"], "curve": curve, "tokens_per_s": tokens / clock,
            "steady_tokens_per_s": results.get("throughput")}


def _peer_process(seed: int, steps: int) -> dict:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.lm_race", "--peer", str(seed),
                           "--steps", str(steps)], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"the PyTorch peer failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "wall_seconds": wall}


def race(seeds: list[int], *, quick: bool = False, say=print, png: str | None = None) -> dict:
    steps = 300 if quick else 2000
    overrides = [f"--config.num_steps={steps // 4}", "--config.batches_per_epoch=75"] if quick \
        else []
    out = {"seeds": {}}
    for seed in seeds:
        p = _peer_process(seed, steps)
        say(f"seed {seed}: peer (nanoGPT recipe, PyTorch) val {p['val_loss']:.4f} after "
            f"{p['train_seconds']:.0f} s of training ({p['wall_seconds']:.0f} s process)")
        with tempfile.TemporaryDirectory() as tmp:
            j = jaxdl_run(seed, Path(tmp) / "run", overrides)
        say(f"seed {seed}: jaxdl (default recipe) val {j['val_loss']:.4f} after "
            f"{j['train_seconds']:.0f} s of training ({j['wall_seconds']:.0f} s process)")
        out["seeds"][seed] = {"peer": p, "jaxdl": j,
                              "within_budget": j["train_seconds"] <= p["train_seconds"]}
    out["table"] = table(out["seeds"])
    say(out["table"])
    if png:
        plot(out["seeds"], png)
        out["png"] = png
    return out


def table(seeds: dict) -> str:
    lines = ["| seed | side | val loss (nats/char) | train s | process s | tokens/s |",
             "|---|---|---|---|---|---|"]
    for seed, r in seeds.items():
        for side, name in (("peer", "nanoGPT recipe, PyTorch"), ("jaxdl", "jaxdl default")):
            s = r[side]
            lines.append(f"| {seed} | {name} | {s['val_loss']:.4f} | {s['train_seconds']:.0f} | "
                         f"{s['wall_seconds']:.0f} | {s['tokens_per_s']:,.0f} |")
    for side in ("peer", "jaxdl"):
        losses = [r[side]["val_loss"] for r in seeds.values()]
        mean = sum(losses) / len(losses)
        sd = math.sqrt(sum((x - mean) ** 2 for x in losses) / max(len(losses) - 1, 1))
        lines.append(f"| mean | {side} | {mean:.4f} ± {sd:.4f} | | | |")
    return "\n".join(lines)


def plot(seeds: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for k, r in enumerate(seeds.values()):
        for side, color, label in (("peer", "tab:red", "nanoGPT recipe (PyTorch)"),
                                   ("jaxdl", "tab:blue", "jaxdl default recipe")):
            xs, ys = zip(*r[side]["curve"], strict=True)
            ax.plot(xs, ys, "o-", color=color, alpha=0.8, ms=3,
                    label=label if k == 0 else None)
    budget = min(r["peer"]["train_seconds"] for r in seeds.values())
    ax.axvline(budget, color="grey", ls=":", label="peer's 2000 iterations")
    ax.set(xlabel="training seconds (evaluations excluded)",
           ylabel="validation loss, full split (nats/char)", ylim=(1.4, 2.8),
           title="tiny shakespeare, character level, 2-core CPU")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--png", default=str(ROOT / "benchmarks" / "lm_race.png"))
    p.add_argument("--out", default="", help="also write the figures as JSON here")
    p.add_argument("--peer", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=2000, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.peer is not None:
        print(json.dumps(peer(args.peer, args.steps)))
        return
    out = race([int(s) for s in args.seeds.split(",")], quick=args.quick, png=args.png)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
