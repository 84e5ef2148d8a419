"""Exact resume with real processes (SIGKILL anywhere, SIGKILL mid-save, SIGTERM preemption),
and what fit does when the loss diverges or the data changed under a checkpoint.

The process tests run tests/resume_child.py (a dropout MLP trained through run_experiment and
fit, checkpointing every 3 steps) and compare its final train state, leaf by leaf and bit for
bit, with one uninterrupted run. Children share a JAX compilation cache so each compiles
little; every wait is bounded and every child is killed in the fixture's teardown.
"""

import functools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.data.loader import ArrayLoader
from jaxdl.errors import UserError
from jaxdl.nn import MLP
from jaxdl.tasks import classify
from jaxdl.train import create_train_state, make_optimizer, make_train_step
from jaxdl.train.checkpoint import Checkpointer, restore_from_workdir
from jaxdl.train.compile import compile_step
from jaxdl.train.guards import NonFiniteLoss
from jaxdl.train.loop import fit

CHILD = Path(__file__).with_name("resume_child.py")
STEPS = 24  # 3 epochs of 7 batches and 3 steps into the 4th
TIMEOUT = 60  # seconds any one child may take


class Child:
    """tests/resume_child.py as a process whose output goes to files we can poll."""

    def __init__(self, workdir: Path, cache: Path, tag: str, **env):
        self.out = workdir.parent / f"{workdir.name}.{tag}.out"
        self.err = workdir.parent / f"{workdir.name}.{tag}.err"
        full_env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache),
                    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
                    **{k: str(v) for k, v in env.items()}}
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(CHILD), str(workdir), str(STEPS)], stdout=out,
                stderr=err, env=full_env, cwd=CHILD.parent.parent)

    def text(self) -> str:
        return self.out.read_text()

    def wait_for(self, line: str, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while line + "\n" not in self.text():
            assert self.proc.poll() is None, self._report(f"exited before printing {line!r}")
            assert time.monotonic() < deadline, self._report(f"no {line!r} in {timeout} s")
            time.sleep(0.005)

    def finish(self, timeout: float = TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(self._report(f"still running after {timeout} s")) from None

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def _report(self, what: str) -> str:
        return f"child {what}\n--- stdout\n{self.text()[-3000:]}\n--- stderr\n" + (
            self.err.read_text()[-3000:])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture
def spawn(cache):
    children = []

    def start(workdir, tag, **env):
        children.append(Child(workdir, cache, tag, **env))
        return children[-1]

    yield start
    for child in children:
        child.kill()
        try:
            child.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache):
    """The uninterrupted run's final state."""
    workdir = tmp_path_factory.mktemp("reference") / "run"
    child = Child(workdir, cache, "ref")
    try:
        assert child.finish() == 0, child._report("failed")
    finally:
        child.kill()
    return dict(np.load(workdir / "final.npz"))


def _resume_and_compare(spawn, workdir, reference, *, resumes_from=None):
    child = spawn(workdir, "resume")
    assert child.finish() == 0, child._report("failed to resume")
    if resumes_from is not None:
        assert f"Resuming from checkpoint step {resumes_from} " in child.text(), child.text()
    got = dict(np.load(workdir / "final.npz"))
    assert sorted(got) == sorted(reference)
    for key, want in reference.items():
        assert np.array_equal(got[key], want), key  # bitwise (the losses, then every leaf)
    assert not list((workdir / "checkpoints").glob("*tmp*"))
    return child


def _steps(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def test_sigkill_at_a_random_step_then_resume_is_bitwise_exact(tmp_path, spawn, reference):
    kill_at = random.Random(20240611).randint(7, STEPS - 4)
    workdir = tmp_path / "run"
    child = spawn(workdir, "killed", RESUME_CHILD_PAUSE_AT=kill_at)
    child.wait_for(f"step {kill_at}")
    child.kill(signal.SIGKILL)
    assert child.finish() == -signal.SIGKILL
    saved = _steps(workdir)  # the save of a step <= kill_at may still have been in flight
    assert saved and max(saved) <= kill_at, saved
    resumed = _resume_and_compare(spawn, workdir, reference)
    assert f"Resuming from checkpoint step {max(saved)} " in resumed.text()


def test_a_bfloat16_run_killed_with_sigkill_resumes_bitwise(tmp_path, spawn):
    """bfloat16 compute and bfloat16 Adam moments: the checkpoint keeps their dtypes."""
    ref = spawn(tmp_path / "ref", "ref", RESUME_CHILD_DTYPE="bfloat16")
    assert ref.finish() == 0, ref._report("failed")
    reference = dict(np.load(tmp_path / "ref" / "final.npz"))
    assert "bfloat16" in reference["dtypes"].tolist()  # the moments
    workdir = tmp_path / "run"
    child = spawn(workdir, "killed", RESUME_CHILD_DTYPE="bfloat16", RESUME_CHILD_PAUSE_AT=11)
    child.wait_for("step 11")
    child.kill(signal.SIGKILL)
    assert child.finish() == -signal.SIGKILL
    child = spawn(workdir, "resume", RESUME_CHILD_DTYPE="bfloat16")
    assert child.finish() == 0, child._report("failed to resume")
    assert "Resuming from checkpoint step " in child.text()
    got = dict(np.load(workdir / "final.npz"))
    for key, want in reference.items():
        assert got[key].dtype == want.dtype and np.array_equal(got[key], want), key


def test_sigkill_in_the_middle_of_an_async_save_then_resume(tmp_path, spawn, reference):
    workdir = tmp_path / "run"
    child = spawn(workdir, "killed", RESUME_CHILD_HOLD_SAVE=9)
    child.wait_for("holding save 9")  # state written, not yet renamed into place
    ckpts = workdir / "checkpoints"
    assert (ckpts / "9.orbax-checkpoint-tmp").is_dir() and not (ckpts / "9").exists()
    child.kill(signal.SIGKILL)
    assert child.finish() == -signal.SIGKILL
    # Saves so far: 3, 6, 7 (epoch end), then 9; orbax keeps 2.
    assert (ckpts / "9.orbax-checkpoint-tmp").is_dir() and _steps(workdir) == [6, 7]
    resumed = _resume_and_compare(spawn, workdir, reference, resumes_from=7)
    assert "Removing unfinished checkpoint 9.orbax-checkpoint-tmp" in resumed.text()


def test_sigterm_saves_at_the_next_step_exits_0_and_resumes_exactly(tmp_path, spawn, reference):
    term_at = random.Random(7).randint(7, STEPS - 4)
    workdir = tmp_path / "run"
    child = spawn(workdir, "preempted", RESUME_CHILD_PAUSE_AT=term_at)
    child.wait_for(f"step {term_at}")  # the signal lands before step term_at + 1 runs
    child.kill(signal.SIGTERM)
    assert child.finish() == 0, child._report("did not exit 0 on SIGTERM")
    text = child.text()
    assert f"Preemption notice: preempted at step {term_at + 1}; checkpoint saved" in text, text
    assert "done" not in text and not (workdir / "final.npz").exists()
    assert _steps(workdir)[-1] == term_at + 1  # saved at the step boundary, and complete
    _resume_and_compare(spawn, workdir, reference, resumes_from=term_at + 1)


# ----------------------------------------------------------------------------- in process

LOSS = functools.partial(classify.softmax_cross_entropy, input_key="x")


def _mlp_run(x, labels, batch_size=8):
    model = MLP((16, 3))
    state = create_train_state(model, make_optimizer("adam", 1e-2), jax.random.PRNGKey(0),
                               jnp.zeros((1, x.shape[1])))
    loader = ArrayLoader({"x": x, "label": labels}, batch_size, shuffle=False)
    return state, compile_step(make_train_step(LOSS, model)), loader


def _data(n=80):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, n).astype(np.int32)
    return (np.eye(3, 4)[labels] + 0.3 * rng.standard_normal((n, 4))).astype(np.float32), labels


def test_nan_loss_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    x, labels = _data()
    bad = x.copy()
    bad[7 * 8 + 2] = np.nan  # in batch 7 (unshuffled): the 8th step's loss is nan
    state, step, loader = _mlp_run(bad, labels)
    with pytest.raises(NonFiniteLoss, match=r"loss became nan at step 8; lower the learning "
                                            r"rate.*last good checkpoint, step 6") as err:
        fit(state, step, loader, workdir=tmp_path / "bad", num_steps=10, checkpoint_every=3,
            max_to_keep=5, verbose=False)
    assert isinstance(err.value, UserError) and err.value.step == 8
    assert _steps(tmp_path / "bad") == [3, 6]  # nothing of step 8 or later, nothing lost
    logged = (tmp_path / "bad" / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(r)["step"] < 8 for r in logged)  # nothing of the diverged steps

    state, step, loader = _mlp_run(x, labels)  # the same run, clean data, stopped at 6
    clean, _ = fit(state, step, loader, workdir=tmp_path / "clean", num_steps=6, verbose=False)
    template, _, _ = _mlp_run(x, labels)
    saved, meta, at = restore_from_workdir(tmp_path / "bad", template, fix="")
    assert at == 6 and meta["data"]["epoch"] == 0 and meta["data"]["batch"] == 6
    for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(clean), strict=True):
        assert np.all(np.isfinite(a)) and np.array_equal(a, b)


