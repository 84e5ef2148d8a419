"""Per-step train losses of a recipe in float32 and in bfloat16 from the same start, for
tests/test_precision.py and the curves of docs/accelerators.md:

    .venv/bin/python -m tests.precision_curves   # prints the measured gaps
    .venv/bin/python -m tests.precision_curves --report RECIPE   # the test's child
"""

import jax
import numpy as np

from jaxdl import recipes
from jaxdl.train import make_train_step
from jaxdl.train.compile import compile_step

CASES = {  # recipe -> config overrides: small enough for the suite, 200 steps each
    "image_classifier": {"dataset": "mnist_5k", "batch_size": 16},
    "decoder_lm": {"batch_size": 12, "num_layers": 2, "dim": 64},
}
STEPS = 200


def losses(recipe_name: str, dtype: str, steps: int = STEPS, **overrides) -> np.ndarray:
    recipe = recipes.get(recipe_name)
    config = recipe.get_config()
    config.update({**CASES.get(recipe_name, {}), **overrides, "dtype": dtype})
    data = recipe.load_data(config)
    task = recipe.build(config, data)
    state = task.init_state(config.seed)
    step = compile_step(make_train_step(task.loss_fn, task.model, preprocess=task.preprocess))
    loader = recipe.train_loader(config, data)
    out = []
    epoch = 0
    while len(out) < steps:
        for batch in loader.epoch(epoch):
            state, metrics = step(state, batch)
            out.append(metrics)
            if len(out) == steps:
                break
        epoch += 1
    got = jax.device_get(out)
    return np.array([m["loss_sum"] / m["count"] for m in got], np.float64)


def windows(curve: np.ndarray, size: int = 20) -> np.ndarray:
    """Means over consecutive windows of `size` steps (one batch's loss is noisy)."""
    return curve[: len(curve) // size * size].reshape(-1, size).mean(-1)


def gaps(recipe_name: str) -> dict:
    f32, bf16 = losses(recipe_name, "float32"), losses(recipe_name, "bfloat16")
    w32, w16 = windows(f32), windows(bf16)
    rel = np.abs(w16 - w32) / w32
    return {"first_step": (f32[0], bf16[0]), "windows_f32": w32.round(4).tolist(),
            "windows_bf16": w16.round(4).tolist(), "max_window_rel_gap": float(rel.max()),
            "last_window_rel_gap": float(rel[-1]),
            "second_half_rel_gap": second_half_gap(f32, bf16)}


def second_half_gap(f32: np.ndarray, bf16: np.ndarray) -> float:
    """|mean bf16 - mean f32| / mean f32 over the second half of the steps: where both
    curves have settled, and 100 batches average out the single batches' noise."""
    half = len(f32) // 2
    return float(abs(bf16[half:].mean() - f32[half:].mean()) / f32[half:].mean())


if __name__ == "__main__":
    import json
    import sys

    if sys.argv[1:2] == ["--report"]:  # tests/test_precision.py's child: both curves
        name = sys.argv[2]
        print("REPORT " + json.dumps({d: losses(name, d).tolist()
                                      for d in ("float32", "bfloat16")}), flush=True)
    else:
        for name in CASES:
            print(name, gaps(name), flush=True)
