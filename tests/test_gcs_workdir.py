"""`--workdir gs://bucket/run` against a Cloud Storage emulator this test starts on
127.0.0.1 (gcp-storage-emulator, in memory) and stops: train, cut the network mid-save (one
line), resume bitwise, then every `jaxdl` subcommand from the bucket; a restore that loses
the network (one line, nothing moved, then the newest step); a store that refuses a save;
and the one-line errors for a bucket that does not exist or is read-only, no credentials
and an unknown scheme."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxdl import storage
from jaxdl.errors import UserError
from tests.network import Network
from tests.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
EMULATOR = Path(sys.executable).with_name("gcp-storage-emulator")  # .[dev]
TRAIN = ["--config.recipe=image_classifier", "--config.dataset=synthetic", "--config.epochs=2",
         "--config.batch_size=16", "--config.checkpoint_every=8",
         "--config.log_every=4"]  # 32 steps of 16 (MyNet, 256 synthetic images)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """The emulator's environment (its port, the test token, a cache for mirrors)."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("emulator") / "log", "w")  # noqa: SIM115
    proc = subprocess.Popen([str(EMULATOR), "start", "--host=127.0.0.1", f"--port={port}",
                             "--in-memory"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
           "GOOGLE_AUTH_TOKEN_FOR_TESTING": "x", "JAXDL_CHECKPOINT_OCDBT": "0",
           "JAXDL_CACHE": str(tmp_path_factory.mktemp("cache"))}
    try:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage as gcs

        deadline = time.monotonic() + 30
        while True:
            try:
                os.environ["STORAGE_EMULATOR_HOST"] = url
                gcs.Client(credentials=AnonymousCredentials(), project="t").create_bucket("run")
                break
            except Exception:  # noqa: BLE001 - not listening yet
                assert time.monotonic() < deadline and proc.poll() is None, "no emulator"
                time.sleep(0.2)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        yield env
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    finally:
        proc.kill()
        proc.wait()
        log.close()


def _jaxdl(args, env, **kw):
    return subprocess.run([sys.executable, "-m", "jaxdl.cli", *args], cwd=ROOT, env={
        **os.environ, **env}, capture_output=True, text=True, timeout=300, **kw)


def _state(workdir: str):
    import jax

    from jaxdl import run

    return [np.asarray(x) for x in jax.tree.leaves(run.load(workdir).state)]


@pytest.mark.slow
def test_a_gs_workdir_that_fails_mid_save_in_an_outage_resumes_bitwise_and_serves_every_command(
        emulator, tmp_path):
    """The run reaches the bucket through a proxy (tests/network.py). After the step-8
    checkpoint is complete the network is cut in the middle of step 16's upload (its third
    object). TensorStore's bounded retries give up and the run ends in one line naming
    step 16, its path and the cause. With the network back, the same command resumes from
    step 8 (the half-written step 16 removed) and ends bitwise equal to an uninterrupted
    local run."""
    local = _jaxdl(["train", *TRAIN, "--workdir", str(tmp_path / "local")], emulator)
    assert local.returncode == 0, local.stderr[-2000:]
    url = "gs://run/cnn"
    net = Network(int(emulator["STORAGE_EMULATOR_HOST"].rsplit(":", 1)[1]))
    through = {"STORAGE_EMULATOR_HOST": net.url, "TENSORSTORE_GCS_HTTP_URL": net.url}
    net.cut_at(b"name=cnn%2Fcheckpoints%2F16%2F", 3)  # tensorstore's uploads of step 16
    try:
        failed = _jaxdl(["train", *TRAIN, "--workdir", url], {**emulator, **through})
    finally:
        net.close()
    assert net.down.is_set() and failed.returncode == 2, failed.stderr[-3000:]
    errors = [ln for ln in failed.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    warnings = [ln for ln in failed.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and f"of {url} unsynced since" in warnings[0], warnings
    assert "metrics.jsonl" in warnings[0], warnings[0]  # the final push: listed, not lost
    assert errors[0].startswith(f"error: could not save checkpoint step 16 to {url}/"
                                "checkpoints/16: the store did not answer"), errors[0]
    assert "step 8, is kept and a rerun resumes from it" in errors[0], errors[0]
    checkpoints = storage.remote(url) / "checkpoints"
    assert (checkpoints / "8" / "commit_success.txt").exists()
    assert (checkpoints / "16").exists() and not (checkpoints / "16" / "commit_success.txt"
                                                  ).exists()  # cut off mid-save
    assert not (storage.remote(url) / "results.json").exists()  # failed mid-run
    resumed = _jaxdl(["train", *TRAIN, "--workdir", url], emulator)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming from checkpoint step 8" in resumed.stdout, resumed.stdout[-2000:]
    for a, b in zip(_state(str(tmp_path / "local")), _state(url), strict=True):
        np.testing.assert_array_equal(a, b)  # bitwise: the uninterrupted local run
    results = json.loads((storage.remote(url) / "results.json").read_text())
    for name in ("config.json", "metrics.jsonl", "curves.png", "confusion_matrix.png"):
        assert (storage.remote(url) / name).exists(), name
    assert any(p.name.startswith("events.out.tfevents") for p in storage.remote(url).iterdir())
    info = _jaxdl(["info", "--workdir", url], emulator)
    assert info.returncode == 0 and "image_classifier" in info.stdout, info.stderr[-2000:]
    ev = _jaxdl(["eval", "--workdir", url], emulator)
    assert ev.returncode == 0, ev.stderr[-2000:]
    evaluated = json.loads((storage.remote(url) / "eval.json").read_text())
    assert evaluated["test_accuracy"] == pytest.approx(results["test_accuracy"])
    from PIL import Image

    from jaxdl.data import sources

    image = tmp_path / "digit.png"
    Image.fromarray(sources.mnist_5k_split().test.images[0, ..., 0]).save(image)
    pred = _jaxdl(["predict", "--workdir", url, "--json", str(image)], emulator)
    assert pred.returncode == 0, pred.stderr[-2000:]
    assert json.loads(pred.stdout.splitlines()[-1])["file"] == str(image)


def test_a_missing_bucket_and_an_unknown_scheme_are_one_line_before_training(emulator):
    with pytest.raises(UserError, match="bucket gs://nosuchbucket does not exist"):
        storage.local_workdir("gs://nosuchbucket/run")
    with pytest.raises(UserError, match="unknown scheme 's3'"):
        storage.local_workdir("s3://bucket/run")
    r = _jaxdl(["train", *TRAIN, "--workdir", "gs://nosuchbucket/x"], emulator)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "does not exist" in r.stderr


def test_no_credentials_is_one_line_before_training_and_reaches_no_network(tmp_path):
    """No emulator, no key file, no gcloud config, and the metadata server (a TPU VM's
    credentials) pointed at a closed loopback port and not probed: a one-line error."""
    env = {k: v for k, v in os.environ.items() if k not in (
        "STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "TENSORSTORE_GCS_HTTP_URL",
        "GOOGLE_AUTH_TOKEN_FOR_TESTING")}
    closed = f"127.0.0.1:{free_port()}"
    env.update(CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), HOME=str(tmp_path), NO_GCE_CHECK="true",
               GCE_METADATA_HOST=closed, GCE_METADATA_IP=closed, JAXDL_CACHE=str(tmp_path / "c"))
    r = subprocess.run([sys.executable, "-m", "jaxdl.cli", "train", *TRAIN, "--workdir",
                        "gs://somebucket/run"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr[-2000:]
    assert "no Google Cloud credentials to reach gs://somebucket" in r.stderr
    assert not (tmp_path / "c").exists()  # nothing written: the check comes first


def _through(net: Network, monkeypatch) -> None:
    for key in ("STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL"):
        monkeypatch.setenv(key, net.url)


def test_a_restore_that_loses_the_store_is_one_line_moves_nothing_then_resumes_the_newest(
        emulator, monkeypatch):
    """The network to the bucket goes down while step 2 is read. That is not damage: after
    the retries (JAXDL_IO_RETRY_SECONDS) one line names the step and the cause, both steps
    stay where they are, and with the network back the newest step restores bitwise."""
    import jax.numpy as jnp

    from jaxdl.train.checkpoint import Checkpointer

    directory = "gs://run/restore/checkpoints"
    states = {s: {"w": jnp.full((64, 64), float(s)), "b": jnp.arange(3.0) * s} for s in (1, 2)}
    ckpt = Checkpointer(directory, async_save=False)
    for step, state in states.items():
        ckpt.save(step, state, {"step": step})
    ckpt.close()
    net = Network(int(emulator["STORAGE_EMULATOR_HOST"].rsplit(":", 1)[1]))
    _through(net, monkeypatch)
    monkeypatch.setenv("JAXDL_IO_RETRY_SECONDS", "1")
    try:
        net.cut_at(b"checkpoints%2F2%2Fstate%2Fw", 1)
        reader = Checkpointer(directory, cleanup=True)
        with pytest.raises(UserError) as e:
            reader.restore_latest(states[1])
        message = str(e.value)
        assert "\n" not in message and "cannot read checkpoint step 2" in message, message
        assert "did not answer" in message and "nothing was moved" in message, message
        assert net.down.is_set()
        net.heal()
        names = sorted(p.name for p in storage.remote(directory).iterdir())
        assert names == ["1", "2"], names  # nothing moved aside, nothing deleted
        # The network comes back while the retries run: the newest step, bitwise.
        monkeypatch.setenv("JAXDL_IO_RETRY_SECONDS", "60")
        net.cut_at(b"checkpoints%2F2%2Fstate%2Fw", 1)
        import threading

        threading.Timer(2.0, net.heal).start()
        state, meta, step = Checkpointer(directory, cleanup=True).restore_latest(states[1])
        assert step == 2 and meta == {"step": 2}
        for a, b in zip(jax_leaves(state), jax_leaves(states[2]), strict=True):
            np.testing.assert_array_equal(a, b)
    finally:
        net.close()


def jax_leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_a_store_that_refuses_a_save_is_one_line(emulator, tmp_path):
    """The bucket refuses step 16's writes (HTTP 403 from the proxy) after step 8 is
    complete: the run ends in exactly one stderr line of jaxdl's, naming the step, its path
    and the cause, with no orbax traceback; step 8 stays complete for a rerun."""
    net = Network(int(emulator["STORAGE_EMULATOR_HOST"].rsplit(":", 1)[1]))
    net.refuse(b"refused%2Fcheckpoints%2F16%2F")
    try:
        r = _jaxdl(["train", *TRAIN, "--workdir", "gs://run/refused"],
                   {**emulator, "STORAGE_EMULATOR_HOST": net.url,
                    "TENSORSTORE_GCS_HTTP_URL": net.url})
    finally:
        net.close()
    assert r.returncode == 2 and net.refused >= 1, r.stderr[-3000:]
    # Not counted: the progress bar, tensorstore's own log line, and orbax's advice when a
    # save waited for the one before it (true here: every write goes through the proxy).
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "%|" not in ln
             and not ln.startswith("I1")
             and not ln.startswith("WARNING:absl:Waiting for previous save to complete")]
    assert len(lines) == 1, "\n".join(lines)
    assert lines[0].startswith("error: could not save checkpoint step 16 to gs://run/refused/"
                               "checkpoints/16: permission denied ("), lines[0]
    assert "403" in lines[0], lines[0]
    assert lines[0].endswith("the last complete checkpoint, step 8, is kept and a rerun "
                             "resumes from it"), lines[0]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    checkpoints = storage.remote("gs://run/refused") / "checkpoints"
    assert (checkpoints / "8" / "commit_success.txt").exists()
