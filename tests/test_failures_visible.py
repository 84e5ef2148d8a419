"""Nothing fails silently: restore and save failures classified and reported in one line,
the stderr filter losing no line, imports leaving process-wide state alone, mirror pushes
and the multi-host preemption service reporting their failures."""

import contextlib
import errno
import io
import json
import random
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

from jaxdl import storage, storage_errors
from jaxdl.errors import UserError
from jaxdl.train import noise
from jaxdl.train.checkpoint import Checkpointer
from jaxdl.train.noise import QuietStderr

ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------ classification


@pytest.mark.parametrize("error, kind", [
    (ValueError("ABORTED: Error reading gs://b/c/2/state/w/.zarray: All 4 retry attempts "
                "failed: CURL error Empty reply from server"), "transient"),
    (ConnectionResetError(104, "Connection reset by peer"), "transient"),
    (type("ServerDisconnectedError", (Exception,), {})("Server disconnected"), "transient"),
    (ValueError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 8.0GiB"), "memory"),
    (PermissionError(13, "Permission denied"), "denied"),
    (ValueError("PERMISSION_DENIED: 403 Forbidden"), "denied"),
    (ValueError("Expecting value: line 1 column 1 (char 0)"), "damage"),
    (ValueError("OUT_OF_RANGE: Error reading [tensorstore_spec='{}']"), "damage"),
    (Exception("Encountered error while reading array index 3"), "damage"),
    (KeyError("params"), "damage"),
    (FileNotFoundError(2, "No such file"), "damage"),
    (RuntimeError("something nobody has seen"), "unknown"),
    (UserError("checkpoint step 2 does not match this model"), "unknown"),
])
def test_storage_errors_are_classified(error, kind):
    assert storage_errors.classify(error) == kind


def test_a_cause_in_the_chain_decides_and_a_missing_file_is_damage_only_when_complete():
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as inner:
            raise ValueError("Error opening zarr driver") from inner
    except ValueError as e:
        assert storage_errors.classify(e) == "transient"
    missing = FileNotFoundError(2, "No such file")
    assert storage_errors.classify(missing, missing_is_damage=False) == "unknown"


def test_retrying_retries_transient_errors_until_the_deadline_and_no_others():
    calls, slept, said = [], [], []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise ConnectionError("Connection refused")
        return "restored"

    assert storage_errors.retrying(flaky, what="reading step 2", say=said.append, seconds=60,
                                   sleep=slept.append) == "restored"
    assert len(calls) == 4 and slept == [1.0, 2.0, 4.0]  # exponential backoff
    assert len(said) == 1 and "reading step 2" in said[0] and "retrying" in said[0]
    calls.clear()
    with pytest.raises(ValueError, match="Expecting value"):  # damage: not retried
        storage_errors.retrying(lambda: calls.append(1) or json.loads(""), what="x",
                                say=said.append, seconds=60, sleep=slept.append)
    assert len(calls) == 1
    with pytest.raises(ConnectionError):  # the deadline: the last error is raised
        storage_errors.retrying(lambda: (_ for _ in ()).throw(ConnectionError("down")),
                                what="x", say=said.append, seconds=0, sleep=slept.append)


# ------------------------------------------------------------------ restore and save


def _state(fill=0.0):
    return {"w": jnp.full((3, 4), fill), "b": jnp.zeros(4)}


@pytest.fixture
def two_steps(tmp_path):
    directory = tmp_path / "checkpoints"
    ckpt = Checkpointer(directory, async_save=False)
    for step in (1, 2):
        ckpt.save(step, _state(float(step)), {"step": step})
    ckpt.close()
    return directory


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("error, needles", [
    (ValueError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 12.5GiB"),
     ["out of memory restoring checkpoint step 2", "Out of memory while trying"]),
    (PermissionError(13, "Permission denied: '2/state/_METADATA'"),
     ["permission denied reading checkpoint step 2", "check the credentials"]),
    (RuntimeError("an unforeseen failure"),
     ["cannot read checkpoint step 2", "RuntimeError: an unforeseen failure",
      "not known damage"]),
], ids=["device_oom", "permission", "unknown"])
def test_a_restore_failure_that_is_not_damage_moves_nothing(two_steps, monkeypatch, capfd,
                                                            error, needles):
    """A training Checkpointer (cleanup=True) would move a damaged step aside; these
    failures are not damage: one line naming the step and the cause, no fall-back to step
    1, every file where it was."""
    real = ocp.CheckpointManager.restore

    def restore(self, step, *args, **kwargs):
        if step == 2:
            raise error
        return real(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "restore", restore)
    before = _files(two_steps)
    capfd.readouterr()
    ckpt = Checkpointer(two_steps, cleanup=True)
    with pytest.raises(UserError) as e:
        ckpt.restore_latest(_state())
    ckpt.close()
    message = str(e.value)
    assert "\n" not in message and "nothing was moved" in message, message
    for needle in needles:
        assert needle in message, message
    assert "falling back" not in capfd.readouterr().out
    assert _files(two_steps) == before


def test_a_failed_save_is_one_line_naming_step_path_and_cause(two_steps, monkeypatch):
    """A write that fails in orbax's background threads (an I/O error here) surfaces at the
    next wait as one UserError; the last complete step stays and restores."""
    ckpt = Checkpointer(two_steps)

    def refuse(self):
        raise OSError(errno.EIO, "Input/output error writing 3/state/w")

    ckpt.save(3, _state(3.0), {"step": 3})
    ckpt.manager.wait_until_finished()
    monkeypatch.setattr(ocp.CheckpointManager, "wait_until_finished", refuse)
    ckpt._saving = 4  # as if step 4 were being written when the store failed
    with pytest.raises(UserError) as e:
        ckpt.save(5, _state(5.0), {"step": 5})
    message = str(e.value)
    assert message.startswith(f"could not save checkpoint step 4 to {two_steps / '4'}"), message
    assert "Input/output error" in message and "step 3, is kept" in message, message
    monkeypatch.undo()
    ckpt.manager.close()
    state, meta, step = Checkpointer(two_steps).restore_latest(_state())
    assert step == 3 and float(state["w"][0, 0]) == 3.0


# ------------------------------------------------------------------ the stderr filter

NOISE = ("Traceback (most recent call last):\n"
         '  File "asyncio/base_events.py", line 874, in call_soon_threadsafe\n'
         "    self._check_closed()\n"
         "RuntimeError: Event loop is closed\n")
REAL = [
    ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
     "numpy._core._exceptions._ArrayMemoryError: Unable to allocate 8.00 GiB\n"),
    ("Traceback (most recent call last):\n  File \"y.py\", line 2, in f\n"
     "ValueError: bad\n\nDuring handling of the above exception, another exception "
     "occurred:\n\nTraceback (most recent call last):\n  File \"y.py\", line 4\n"
     "KeyboardInterrupt\n"),
    "Epoch 1:  50%|#####     | 8/16\r",
    "Epoch 1: 100%|##########| 16/16\n",
    "[Epoch 1] loss = 0.9090 | accuracy = 74.22%\n",
    "error: could not save checkpoint step 8\n",
    "Trace of a user's own line\n",
]


