"""The Transformer experiments end to end on tiny configs; the dates task's data."""

import datetime as dt
import json

import numpy as np

from experiments import transformer_lm, transformer_seq2seq
from jaxdl import cli
from jaxdl.config import apply_overrides
from jaxdl.data.dates import FORMATS, date_vocab, make_dataset, render
from tests.workdir_checks import check_event_files, check_info_and_eval, check_png


def test_dates_render_many_formats_and_splits_are_disjoint():
    day = dt.date(1998, 3, 5)
    texts = {render(day, f) for f in range(len(FORMATS))}
    assert {"Thursday, March 5th 1998", "5/3/98", "5 mars 1998", "jeudi 5 mars 1998"} <= texts
    assert len(texts) == len(FORMATS)
    train, test, vocab = make_dataset(3000, 500, seed=1)
    assert not set(train["date"]) & set(test["date"])
    assert len(set(test["fmt"].tolist())) == len(FORMATS)
    assert vocab.decode(train["tgt"][0][1:]) == train["date"][0]
    src = vocab.decode(train["src"][0])
    iso = dt.date.fromisoformat(train["date"][0])
    assert src == render(iso, int(train["fmt"][0]))
    again, _, _ = make_dataset(3000, 500, seed=1)
    np.testing.assert_array_equal(again["src"], train["src"])
    assert date_vocab().encode("1998-03-05", 12, bos=True, eos=True).shape == (12,)


def test_transformer_lm_tiny_run(tmp_path, capsys):
    config = apply_overrides(transformer_lm.get_config(), {
        "num_layers": "1", "dim": "32", "num_heads": "2", "seq_len": "32", "num_steps": "60",
        "batches_per_epoch": "30", "val_windows": "64", "sample_tokens": "40",
        "warmup_steps": "10", "learning_rate": "3e-3"})
    results = transformer_lm.main(config, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    for key in ("val_loss", "val_bpc", "tokens_per_second", "train_seconds"):
        assert key in saved
    assert saved["val_loss"] < np.log(65) - 0.5  # well below a uniform guess over 65 chars
    # nanoGPT's 6N + 12 L H Q T against the CPU's measured peak: the same order as the
    # jaxpr count's MFU (rotary: no position table; the untied head's embedding counts in N)
    assert 0 < saved["mfu_6n"] < 1 and 0.5 < saved["mfu_6n"] / saved["mfu"] < 2
    assert len(results["sample"]) == 40 and "Sample (40 characters" in capsys.readouterr().out
    assert (tmp_path / "curves.png").exists()
    check_info_and_eval(tmp_path, capsys, "decoder_lm")
    events = check_event_files(tmp_path, ("train/loss", "train/learning_rate", "epoch/loss",
                                          "eval/val_loss"))
    assert "sample/text_summary" in events.Tags()["tensors"]
    assert cli.main(["sample", "--workdir", str(tmp_path), "--prompt", "JULIET:",
                     "--num", "25", "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("JULIET:") and len(text.rstrip("\n")) >= len("JULIET:") + 20
    assert cli.main(["sample", "--workdir", str(tmp_path), "--prompt", "日本"]) == 2
    assert "not in the vocabulary" in capsys.readouterr().err
    # Batched: 3 continuations of each of 3 prompts (3 batches of 3, one per prompt length);
    # the same seed gives the same text again, and a lone prompt its own seed's text.
    argv = ["sample", "--workdir", str(tmp_path), "--num", "12", "--seed", "3", "--samples",
            "3", "--prompt", "ROMEO:", "--prompt", "JULIET:", "--prompt", "KING:", "--json"]
    assert cli.main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["prompt"] for r in rows] == ["ROMEO:"] * 3 + ["JULIET:"] * 3 + ["KING:"] * 3
    assert all(len(r["continuation"]) == 12 for r in rows)
    assert len({r["continuation"] for r in rows}) > 3  # samples differ within a batch
    assert cli.main(argv) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == rows
    assert cli.main(["sample", "--workdir", str(tmp_path), "--prompt", "JULIET:", "--num", "25",
                     "--seed", "3"]) == 0
    assert capsys.readouterr().out.strip() == text.strip()  # a lone prompt: its own key


def test_transformer_seq2seq_tiny_run(tmp_path, capsys):
    config = apply_overrides(transformer_seq2seq.get_config(), {
        "num_train": "1000", "num_test": "100", "num_layers": "1", "dim": "32",
        "num_heads": "2", "num_steps": "40", "batches_per_epoch": "20", "batch_size": "32",
        "warmup_steps": "5"})
    transformer_seq2seq.main(config, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert 0.0 <= saved["test_exact_match"] <= 1.0
    assert saved["test_token_accuracy"] > 0.2  # chance is 1/63; it learns the "-" slots first
    check_png(tmp_path / "cross_attention.png")
    check_info_and_eval(tmp_path, capsys, "seq2seq")
    check_event_files(tmp_path, ("train/loss", "eval/test_exact_match"))
    assert cli.main(["sample", "--workdir", str(tmp_path), "--prompt", "5 mars 1998"]) == 0
    out = capsys.readouterr().out.strip()
    assert len(out) <= 11 and set(out) <= set("0123456789-")  # 40 steps: not yet a date
    assert cli.main(["sample", "--workdir", str(tmp_path), "--prompt", "5 mars 1998 " * 4]) == 2
    assert "write a date such as" in capsys.readouterr().err
    assert cli.main(["sample", "--workdir", str(tmp_path), "--samples", "2"]) == 2
    assert "a seq2seq run takes one --prompt" in capsys.readouterr().err
    assert cli.main(["sample", "--workdir", str(tmp_path), "--json"]) == 2