def test_parameters_that_become_inf_while_the_loss_stays_finite_are_never_saved(tmp_path):
    """A parameter the loss does not read turns inf; the loss stays finite, so only the
    save's check of the parameters can see it (jaxdl.train.guards.FiniteGuard.save)."""
    x, labels = _data()
    state, step, loader = _mlp_run(x, labels)
    params = jax.tree.map(lambda a: a, state.params)
    unused = jnp.full((3,), jnp.inf)  # beside the MLP's own layers: no gradient reaches it
    state = state.replace(params={**params, "unused": unused},
                          opt_state=make_optimizer("adam", 1e-2).init({**params,
                                                                         "unused": unused}))

    def loss(p, batch, rng, model, train):
        return LOSS({k: v for k, v in p.items() if k != "unused"}, batch, rng, model, train)

    step = compile_step(make_train_step(loss, MLP((16, 3))))
    with pytest.raises(NonFiniteLoss, match=r"the parameters became nan or inf by step 3 "
                                            r"\(the loss was still finite\)"):
        fit(state, step, loader, workdir=tmp_path, num_steps=6, checkpoint_every=3,
            verbose=False)
    assert _steps(tmp_path) == []  # nothing non-finite was saved


def test_resuming_with_another_batch_size_is_a_user_error(tmp_path):
    x, labels = _data()
    state, step, loader = _mlp_run(x, labels, batch_size=8)
    fit(state, step, loader, workdir=tmp_path, num_steps=3, verbose=False)
    state, step, loader = _mlp_run(x, labels, batch_size=16)
    with pytest.raises(UserError, match=r"checkpoint step 3 .*batch_size 8 then, 16 now.*"
                                        r"resume with the batch size"):
        fit(state, step, loader, workdir=tmp_path, num_steps=6, verbose=False)
    assert _steps(tmp_path) == [3]


