"""The Transformer experiments end to end on tiny configs; the dates task's data."""

import datetime as dt
import json

import numpy as np

from experiments import transformer_lm, transformer_seq2seq
from jaxdl.config import apply_overrides
from jaxdl.data.dates import FORMATS, DateVocab, make_dataset, render


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
    assert isinstance(DateVocab().encode("1998-03-05", 12, bos=True), np.ndarray)


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
    assert len(results["sample"]) == 40 and "Sample (40 characters" in capsys.readouterr().out
    assert (tmp_path / "curves.png").exists()


def test_transformer_seq2seq_tiny_run(tmp_path):
    config = apply_overrides(transformer_seq2seq.get_config(), {
        "num_train": "1000", "num_test": "100", "num_layers": "1", "dim": "32",
        "num_heads": "2", "num_steps": "40", "batches_per_epoch": "20", "batch_size": "32",
        "warmup_steps": "5"})
    transformer_seq2seq.main(config, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert 0.0 <= saved["test_exact_match"] <= 1.0
    assert saved["test_token_accuracy"] > 0.2  # chance is 1/63; it learns the "-" slots first
    assert (tmp_path / "cross_attention.png").stat().st_size > 1000
