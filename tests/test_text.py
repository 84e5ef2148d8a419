"""Text data: the embedded corpora, vocabularies, nanoGPT's split, window loaders, bad input."""

import hashlib

import numpy as np
import pytest

from jaxdl.data import text
from jaxdl.data.loader import ArrayLoader, Position, WindowLoader, eval_windows
from jaxdl.data.vocab import BOS_ID, EOS_ID, PAD_ID, UNK, Vocab, tokenize_words
from jaxdl.errors import UserError


def test_embedded_tiny_shakespeare_is_the_published_corpus():
    path = text.EMBEDDED_DIR / "tinyshakespeare.txt"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == (
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed")
    corpus = text.load_text()
    assert len(corpus) == 1_115_394 and corpus.startswith("First Citizen:\n")
    vocab = Vocab.chars(corpus)
    assert len(vocab) == 65 and vocab.tokens[:2] == ("\n", " ")  # sorted, as nanoGPT's stoi
    train, val = text.train_val_split(vocab.encode(corpus))
    # nanoGPT's shakespeare_char/prepare.py: "train has 1,003,854 tokens, val has 111,540".
    assert (len(train), len(val)) == (1_003_854, 111_540)
    assert vocab.decode(val[:40]) == corpus[1_003_854:1_003_894]


def test_char_vocab_round_trip_and_unknown_characters():
    vocab = Vocab.chars("hello world")
    ids = vocab.encode("low hell")
    assert ids.dtype == np.int32 and vocab.decode(ids) == "low hell"
    assert vocab.encode("d").tolist() == [vocab.tokens.index("d")]
    with pytest.raises(UserError, match="'z'.*not in the vocabulary"):
        vocab.encode("zed")


def test_word_vocab_lowercases_splits_punctuation_and_maps_unknown_to_unk():
    vocab = Vocab.words("The cat sat on the mat. The dog sat.")
    assert vocab.tokens[0] == UNK and vocab.tokens[1] == "the"  # most frequent first
    assert tokenize_words("The cat's mat.") == ["the", "cat's", "mat", "."]
    ids = vocab.encode("The cat sat on the MAT.")
    assert vocab.decode(ids) == "the cat sat on the mat ."
    assert vocab.encode("the zebra").tolist() == [vocab.index["the"], 0]
    assert vocab.decode(vocab.encode("a zebra")) == "<unk> <unk>"


def test_simple_sentences_corpus_holds_the_reference_example():
    corpus = text.load_text("simple_sentences")
    vocab = Vocab.words(corpus)
    train, _ = text.train_val_split(vocab.encode(corpus))
    words = vocab.decode(train)
    assert words.count("the cat sat on the mat") >= 4
    assert words.count("the dog sat on the rug") >= 3


def test_window_loader_is_deterministic_contiguous_and_resumable():
    ids = np.arange(1000, dtype=np.int32)
    loader = WindowLoader(ids, 4, 16, batches_per_epoch=5, seed=7)
    batches = list(loader.epoch(0))
    assert len(batches) == 5
    for b in batches:
        assert b["tokens"].shape == (4, 17) and b["tokens"].dtype == np.int32
        assert b["mask"].tolist() == [1.0] * 4
        np.testing.assert_array_equal(np.diff(b["tokens"], axis=1), 1)  # contiguous windows
        assert b["tokens"].max() < 1000
    again = list(WindowLoader(ids, 4, 16, batches_per_epoch=5, seed=7).epoch(0))
    for a, b in zip(batches, again, strict=True):
        np.testing.assert_array_equal(a["tokens"], b["tokens"])
    other = next(WindowLoader(ids, 4, 16, batches_per_epoch=5, seed=8).epoch(0))
    assert not np.array_equal(other["tokens"], batches[0]["tokens"])
    assert not np.array_equal(next(loader.epoch(1))["tokens"], batches[0]["tokens"])
    assert loader.position(12) == Position(epoch=2, batch=2)
    resumed = list(loader.epoch(0, 3))
    np.testing.assert_array_equal(resumed[0]["tokens"], batches[3]["tokens"])
    halves = [next(WindowLoader(ids, 4, 16, batches_per_epoch=5, seed=7, process_index=p,
                                     process_count=2).epoch(0))["tokens"] for p in (0, 1)]
    np.testing.assert_array_equal(np.concatenate(halves), batches[0]["tokens"])


def test_window_starts_cover_the_whole_text():
    ids = np.arange(40, dtype=np.int32)
    loader = WindowLoader(ids, 64, 8, batches_per_epoch=20)
    starts = np.concatenate([loader.starts(0, b) for b in range(20)])
    assert starts.min() == 0 and starts.max() == 40 - 9  # the last window ends at the last id


def test_eval_windows_are_non_overlapping_and_batch_with_array_loader():
    ids = np.arange(103, dtype=np.int32)
    windows = eval_windows(ids, 10)
    assert windows.shape == (10, 11)
    np.testing.assert_array_equal(windows[:, 0], np.arange(0, 100, 10))
    targets = windows[:, 1:].reshape(-1)
    np.testing.assert_array_equal(targets, np.arange(1, 101))  # each predicted once
    assert eval_windows(ids, 10, max_windows=3).shape == (3, 11)
    batches = list(ArrayLoader({"tokens": windows}, 4, shuffle=False).epoch(0))
    assert [b["mask"].sum() for b in batches] == [4, 4, 2]


def test_bad_text_input_is_a_one_line_user_error(tmp_path):
    with pytest.raises(UserError, match="not found.*--config.text_path"):
        text.load_text(path=str(tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(UserError, match="is empty"):
        text.load_text(path=str(empty))
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00abc")
    with pytest.raises(UserError, match="not UTF-8"):
        text.load_text(path=str(binary))
    with pytest.raises(UserError, match="unknown embedded text"):
        text.load_text("nope")
    short = np.arange(10, dtype=np.int32)
    with pytest.raises(UserError, match="fewer than one window.*--config.seq_len") as e:
        WindowLoader(short, 2, 10)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="fewer than one window"):
        eval_windows(short, 32)
    with pytest.raises(UserError, match="char or word"):
        text.make_vocab("byte", "abc")


def test_one_vocab_type_serves_dates_and_prompts_with_special_tokens():
    """Specials first (PAD 0, BOS 1, EOS 2); encode marks and pads, decode drops them and
    stops at EOS; a vocabulary without `<unk>` names what it lacks."""
    vocab = Vocab("abc", level="char", specials=3)
    ids = vocab.encode("cab", 7, bos=True, eos=True)
    assert ids.tolist() == [BOS_ID, 5, 3, 4, EOS_ID, PAD_ID, PAD_ID]
    assert vocab.decode(ids) == "cab" and vocab.decode([3, EOS_ID, 4]) == "a"
    with pytest.raises(UserError, match="needs 5 tokens, more than 4"):
        vocab.encode("abc", 4, bos=True, eos=True)
    with pytest.raises(UserError, match="'d'.*not in the vocabulary"):
        vocab.encode("abd")
    words = Vocab.words("a cat sat", specials=2)  # the prompts' layout: PAD, BOS, <unk>, ...
    assert words.tokens[:3] == ("<pad>", "<bos>", UNK)
    assert words.decode(words.encode("a dog", 4, bos=True)) == "a <unk>"
    with pytest.raises(UserError, match="no special tokens"):
        Vocab.chars("abc").encode("ab", 4)
