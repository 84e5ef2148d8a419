"""The recurrent-LM experiments end to end on real text (tiny configs): mat, learning, gradients."""

import json
import math

import numpy as np
import pytest

from experiments import rnn_lm, vanishing_gradients
from jaxdl import cli, run
from jaxdl.config import apply_overrides
from jaxdl.data import text
from jaxdl.entry import run_experiment
from jaxdl.tasks import language
from tests.workdir_checks import check_event_files, check_info_and_eval, check_png


def _config(get_config=rnn_lm.get_config, **overrides):
    return apply_overrides(get_config(), {k: str(v) for k, v in overrides.items()})


def test_the_cat_sat_on_the_mat(tmp_path, capsys):
    """The reference's example: a word-level LSTM trained on simple sentences says "mat"."""
    config = _config(level="word", text="simple_sentences", cell="lstm", embed_dim=32,
                     hidden_dim=64, seq_len=12, batch_size=32, num_steps=400,
                     learning_rate=0.01, batches_per_epoch=100, eval_batch_size=32,
                     prompt="The cat sat on the", temperature=0, sample_tokens=2)
    results = rnn_lm.main(config, tmp_path)
    assert results["sample"] == "mat ."
    assert "the cat sat on the mat ." in capsys.readouterr().out.lower()
    r = run.load(tmp_path)  # the run, rebuilt from its workdir alone
    state, model, vocab = r.state, r.task.model, r.data.vocab
    capsys.readouterr()
    assert cli.main(["sample", "--workdir", str(tmp_path), "--prompt", "The dog sat on the",
                     "--num", "1"]) == 0  # temperature 0 (the run's): greedy
    assert capsys.readouterr().out.strip() == "The dog sat on the rug"
    # The completion depends on the animal four words back, not on "the" alone.
    for animal, home in [("dog", "rug"), ("bird", "branch"), ("boy", "chair"), ("girl", "bench")]:
        ids = language.generate(model, state.params, vocab.encode(f"The {animal} sat on the"),
                                1, greedy=True)
        assert vocab.decode(ids) == home
    assert results["train_loss"] < 0.8
    # A damaged newest step: `sample` says on stderr which step it fell back to; stdout
    # carries the answer alone.
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert len(steps) >= 2, steps
    for p in (tmp_path / "checkpoints" / str(steps[-1]) / "state").rglob("*"):
        if p.is_file():
            p.write_bytes(b"garbage")
    assert cli.main(["sample", "--workdir", str(tmp_path), "--prompt", "The dog sat on the",
                     "--num", "1"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "The dog sat on the rug"
    assert (f"Checkpoint step {steps[-1]} is unreadable" in err
            and f"falling back to step {steps[-2]}" in err), err


def test_char_lm_learns_real_text_and_resumes(tmp_path, capsys):
    config = _config(cell="gru", embed_dim=16, hidden_dim=64, seq_len=32, batch_size=16,
                     num_steps=150, batches_per_epoch=50, val_windows=64, sample_tokens=40)
    results = rnn_lm.main(config, tmp_path)
    out = capsys.readouterr().out
    assert "Training on 1,003,854 char tokens, validating on 111,540; vocabulary 65." in out
    assert "[Epoch 3] loss = " in out and "\nROMEO:" in out
    saved = json.loads((tmp_path / "results.json").read_text())
    for key in ("train_loss", "val_loss", "val_bpc", "tokens_per_second", "train_seconds"):
        assert saved[key] > 0
    assert saved == json.loads(json.dumps(results))
    history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().split("\n")
               if line]
    losses = [row["epoch/loss"] for row in history if "epoch" in row]
    assert len(losses) == 3 and losses[0] > losses[1] > losses[2]
    # Better than the best context-free guess (the character frequencies, 3.31 nats).
    assert results["val_loss"] < 3.31 - 0.35
    assert results["val_bpc"] == pytest.approx(results["val_loss"] / math.log(2))
    assert len(results["sample"]) == 40
    check_png(tmp_path / "curves.png")
    again = rnn_lm.main(config, tmp_path)
    assert "Resuming from checkpoint step 150" in capsys.readouterr().out
    assert again["val_loss"] == results["val_loss"]
    check_info_and_eval(tmp_path, capsys, "rnn_lm")
    check_event_files(tmp_path, ("train/loss", "train/accuracy", "eval/val_bpc"))
    assert cli.main(["sample", "--workdir", str(tmp_path), "--num", "30"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("ROMEO:") and len(text) >= len("ROMEO:") + 30
    # The vanishing-gradient measurement reads this trained run from its workdir.
    vg = vanishing_gradients.main(_config(vanishing_gradients.get_config, cells="gru",
                                          trained_workdir=str(tmp_path), seq_len=20,
                                          num_windows=4), tmp_path / "vg")
    assert vg["cells"]["gru"]["hidden_dim"] == 64 and len(vg["cells"]["gru"]["grad_norms"]) == 20
    assert vg["cells"]["gru"]["train_loss"] == results["train_loss"]


def test_lstm_keeps_the_gradient_that_the_trained_rnn_loses(tmp_path):
    """Trained briefly on real text, 40 steps back the LSTM keeps >10x the RNN's gradient."""
    config = _config(vanishing_gradients.get_config, cells="rnn,lstm", param_budget=20_000,
                     seq_len=40, batch_size=16, train_steps=200, batches_per_epoch=200,
                     learning_rate=0.01, num_windows=8)
    results = vanishing_gradients.main(config, tmp_path)
    ratios = results["ratio_first_last"]
    assert set(ratios) == {"rnn", "lstm"}
    for cell, r in results["cells"].items():
        norms = np.array(r["grad_norms"])
        assert len(norms) == 40 and np.all(np.isfinite(norms)) and r["train_loss"] < 2.9, cell
        assert r["ratio_first_last"] == pytest.approx(norms[0] / norms[-1])
    assert ratios["rnn"] < 1e-6 and ratios["lstm"] > 10 * ratios["rnn"]
    check_png(tmp_path / "gradient_norms.png")
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["ratio_first_last"] == ratios
    fresh = vanishing_gradients.main(_config(vanishing_gradients.get_config, cells="rnn",
                                             param_budget=5000, seq_len=10, num_windows=2),
                                     tmp_path / "fresh")
    assert fresh["train_steps"] == 0 and fresh["cells"]["rnn"]["train_loss"] is None
    assert 0 < fresh["ratio_first_last"]["rnn"] < 1


def test_command_line_errors_are_one_line(tmp_path, capsys):
    def fails(*args):
        with pytest.raises(SystemExit) as e:
            run_experiment(rnn_lm.main, rnn_lm.get_config, str(tmp_path / "w"),
                           argv=["--workdir", str(tmp_path / "w"), *args])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ")
        return err

    assert "--config.text_path" in fails(f"--config.text_path={tmp_path / 'missing.txt'}")
    short = tmp_path / "short.txt"
    short.write_text("To be, or not to be.\n")
    assert "lower --config.seq_len" in fails(f"--config.text_path={short}")
    (tmp_path / "empty.txt").write_text("")
    assert "is empty" in fails(f"--config.text_path={tmp_path / 'empty.txt'}")
    assert "unknown cell 'cnn'" in fails("--config.cell=cnn")
    assert "not in the vocabulary" in fails("--config.prompt=日本")
    assert text.load_text("simple_sentences")  # the other embedded corpus loads by name
