"""Child of tests/test_records.py: train a few steps on a large array_record dataset and
report how much the peak RSS grew meanwhile (its own process, so the figure is its own).

    python tests/records_child.py DIR STEPS

The model is compiled and trained on batches of zeros first, and the peak RSS (VmHWM)
of those steps taken as the baseline; then the dataset is loaded, batched and trained on
through the image classifier's recipe (its loader, task and train step; the loop of
`fit` without its checkpoints, whose copies of the state would be counted too). Prints
one line `REPORT {...}`.
"""

import itertools
import json
import sys
from pathlib import Path

import jax
import numpy as np

from jaxdl import recipes
from jaxdl.train import make_train_step
from jaxdl.train.compile import compile_step


def rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def main(directory: str, steps: int) -> None:
    recipe = recipes.get("image_classifier")
    config = recipe.get_config()
    config.update(dataset=f"array_record:{directory}", batch_size=32, augment=False)
    # compile before measuring: a batch of the dataset's shape, from zeros
    from jaxdl.data import sources

    shapes = sources.resolve_image_dataset(config.dataset, verbose=False)
    task = recipe.build(config, shapes)
    step = compile_step(make_train_step(task.loss_fn, task.model, preprocess=task.preprocess))
    state = task.init_state(0)
    zeros = {"image": np.zeros((32, *shapes.train.images.shape[1:]), np.uint8),
             "label": np.zeros(32, np.int32), "mask": np.ones(32, np.float32)}
    state, _ = step(state, zeros)
    del shapes
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    for _ in range(3):  # the peak of training alone (its buffers come and go each step)
        state, _ = step(state, zeros)
        jax.block_until_ready(state)
    before = rss("VmHWM")
    data = recipe.load_data(config)
    loader = recipe.train_loader(config, data)
    losses = []
    for batch in itertools.islice(loader.epoch(0), steps):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss_sum"] / metrics["count"]))
    report = {"peak_growth": rss("VmHWM") - before, "images": len(data.train),
              "image_bytes": int(data.train.images.nbytes), "step": int(state.step),
              "losses": losses}
    print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
