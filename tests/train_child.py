"""A run through the runner in a process of its own, for tests that kill it:

    python tests/train_child.py WORKDIR --config.recipe=NAME [--config.KEY=VALUE ...]

Prints `step N` before each train step; `TRAIN_CHILD_PAUSE_AT=N` sleeps there (so the test
can SIGKILL the run after a checkpoint and before the end). Writes WORKDIR/final.npz: every
leaf of the final state, for a bitwise comparison."""

import os
import sys

import jax
import numpy as np

from jaxdl import recipes, run
from jaxdl.config import apply_overrides
from jaxdl.train.placement import Placement
from tests.processes import announcing


def main(workdir: str, *overrides: str) -> None:
    Placement.train = announcing(Placement.train, os.environ.get("TRAIN_CHILD_PAUSE_AT"))
    pairs = dict(a[len("--config."):].split("=", 1) for a in overrides)
    config = apply_overrides(recipes.get(pairs.pop("recipe")).get_config(), pairs)
    run.train(config, workdir)
    leaves = jax.tree.leaves(jax.device_get(run.load(workdir).state))
    np.savez(os.path.join(workdir, "final.npz"), *[np.asarray(x) for x in leaves])
    print("done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
