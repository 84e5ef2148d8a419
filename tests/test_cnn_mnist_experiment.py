"""The main experiment end to end (tiny config): files in the workdir, the reference's output."""

import json

from experiments import cnn_mnist
from jaxdl.config import apply_overrides


def test_cnn_mnist_end_to_end_and_resume(tmp_path, capsys):
    config = apply_overrides(cnn_mnist.get_config(), {
        "dataset": "synthetic", "epochs": "1", "batch_size": "32", "eval_batch_size": "64"})
    results = cnn_mnist.main(config, tmp_path)
    out = capsys.readouterr().out
    for needle in ("Training on 256 samples, validating on 64 samples.", "[Epoch 1] loss = ",
                   "Test loss: ", "Test accuracy: ", "precision", "Confusion matrix"):
        assert needle in out
    saved = json.loads((tmp_path / "results.json").read_text())
    for key in ("dataset", "epochs", "train_seconds", "test_loss", "test_accuracy"):
        assert key in saved
    assert saved["dataset"] == "synthetic" and saved["epochs"] == 1
    assert 0.0 <= saved["test_accuracy"] <= 1.0 and saved == json.loads(json.dumps(results))
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert (tmp_path / "checkpoints" / "8").is_dir()
    # Started again on the same workdir: resumes from the last checkpoint, trains no more.
    again = cnn_mnist.main(config, tmp_path)
    assert "Resuming from checkpoint step 8" in capsys.readouterr().out
    assert again["test_accuracy"] == results["test_accuracy"]
