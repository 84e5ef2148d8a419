"""The main experiment end to end (tiny config): files in the workdir, the reference's output,
and the `jaxdl` command on the workdir it leaves (info, eval, predict, event files)."""

import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from experiments import cnn_mnist
from jaxdl import cli
from jaxdl.config import apply_overrides
from jaxdl.data.synthetic import synthetic_split
from tests.workdir_checks import check_event_files, check_info_and_eval, check_png


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cnn")
    config = apply_overrides(cnn_mnist.get_config(), {
        "dataset": "synthetic", "epochs": "1", "batch_size": "32", "eval_batch_size": "64",
        "log_every": "2"})
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        results = cnn_mnist.main(config, workdir)
    return workdir, config, results, out.getvalue()


def test_cnn_mnist_end_to_end_and_resume(tiny_run, capsys):
    tmp_path, config, results, out = tiny_run
    for needle in ("Training on 256 samples, validating on 64 samples.", "[Epoch 1] loss = ",
                   "Test loss: ", "Test accuracy: ", "precision", "Confusion matrix"):
        assert needle in out
    saved = json.loads((tmp_path / "results.json").read_text())
    for key in ("dataset", "epochs", "train_seconds", "test_loss", "test_accuracy"):
        assert key in saved
    assert saved["dataset"] == "synthetic" and saved["epochs"] == 1
    assert 0.0 <= saved["test_accuracy"] <= 1.0 and saved == json.loads(json.dumps(results))
    check_png(tmp_path / "confusion_matrix.png")
    check_png(tmp_path / "curves.png")
    assert (tmp_path / "checkpoints" / "8").is_dir()
    # A finished run started again trains no more (the interrupted run is the next test).
    again = cnn_mnist.main(config, tmp_path)
    assert "Resuming from checkpoint step 8" in capsys.readouterr().out
    assert again["test_accuracy"] == results["test_accuracy"]


def test_cnn_mnist_interrupted_mid_epoch_resumes_to_the_uninterrupted_run(
        tiny_run, tmp_path, monkeypatch, capsys):
    """A preemption notice at step 5 of 8 (fit saves at that step boundary and stops); the
    same command again resumes from step 5 and ends bitwise where the uninterrupted run
    did: its parameters, test loss and accuracy."""
    from jaxdl import run
    from jaxdl.train import guards

    workdir, config, results, _ = tiny_run
    real = guards.PreemptionWatch.reached

    def reached(self, step):
        self.received = self.received or step == 5
        return real(self, step)

    monkeypatch.setattr(guards.PreemptionWatch, "reached", reached)
    with pytest.raises(guards.Preempted) as stopped:
        cnn_mnist.main(config, tmp_path)
    assert stopped.value.step == 5 and not (tmp_path / "results.json").exists()
    monkeypatch.undo()
    capsys.readouterr()
    resumed = cnn_mnist.main(config, tmp_path)
    assert "Resuming from checkpoint step 5" in capsys.readouterr().out
    assert (resumed["test_loss"], resumed["test_accuracy"]) == (results["test_loss"],
                                                                results["test_accuracy"])
    for a, b in zip(jax_leaves(run.load(tmp_path).state.params),
                    jax_leaves(run.load(workdir).state.params), strict=True):
        np.testing.assert_array_equal(a, b)


def jax_leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_workdir_serves_info_eval_and_event_files(tiny_run, capsys):
    workdir = tiny_run[0]
    results = check_info_and_eval(workdir, capsys, "image_classifier")
    assert results["confusion_matrix"] and results["throughput_unit"] == "images/s"
    events = check_event_files(workdir, ("train/loss", "train/accuracy",
                                         "train/learning_rate", "train/throughput",
                                         "epoch/loss", "eval/test_accuracy"))
    assert "confusion_matrix" in events.Tags()["images"]


def test_jaxdl_predict_top3_for_image_files_of_any_size(tiny_run, tmp_path, capsys):
    workdir = tiny_run[0]
    test = synthetic_split().test
    small = tmp_path / "digit.png"
    Image.fromarray(test.images[0, ..., 0]).save(small)
    big = tmp_path / "big.jpg"  # RGB, another size: through the same test transform
    Image.fromarray(test.images[1, ..., 0]).resize((90, 70)).convert("RGB").save(big)
    capsys.readouterr()
    assert cli.main(["predict", "--workdir", str(workdir), "--json", str(small), str(big)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["file"] for r in rows] == [str(small), str(big)]
    for row, label in zip(rows, test.labels[:2], strict=True):
        top = row["top"]
        assert len(top) == 3 and [t["class"] for t in top] == [str(t["index"]) for t in top]
        assert top[0]["index"] == label  # the synthetic classes are easy: trained to 100%
        p = [t["probability"] for t in top]
        assert p == sorted(p, reverse=True) and 0 < sum(p) <= 1 + 1e-6
    assert cli.main(["predict", "--workdir", str(workdir), str(small)]) == 0
    assert capsys.readouterr().out.startswith(f"{small}: {test.labels[0]} ")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert cli.main(["predict", "--workdir", str(workdir), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read" in err and "PNG or JPEG" in err
    assert np.isfinite(rows[0]["top"][0]["probability"])