@pytest.mark.parametrize("seed", range(20))
def test_the_stderr_filter_drops_the_noise_and_loses_no_other_character(seed):
    """Noise tracebacks and real output in a random order, each written in random pieces
    (down to single characters; a write holds one writer's text, as a print does): the
    output is exactly the real output."""
    rng = random.Random(seed)
    parts = [rng.choice([NOISE, *REAL]) for _ in range(30)]
    out = io.StringIO()
    quiet = QuietStderr(out)
    for part in parts:
        i = 0
        while i < len(part):
            n = rng.choice([1, 2, 7, 40, 300])
            quiet.write(part[i:i + n])
            i += n
    quiet.close()
    assert out.getvalue() == "".join(p for p in parts if p != NOISE)


@pytest.mark.parametrize("seed", range(10))
def test_the_stderr_filter_reads_each_thread_on_its_own(seed):
    """As CI once printed: three native threads write the closed-loop traceback at once, a
    few characters per write ('RuntimeError: Traceback (most recent call last):' on one
    line), while the main thread writes its own lines. Each write here runs on a real
    thread of its own writer, in a random interleaving: the output is exactly the main
    thread's lines, in order."""
    from concurrent.futures import ThreadPoolExecutor

    rng = random.Random(seed)
    own = ["Checkpoint step 30 is unreadable (OUT_OF_RANGE); falling back to step 15.\n",
           "Moved the damaged checkpoint step 30 aside to 30.damaged-1.\n",
           "Trace of a user's own line\n"]
    texts = [own[0] + own[1] + own[2], NOISE * 2, NOISE, NOISE + REAL[0]]
    pieces = []
    for writer, text in enumerate(texts):
        i, mine = 0, []
        while i < len(text):
            n = rng.choice([1, 2, 7, 14])
            mine.append((writer, text[i:i + n]))
            i += n
        pieces.append(mine)
    order = []
    while any(pieces):
        order.append(rng.choice([p for p in pieces if p]).pop(0))
    out = io.StringIO()
    quiet = QuietStderr(out)
    pools = [ThreadPoolExecutor(max_workers=1) for _ in texts]
    try:
        for writer, piece in order:
            pools[writer].submit(quiet.write, piece).result()
    finally:
        for pool in pools:
            pool.shutdown()
    quiet.close()
    assert out.getvalue().replace(REAL[0], "") == "".join(own)
    assert REAL[0] in out.getvalue()


