"""Reliability as a user meets it, each case a real process through the command line:
damaged checkpoints are moved aside and retrained through, a refused rerun changes nothing
in the workdir, one run per workdir, every bad value is refused before any work, damaged
small files are one line. Exit status 2 and exactly one stderr line `error: ...` for every
refusal; for the checkpoint kinds the rerun finishes and matches an undamaged run bitwise.
"""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MLP = ["--config.recipe=mlp", "--config.problem=breast_cancer", "--config.epochs=2"]


def jaxdl(*argv, timeout=240, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jaxdl.cli", *argv], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})})


def train(workdir: Path, *overrides, env=None) -> subprocess.CompletedProcess:
    return jaxdl("train", *MLP, "--workdir", str(workdir), *overrides, env=env)


def refused(proc: subprocess.CompletedProcess, *needles) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def hashes(workdir: Path) -> dict:
    return {str(p.relative_to(workdir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(workdir.rglob("*")) if p.is_file()}


def final_params(workdir: Path):
    from jaxdl import run

    return jax.tree.leaves(run.load(workdir).state)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-epoch run (checkpoints at steps 15 and 30)."""
    workdir = tmp_path_factory.mktemp("finished") / "run"
    proc = train(workdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["15", "30"]
    return workdir


def _truncate_arrays(step: Path):
    for f in (step / "state").rglob("d/*"):
        if f.is_file():
            with open(f, "r+b") as fh:
                fh.truncate(10)


DAMAGE = {
    "metadata_overwritten": lambda step: (step / "state" / "_METADATA").write_text("{x"),
    "state_removed": lambda step: shutil.rmtree(step / "state"),
    "meta_removed": lambda step: shutil.rmtree(step / "meta"),
    "arrays_truncated": _truncate_arrays,
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", DAMAGE)
def test_1_damaged_latest_step_is_moved_aside_and_the_rerun_finishes_exactly(
        finished, tmp_path, damage):
    workdir = tmp_path / "run"
    shutil.copytree(finished, workdir)
    DAMAGE[damage](workdir / "checkpoints" / "30")
    # A reader falls back and says so, leaving the step where it is.
    proc = jaxdl("eval", "--workdir", str(workdir))
    assert proc.returncode == 0 and "falling back to step 15" in proc.stderr, proc.stderr
    assert (workdir / "checkpoints" / "30").exists()
    # Training moves it aside, retrains through step 30 and finishes; again, it is done.
    for _ in range(2):
        proc = train(workdir)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
    aside = [p.name for p in (workdir / "checkpoints").iterdir() if ".damaged-" in p.name]
    assert len(aside) == 1 and aside[0].startswith("30.damaged-")
    for got, want in zip(final_params(workdir), final_params(finished), strict=True):
        np.testing.assert_array_equal(got, want)


REFUSED_RERUNS = [
    (["--config.problem=diabetis"], ["unknown problem 'diabetis'"]),
    (["--config.hidden_sizes=(32,)"], ["does not match this model"]),
    (["--config.epochs=1"], ["at step 30, past this run's 15 steps"]),
    (["--config.dropout=1.5"], ["'dropout' is 1.5", "[0.0, 1.0)"]),
    (["--config.batch_size=16"], ["batch size"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("overrides, needles", REFUSED_RERUNS,
                         ids=["typo", "width", "fewer_epochs", "dropout", "batch_size"])
def test_2_a_refused_rerun_leaves_the_workdir_exactly_as_it_was(finished, overrides, needles):
    before = hashes(finished)
    refused(train(finished, *overrides), *needles)
    assert hashes(finished) == before
    proc = jaxdl("eval", "--workdir", str(finished))  # the workdir still describes its run
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_3_one_run_per_workdir_and_stale_locks_are_taken_over(finished, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(finished, workdir)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = workdir / "run.lock"
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": other.pid}))
        before = hashes(workdir)
        refused(train(workdir, "--config.epochs=3"), f"in use by process {other.pid}")
        assert hashes(workdir) == before
    finally:
        other.kill()
        other.wait()
    proc = train(workdir, "--config.epochs=3")  # its process is gone now: a stale lock
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"Taking over the stale lock of process {other.pid}" in proc.stdout
    assert not (workdir / "run.lock").exists()
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    refused(train(workdir, "--config.epochs=3"), "on host elsewhere", f"remove {lock}")


BAD_VALUES = [  # (recipe and overrides, needles): refused before any data or compile
    (["--config.seed=-1"], ["'seed' is -1"]),
    (["--config.seed=99999999999"], ["'seed' is 99999999999", "[0, 2147483647]"]),
    (["--config.batch_size=100000000"], ["'batch_size' is 100000000"]),
    (["--config.hidden_sizes=(-3, 4)"], ["'hidden_sizes' is (-3, 4)"]),
    (["--config.hidden_sizes=(2.5,)"], ["'hidden_sizes' is (2.5,)", "integers"]),
    (["--config.epochs=0"], ["'epochs' is 0"]),
    (["--config.epochs=-1"], ["'epochs' is -1"]),
    (["--config.learning_rate=-0.1"], ["'learning_rate' is -0.1"]),
    (["--workdir="], ["--workdir is empty"]),
    (["--config.recipe=decoder_lm", "--config.prompt="], ["'prompt' is ''"]),
    (["--config.recipe=decoder_lm", "--config.sample_tokens=0"], ["'sample_tokens' is 0"]),
    (["--config.recipe=rnn_lm", "--config.temperature=-1"], ["'temperature' is -1.0"]),
    (["--config.recipe=rnn_lm", "--config.top_k=-1"], ["'top_k' is -1"]),
    (["--config.recipe=text2img", "--config.eval_every=0"], ["'eval_every' is 0"]),
    (["--config.recipe=text2img", "--config.grid_per_class=0"], ["'grid_per_class' is 0"]),
    (["--config.recipe=text2img", "--config.fid_samples=0"], ["'fid_samples' is 0"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("overrides, needles", BAD_VALUES,
                         ids=[" ".join(o).replace("--config.", "") for o, _ in BAD_VALUES])
def test_4_5_6_bad_values_are_refused_before_any_work(tmp_path, overrides, needles):
    workdir = tmp_path / "run"
    recipe = [o for o in overrides if o.startswith("--config.recipe=")] or MLP[:1]
    rest = [o for o in overrides if not o.startswith("--config.recipe=")]
    argv = ["train", *recipe, "--workdir", str(workdir), *rest]
    if "--workdir=" in rest:
        argv = ["train", *recipe, "--workdir="]
    refused(jaxdl(*argv, timeout=60), *needles)
    assert not workdir.exists() or not any(workdir.rglob("*"))


@pytest.mark.slow
def test_7_damaged_small_files_are_one_line(finished, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(finished, workdir)
    text = (workdir / "results.json").read_text()
    (workdir / "results.json").write_text(text[:len(text) // 2])  # a kill mid-write
    refused(jaxdl("info", "--workdir", str(workdir)), "results.json is damaged")
    (workdir / "results.json").write_text("[1, 2]")
    refused(jaxdl("info", "--workdir", str(workdir)), "results.json is damaged", "a list")
    (workdir / "config.json").write_text('{"recipe": "ml')
    for command in ("info", "eval", "sample"):
        refused(jaxdl(command, "--workdir", str(workdir)), "config.json is damaged")


SIMULATED_FULL_DISK = """
import errno
import orbax.checkpoint as ocp
_save = ocp.CheckpointManager.save
def save(self, step, *args, **kwargs):
    if int(step) == 45:
        raise OSError(errno.ENOSPC, "No space left on device")
    return _save(self, step, *args, **kwargs)
ocp.CheckpointManager.save = save
"""


@pytest.mark.slow
def test_8_full_disk_during_a_save_is_one_line_and_keeps_the_last_checkpoint(tmp_path):
    """A real full disk: a 400 kB tmpfs holds two of the run's checkpoints, not the third.
    Mounting needs root (CI and the developer machines run as root); where the mount is not
    allowed, the child's orbax saves of step 45 fail with ENOSPC instead (sitecustomize)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(disk)],
                             capture_output=True, text=True).returncode == 0
    hook = tmp_path / "hook"
    if not mounted:
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(SIMULATED_FULL_DISK)
    env = {} if mounted else {"PYTHONPATH": str(hook)}
    try:
        workdir = disk / "run"
        line = refused(train(workdir, "--config.epochs=3", env=env),
                       "no space left on the device", "while saving checkpoint step 45",
                       "step 30, is kept")
        assert "step 30" in line
        if mounted:
            subprocess.run(["mount", "-o", "remount,size=20m", str(disk)], check=True)
        proc = train(workdir, "--config.epochs=3")  # space freed: resumes and finishes
        assert proc.returncode == 0, proc.stderr[-2000:]
        reference = tmp_path / "reference"
        assert train(reference, "--config.epochs=3").returncode == 0
        for got, want in zip(final_params(workdir), final_params(reference), strict=True):
            np.testing.assert_array_equal(got, want)
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)], capture_output=True)


