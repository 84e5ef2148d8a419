"""Byte-level BPE tokenizers (jaxdl.data.bpe): the shipped one round-trips tiny shakespeare
exactly, the trainer is deterministic (and reproduces the shipped file), and bad input is
one line."""

import pytest

from jaxdl import cli
from jaxdl.data import bpe
from jaxdl.data import text as textdata
from jaxdl.errors import UserError


def test_the_shipped_tokenizer_round_trips_every_line_of_tiny_shakespeare():
    vocab = bpe.BpeVocab(bpe.EMBEDDED)
    text = textdata.load_text("tinyshakespeare", "")
    assert len(vocab) == 512 and vocab.level == "bpe"
    lines = text.splitlines(keepends=True)
    assert [vocab.decode(vocab.encode(line)) for line in lines] == lines
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text and ids.dtype.name == "int32"
    assert 1.8 < len(text) / len(ids) < 2.1  # 1.94 characters a token, measured
    assert vocab.decode(vocab.encode("Ünïcödé ✓\n")) == "Ünïcödé ✓\n"  # bytes, never unknown


def test_the_trainer_gives_the_same_file_twice_and_the_shipped_one(tmp_path, capsys):
    args = ["data", "tokenizer", "--source=text:tinyshakespeare", "--vocab-size", "512"]
    assert cli.main([*args, "--out", str(tmp_path / "a")]) == 0
    assert cli.main([*args, "--out", str(tmp_path / "b")]) == 0
    a, b = (tmp_path / d / "tokenizer.json" for d in "ab")
    assert a.read_bytes() == b.read_bytes() == bpe.EMBEDDED.read_bytes()
    assert "(512 tokens)" in capsys.readouterr().out


@pytest.mark.parametrize("source, size, message", [
    ("text:tinyshakespeare", "100", "--vocab-size 100 must be at least 257"),
    ("mnist_5k", "300", "a tokenizer learns from a text"),
    ("text:/no/such/file.txt", "300", "/no/such/file.txt"),
])
def test_bad_tokenizer_requests_are_one_line(tmp_path, capsys, source, size, message):
    argv = ["data", "tokenizer", f"--source={source}", "--vocab-size", size,
            "--out", str(tmp_path / "t")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "t").exists()


def test_a_file_that_is_not_a_tokenizer_is_one_line(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"not": "a tokenizer"}')
    with pytest.raises(UserError, match="is not a tokenizer") as err:
        bpe.BpeVocab(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="does not exist"):
        bpe.BpeVocab(tmp_path / "missing.json")


def test_a_language_model_trains_samples_and_reports_bits_per_character_with_it(
        tmp_path, capsys):
    from jaxdl import recipes, run
    from jaxdl.config import apply_overrides

    config = apply_overrides(recipes.get("decoder_lm").get_config(), {
        "tokenizer": str(bpe.EMBEDDED), "num_layers": "1", "dim": "32", "num_heads": "2",
        "seq_len": "32", "batch_size": "8", "num_steps": "3", "batches_per_epoch": "3",
        "warmup_steps": "1", "val_windows": "16", "eval_batch_size": "16",
        "sample_tokens": "8"})
    results = run.train(config, tmp_path / "run")
    assert results["level"] == "bpe" and results["vocab_size"] == 512
    assert results["tokenizer"] == str(bpe.EMBEDDED)
    # bits per character = bits per token / characters per token (1.8-2.1 on this text)
    ratio = results["val_bits_per_token"] / results["val_bpc"]
    assert 1.7 < ratio < 2.2, ratio
    assert isinstance(results["sample"], str) and results["sample"]
    capsys.readouterr()
    assert cli.main(["sample", "--workdir", str(tmp_path / "run"), "--prompt", "ROMEO:",
                     "--num", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ROMEO:") and len(out) > len("ROMEO:")