def test_the_stderr_filter_passes_an_unfinished_traceback_at_close():
    out = io.StringIO()
    quiet = QuietStderr(out)
    cut = 'Traceback (most recent call last):\n  File "z.py", line 9\n    cut off'
    quiet.write(cut)
    assert out.getvalue() == ""  # held: its exception line may still come
    quiet.close()
    assert out.getvalue() == cut


def test_the_stderr_filter_drops_noise_from_another_thread_mid_progress_bar():
    out = io.StringIO()
    quiet = QuietStderr(out)
    quiet.write("\rEpoch 1:  56%|#####6    | 9/16")
    other = threading.Thread(target=quiet.write, args=(NOISE,))
    other.start()
    other.join()
    quiet.write(NOISE)  # and from the bar's own thread, mid-line
    quiet.write("\rEpoch 1:  81%|########1 | 13/16\n")
    quiet.close()
    assert out.getvalue() == "\rEpoch 1:  56%|#####6    | 9/16\rEpoch 1:  81%|########1 | 13/16\n"


def test_a_process_that_dies_mid_traceback_still_prints_it():
    """The command-line filter on the process's own stderr writes what it holds at exit."""
    code = ("import sys; from jaxdl.train.noise import command_line_filters\n"
            "with command_line_filters():\n"
            "    sys.stderr.write('Traceback (most recent call last):\\n  File \"q\"\\n')\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stderr == ('Traceback (most recent call last):\n'
                                              '  File "q"\n'), r.stderr


def test_only_orbaxs_unawaited_write_coroutine_is_silenced_even_at_exit():
    """A save cut short by a full disk left orbax's `write_fragment` coroutine unawaited: CI
    printed Python's warning for it after the save's one-line error. That coroutine alone is
    silent, collected in the run or at exit; another never-awaited coroutine still warns, and
    a caller's own warning filters come back when the filters end."""
    code = """
import gc, sys, warnings
from jaxdl.train.noise import command_line_filters

def async_serialize_from_host():
    async def write_fragment():
        pass
    return write_fragment()

async def forgotten():
    pass

kept = []
with command_line_filters():
    async_serialize_from_host()  # collected at once
    kept.append(async_serialize_from_host())  # collected at exit
    forgotten()
    gc.collect()
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "forgotten' was never awaited" in r.stderr and "write_fragment" not in r.stderr, (
        r.stderr)
    before = list(warnings.filters)
    with contextlib.redirect_stderr(io.StringIO()), noise.command_line_filters():
        assert len(warnings.filters) == len(before) + 1
    assert warnings.filters == before


# ------------------------------------------------------------------ imports


def test_importing_jaxdl_changes_no_hooks_or_loggers():
    """A researcher who imports the train step keeps their own hooks and logging."""
    code = """
import importlib, logging, pkgutil, sys, threading, warnings
import jaxdl
def snapshot():
    loggers = {n: (lg.level, list(lg.filters), list(lg.handlers), lg.disabled)
               for n, lg in [("", logging.getLogger()), ("absl", logging.getLogger("absl")),
                             ("asyncio", logging.getLogger("asyncio")),
                             ("orbax", logging.getLogger("orbax"))]}
    return (sys.excepthook, sys.unraisablehook, threading.excepthook, sys.stderr, sys.stdout,
            loggers, list(warnings.filters))
import absl.logging  # the libraries' own import-time set-up is theirs, not jaxdl's
import orbax.checkpoint, jax, flax, optax
before = snapshot()
names = [m.name for m in pkgutil.walk_packages(jaxdl.__path__, "jaxdl.")]
for name in names:
    importlib.import_module(name)
