"""A small training run in its own process, for tests/test_preemption.py to kill and resume:

    .venv/bin/python tests/resume_child.py WORKDIR STEPS [CHECKPOINT_EVERY]

A dropout MLP (so the per-step rng matters) on synthetic 3-class data, through the real
entry (`run_experiment` -> `fit`, async orbax checkpoints every CHECKPOINT_EVERY steps,
default 3, keeping 2). Prints `step N` (the state's step) before every train step and, at the
end, writes WORKDIR/final.npz: every leaf of the final train state (`leaf_0`, ...) and the
per-epoch losses. Test hooks, from the environment:

- RESUME_CHILD_PAUSE_AT=N: after printing `step N`, sleep RESUME_CHILD_PAUSE seconds (default
  3) before that step, so that a signal sent on seeing `step N` lands there.
- RESUME_CHILD_DTYPE=bfloat16: the model computes in bfloat16 and Adam keeps its moments
  in bfloat16 (`--config.dtype`, `--config.opt_state_dtype`).
- RESUME_CHILD_HOLD_SAVE=K: the async save of step K stops just before orbax renames its
  written `state` item (the step still `K.orbax-checkpoint-tmp`), prints `holding save K`
  and waits there until the process is killed: a SIGKILL sent then lands mid-save.
"""

import functools
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdl.data.loader import ArrayLoader
from jaxdl.entry import run_experiment
from jaxdl.nn import MLP
from jaxdl.nn.precision import dtype_of, with_dtype
from jaxdl.tasks import classify
from jaxdl.train import create_train_state, make_optimizer, make_train_step
from jaxdl.train.compile import compile_step
from jaxdl.train.loop import fit
from jaxdl.train.optim import with_state_dtype

LOSS = functools.partial(classify.softmax_cross_entropy, input_key="x")


def get_config():
    c = ml_collections.ConfigDict()
    c.num_steps = 24
    c.checkpoint_every = 3
    c.batch_size = 16
    return c


def data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 100).astype(np.int32)
    x = (np.eye(3, 8)[labels] * 2 + 0.5 * rng.standard_normal((100, 8))).astype(np.float32)
    return {"x": x, "label": labels}


def main(config, workdir: Path):
    model = MLP((32, 32, 3), dropout=0.3)
    tx = make_optimizer("adam", 1e-2)
    dtype = os.environ.get("RESUME_CHILD_DTYPE")
    if dtype:
        model, tx = with_dtype(model, dtype_of(dtype)), with_state_dtype(tx, dtype_of(dtype))
    state = create_train_state(model, tx, jax.random.PRNGKey(0), jnp.zeros((1, 8)))
    compiled = compile_step(make_train_step(LOSS, model))
    pause_at = int(os.environ.get("RESUME_CHILD_PAUSE_AT", "-1"))
    pause = float(os.environ.get("RESUME_CHILD_PAUSE", "3"))

    def step(state, batch):
        n = int(state.step)
        print(f"step {n}", flush=True)
        if n == pause_at:
            time.sleep(pause)  # a SIGTERM's handler runs and the sleep goes on (PEP 475)
        return compiled(state, batch)

    loader = ArrayLoader(data(), config.batch_size, seed=1)
    state, history = fit(state, step, loader, workdir=workdir, num_steps=config.num_steps,
                         checkpoint_every=config.checkpoint_every, max_to_keep=2)
    arrays = [np.asarray(x) for x in jax.tree.leaves(state)]
    leaves = {f"leaf_{i}": a.view(np.uint16) if a.dtype == jnp.bfloat16 else a  # bit patterns
              for i, a in enumerate(arrays)}  # (npz has no bfloat16)
    np.savez(workdir / "final.npz", losses=np.array([h["loss"] for h in history]),
             dtypes=np.array([a.dtype.name for a in arrays]), **leaves)
    print("done", flush=True)


def hold_save(step: int) -> None:
    """Make the async save of `step` stop before its `state` item is renamed."""
    from orbax.checkpoint._src.path import atomicity

    finalize = atomicity.AtomicRenameTemporaryPath.finalize
    step_tmp = f"{step}{atomicity.TMP_DIR_SUFFIX}"

    async def held(self):
        final = self.get_final()
        if final.name == "state" and final.parent.name == step_tmp:
            print(f"holding save {step}", flush=True)
            time.sleep(3600)  # in orbax's background thread; the test kills the process
        return await finalize(self)

    atomicity.AtomicRenameTemporaryPath.finalize = held


if __name__ == "__main__":
    workdir, steps, *rest = sys.argv[1:]
    if "RESUME_CHILD_HOLD_SAVE" in os.environ:
        hold_save(int(os.environ["RESUME_CHILD_HOLD_SAVE"]))
    argv = ["--workdir", workdir, f"--config.num_steps={int(steps)}"]
    if rest:
        argv.append(f"--config.checkpoint_every={int(rest[0])}")
    run_experiment(main, get_config, workdir, argv=argv)