def test_fit_restores_the_sigterm_handler_and_cleans_what_a_crash_left(tmp_path, capsys):
    x, labels = _data()
    state, step, loader = _mlp_run(x, labels)
    fit(state, step, loader, workdir=tmp_path, num_steps=6, checkpoint_every=3, verbose=False)
    ckpts = tmp_path / "checkpoints"
    # What orbax leaves when killed mid-save, and mid-delete of an old step (keep N).
    (ckpts / "9.orbax-checkpoint-tmp" / "state.orbax-checkpoint-tmp").mkdir(parents=True)
    (ckpts / "3" / "commit_success.txt").unlink()

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        state, step, loader = _mlp_run(x, labels)
        fit(state, step, loader, workdir=tmp_path, num_steps=9, checkpoint_every=3,
            verbose=True)
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
    out = capsys.readouterr().out
    assert "Removing unfinished checkpoint 9.orbax-checkpoint-tmp" in out
    assert "Removing half-deleted checkpoint step 3" in out
    assert "Resuming from checkpoint step 6" in out
    assert _steps(tmp_path) == [6, 9]
    ckpt = Checkpointer(ckpts)  # a reader removes nothing
    try:
        assert ckpt.all_steps() == [6, 9]
    finally:
        ckpt.close()


def test_sigint_saves_like_sigterm_exits_130_and_resumes_exactly(tmp_path, spawn, reference):
    """Ctrl-C is not a crash: the run saves at the next step boundary and exits 130."""
    int_at = random.Random(11).randint(7, STEPS - 4)
    workdir = tmp_path / "run"
    child = spawn(workdir, "interrupted", RESUME_CHILD_PAUSE_AT=int_at)
    child.wait_for(f"step {int_at}")
    child.kill(signal.SIGINT)
    assert child.finish() == 130, child._report("did not exit 130 on SIGINT")
    assert f"Preemption notice: preempted at step {int_at + 1}" in child.text()
    assert "Traceback" not in child.err.read_text()
    assert _steps(workdir)[-1] == int_at + 1
    _resume_and_compare(spawn, workdir, reference, resumes_from=int_at + 1)