after = snapshot()
assert len(names) > 50, names
assert before == after, [(i, b, a) for i, (b, a) in enumerate(zip(before, after)) if b != a]
print("unchanged", len(names))
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env={**__import__("os").environ, "JAX_PLATFORMS": "cpu"})
    assert r.returncode == 0 and r.stdout.startswith("unchanged"), r.stderr[-3000:]


# ------------------------------------------------------------------ gs:// mirror pushes


class _Bucket:
    """A bucket path that refuses writes while `down` (a store that does not answer)."""

    def __init__(self, root: Path, state: dict):
        self.root, self.state = root, state

    def __truediv__(self, rel):
        return _Bucket(self.root / rel, self.state)

    @property
    def parent(self):
        return _Bucket(self.root.parent, self.state)

    def mkdir(self, **kwargs):
        self.root.mkdir(**kwargs)

    def write_bytes(self, data):
        if self.state["down"]:
            raise ConnectionError("Server disconnected")
        self.root.write_bytes(data)

    def write_text(self, text):
        self.write_bytes(text.encode())

    def unlink(self):
        self.root.unlink()


def _mirror(tmp_path, monkeypatch, down: bool):
    monkeypatch.setenv("JAXDL_CACHE", str(tmp_path / "cache"))
    mirror = storage.Mirror("gs://bucket/run")
    state = {"down": down}
    mirror.root = _Bucket(tmp_path / "bucket", state)
    mirror.local.mkdir(parents=True)
    for name in ("config.json", "metrics.jsonl", "curves.png"):
        (mirror.local / name).write_text(name)
    return mirror, state


def test_a_mirror_that_cannot_push_warns_once_then_lists_the_unsynced_files(
        tmp_path, monkeypatch, capsys):
    mirror, state = _mirror(tmp_path, monkeypatch, down=True)
    mirror.start(every=0.05, warn_after=3)
    time.sleep(0.6)  # about 10 failed background pushes
    err = capsys.readouterr().err
    assert err.count("warning: ") == 1, err  # once, not at every push
    assert "3 file(s) of gs://bucket/run unsynced since" in err and "Server disconnected" in err
    with pytest.raises(UserError) as e:
        mirror.stop()
    message = str(e.value)
    assert "config.json, curves.png, metrics.jsonl" in message and str(mirror.local) in message
    state["down"] = False  # the bucket answers again: everything is copied, nothing is left
    assert mirror.push() == 3 and not mirror.unsynced
    mirror.stop()
    assert sorted(p.name for p in (tmp_path / "bucket").iterdir()) == [
        "config.json", "curves.png", "metrics.jsonl"]


def test_a_failed_final_push_never_replaces_the_commands_own_error(tmp_path, monkeypatch,
                                                                    capsys):
    mirror, _ = _mirror(tmp_path, monkeypatch, down=True)
    with pytest.raises(UserError, match="the run's own error"):
        with storage.synced(mirror):
            raise UserError("the run's own error")
    err = capsys.readouterr().err
    assert err.startswith("warning: 3 file(s) of gs://bucket/run unsynced"), err
    with pytest.raises(UserError, match="unsynced"):  # a run that succeeded: an error
        with storage.synced(mirror):
            pass


def test_check_bucket_probes_a_write(tmp_path, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1")  # no credentials asked
    mirror, _ = _mirror(tmp_path, monkeypatch, down=True)

    class Exists:
        def exists(self):
            return True

    monkeypatch.setattr(storage, "remote", lambda url: Exists())
    with pytest.raises(UserError) as e:
        mirror.check_bucket()
    assert str(e.value).startswith("cannot write to gs://bucket/run (Server disconnected)")


# ------------------------------------------------------------------ multi-host preemption


def test_multi_host_preemption_that_cannot_ask_the_service_says_so_once(monkeypatch, capsys):
    from jax.experimental import multihost_utils

    from jaxdl.train.guards import PreemptionWatch

    def disabled(step):
        raise RuntimeError("Preemption sync manager has not been initialized.")

    monkeypatch.setattr(multihost_utils, "reached_preemption_sync_point", disabled)
    watch = PreemptionWatch()
    watch.distributed = True  # as after jax.distributed.initialize
    assert not watch.reached(1) and not watch.reached(2)
    err = capsys.readouterr().err
    assert err.count("warning: ") == 1 and "a SIGTERM will not save a checkpoint" in err, err
    assert "has not been initialized" in err

