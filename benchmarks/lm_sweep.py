"""Short trials of the decoder LM's options at a fixed wall-clock budget: the ablation table.

    python -m benchmarks.lm_sweep                       # every row, 60 s of training each
    python -m benchmarks.lm_sweep --budget 30 --rows default,no_muon
    python -m benchmarks.lm_sweep --list

Each row is the default recipe (`jaxdl.recipes.decoder_lm`) with some keys overridden,
run in its own process through the runner (`jaxdl.run.train`). A trial first times 20
compiled train steps of its config, sets `num_steps` to what fits the budget (so every
schedule warms up and decays over the steps it really gets), then trains and evaluates on
the full validation split. Rows are run one after the other; the table (markdown, also
`--out` JSON) gives each row's validation loss, its steps and its training seconds, and
the difference from the default row: what each option buys at equal wall time.
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

ROWS = {
    "default": {},
    "nanogpt": {},  # the recipe's nanogpt_config(): nanoGPT's recipe (and batch) here
    "batch_12": {"batch_size": 12},
    "no_muon": {"optimizer": "adamw", "learning_rate": 3e-3},  # AdamW on every parameter
    "learned_positions": {"positional": "learned"},
    "layernorm": {"norm": "layernorm"},
    "no_qk_norm": {"qk_norm": False},
    "gelu": {"mlp": "gelu"},
    "swiglu": {"mlp": "swiglu", "mlp_dim": 344},  # ~ the same parameters as 4 x 128
    "tied": {"tie_embeddings": True},
    "no_zero_init": {"zero_init_out": False},
    "no_softcap": {"logit_softcap": 0.0},
    "cosine": {"schedule": "warmup_cosine"},
    "muon_lr_0.01": {"muon_learning_rate": 0.01},
    "muon_lr_0.04": {"muon_learning_rate": 0.04},
    "adam_lr_1e-3": {"learning_rate": 1e-3},
    "adam_lr_6e-3": {"learning_rate": 6e-3},
}


def child(overrides: dict, budget: float, workdir: str, base: str) -> dict:
    """One trial in this process: calibrate, then train `budget` seconds through the runner,
    from nanoGPT's recipe if `base` is "nanogpt", else from jaxdl's default."""
    import jax
    import numpy as np

    from jaxdl import recipes, run
    from jaxdl.train import make_train_step
    from jaxdl.train.compile import compile_step

    recipe = recipes.get("decoder_lm")
    config = recipe.nanogpt_config() if base == "nanogpt" else recipe.get_config()
    config.update(overrides)
    data = recipe.load_data(config)
    task = recipe.build(config, data)
    step = compile_step(make_train_step(task.loss_fn, task.model))
    state = task.init_state(config.seed)
    batches = [{"tokens": jax.device_put(np.asarray(b["tokens"]))}
               for b, _ in zip(recipe.train_loader(config, data).epoch(0), range(4),
                               strict=False)]
    for b in batches:  # compile and warm up
        state, m = step(state, b)
    jax.block_until_ready(m)
    t = time.perf_counter()
    for i in range(20):
        state, m = step(state, batches[i % len(batches)])
    jax.block_until_ready(m)
    per_step = (time.perf_counter() - t) / 20
    config.num_steps = max(int(budget / per_step), 10)
    config.batches_per_epoch = min(config.batches_per_epoch, config.num_steps)
    config.warmup_steps = min(config.warmup_steps, config.num_steps // 10)
    config.verbose, config.sample_tokens = False, 20
    t = time.perf_counter()
    results = run.train(config, workdir)
    return {"val_loss": results["val_loss"], "steps": config.num_steps,
            "train_seconds": results["train_seconds"], "wall_seconds": time.perf_counter() - t,
            "calibrated_step_ms": 1000 * per_step, "params": results["num_params"]}


def trial(name: str, budget: float, seed: int) -> dict:
    overrides = dict(ROWS[name], seed=seed)
    base = "nanogpt" if name == "nanogpt" else "default"
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.lm_sweep", "--child", json.dumps(overrides),
             "--base", base, "--budget", str(budget), "--workdir", str(Path(tmp) / "run")],
            capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"},
            cwd=Path(__file__).resolve().parents[1])
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: dict) -> str:
    base = rows.get("default", {}).get("val_loss")
    lines = ["| row | overrides | val loss | vs default | steps | train s |",
             "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"| {name} | {_overrides(name)} | error: {r['error']} | | | |")
            continue
        delta = "" if base is None or name == "default" else f"{r['val_loss'] - base:+.4f}"
        lines.append(f"| {name} | {_overrides(name)} | {r['val_loss']:.4f} | {delta} | "
                     f"{r['steps']} | {r['train_seconds']:.0f} |")
    return "\n".join(lines)


def _overrides(name: str) -> str:
    o = ROWS[name]
    if name == "nanogpt":
        return "nanoGPT's recipe"
    return ", ".join(f"{k}={v}" for k, v in o.items()) or "(jaxdl's default)"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=60.0, help="training seconds per trial")
    p.add_argument("--rows", default=",".join(ROWS),
                   help="comma-separated row names ('' for only the --row ones)")
    p.add_argument("--row", action="append", default=[], metavar="NAME=JSON",
                   help='an extra row, e.g. --row \'big_batch={"batch_size": 32}\'')
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="also write the rows as JSON here")
    p.add_argument("--list", action="store_true")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--base", default="default", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.list:
        for name in ROWS:
            print(f"{name}: {_overrides(name)}")
        return
    if args.child is not None:
        overrides = json.loads(args.child)
        print(json.dumps(child(overrides, args.budget, args.workdir, args.base)))
        return
    for extra in args.row:
        name, _, overrides = extra.partition("=")
        ROWS[name] = json.loads(overrides)
    rows = {}
    names = [n for n in args.rows.split(",") if n] + [e.partition("=")[0] for e in args.row]
    for name in dict.fromkeys(names):
        if name not in ROWS:
            raise SystemExit(f"error: unknown row {name!r}; --list shows them")
        rows[name] = trial(name, args.budget, args.seed)
        print(f"{name}: {rows[name]}", flush=True)
    print(table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps({"budget_s": args.budget, "seed": args.seed,
                                              "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