@pytest.mark.slow
def test_9_the_error_line_never_shares_the_progress_bar(tmp_path):
    proc = jaxdl("train", "--config.recipe=mlp", "--config.problem=diabetes",
                 "--config.optimizer=sgd", "--config.learning_rate=10", "--config.epochs=3",
                 "--config.verbose=True", "--workdir", str(tmp_path / "run"))
    assert proc.returncode == 2
    last = proc.stderr.rstrip("\n").split("\n")[-1]
    assert last.split("\r")[-1].startswith("error: loss became inf at step")
    assert not last.split("\r")[0].strip() or last.startswith("error: ")  # no bar before it


def test_a_missing_embedded_file_is_one_line(tmp_path, monkeypatch):
    from jaxdl.data import text
    from jaxdl.errors import UserError

    monkeypatch.setattr(text, "EMBEDDED_DIR", tmp_path)  # a damaged install
    with pytest.raises(UserError, match=r"cannot read .*tinyshakespeare.txt .*reinstall jaxdl"):
        text.load_text("tinyshakespeare")


def test_3_racing_runs_never_share_a_workdir(tmp_path):
    """Six processes take the same workdir's lock at the same instant, 40 times over: a
    fresh workdir, or one with a stale lock (a process that is gone). Exactly one wins each
    time; the lock is written whole in one step, so none finds it empty and takes it over."""
    import multiprocessing as mp

    from tests.lock_race_child import race

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    dirs = []
    for i in range(40):
        d = tmp_path / f"w{i}"
        d.mkdir()
        if i % 2:
            (d / "run.lock").write_text(json.dumps({"host": socket.gethostname(),
                                                    "pid": int(gone)}))
        dirs.append(str(d))
    ctx = mp.get_context("spawn")
    n = 6
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=race, args=(dirs, barrier, results, k)) for k in range(n)]
    for p in procs:
        p.start()
    rows = [results.get(timeout=240) for _ in range(n * len(dirs))]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    for i in range(len(dirs)):
        winners = [me for j, me, won in rows if j == i and won]
        assert len(winners) == 1, (i, winners)
    assert not any(Path(d, "run.lock").exists() for d in dirs)
    assert not [p.name for d in dirs for p in Path(d).iterdir()]  # no temporary files left
