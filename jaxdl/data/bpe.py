"""Byte-level BPE, as GPT-2 tokenizes: a Hugging Face `tokenizer.json` (the `tokenizers`
library) behind the interface of `jaxdl.data.vocab.Vocab`, and its offline trainer.

    jaxdl data tokenizer --source=text:tinyshakespeare --vocab-size 512 --out DIR

`train(text, vocab_size)` learns the merges over the text's bytes (every byte is in the
alphabet, so any text encodes and decodes back exactly), with one special token,
`<|endoftext|>`, as GPT-2's; the same text and size give the same file. `BpeVocab(path)`
reads any byte-level BPE `tokenizer.json` (GPT-2's own included).
"""

import json
from pathlib import Path

import numpy as np

from jaxdl.errors import UserError

END_OF_TEXT = "<|endoftext|>"
FILE = "tokenizer.json"
# 512 tokens learned on the embedded tiny shakespeare (1.94 characters a token), for the
# tests and the demo: `jaxdl data tokenizer --source=text:tinyshakespeare --vocab-size 512`.
EMBEDDED = Path(__file__).resolve().parent / "embedded" / "tinyshakespeare_bpe512.json"


def train_source(source: str, vocab_size: int, out: str | Path) -> Path:
    """`jaxdl data tokenizer`: train on `text:NAME` (an embedded corpus) or `text:PATH`."""
    from jaxdl.data import text as textdata

    if not str(source).startswith("text:"):
        raise UserError(f"--source {source!r}: a tokenizer learns from a text; give "
                        "text:tinyshakespeare or text:PATH")
    name = source[len("text:"):]
    path = "" if name in textdata.EMBEDDED_TEXTS else name
    text = textdata.load_text(name if not path else "tinyshakespeare", path)
    if (Path(out) / FILE).exists():
        raise UserError(f"{Path(out) / FILE} exists; choose another --out or remove it")
    return save(train(text, vocab_size), out)


def encode_split(vocab: "BpeVocab", text: str, val_fraction: float):
    """`(train_ids, val_ids)`: the text cut by characters as nanoGPT cuts it (the last
    `val_fraction` validates), then each part encoded, so no token spans the cut."""
    from jaxdl.data import text as textdata

    return tuple(vocab.encode(part) for part in textdata.train_val_split(text, val_fraction))


def train(text: str, vocab_size: int):
    """A byte-level BPE `tokenizers.Tokenizer` of `vocab_size` tokens learned on `text`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if not len(alphabet) + 1 <= vocab_size <= 1 << 20:
        raise UserError(f"--vocab-size {vocab_size} must be at least {len(alphabet) + 1} "
                        "(the 256 bytes and <|endoftext|>) and at most 1048576")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet,
                                  special_tokens=[END_OF_TEXT], show_progress=False)
    tokenizer.train_from_iterator(text.splitlines(keepends=True), trainer=trainer,
                                  length=text.count("\n") + 1)
    return tokenizer


def save(tokenizer, out: str | Path) -> Path:
    """`out`/tokenizer.json, written with sorted keys (the same tokenizer, the same bytes)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = json.loads(tokenizer.to_str())
    path = out / FILE
    path.write_text(json.dumps(spec, ensure_ascii=False, sort_keys=True, indent=1) + "\n")
    return path


class BpeVocab:
    """A `tokenizer.json` with `Vocab`'s interface for the language models: `encode(text)`
    -> int32 ids, `decode(ids)` -> text, `len`, `level` "bpe"."""

    level = "bpe"
    num_specials = 0
    has_unk = False

    def __init__(self, path: str | Path):
        from tokenizers import Tokenizer

        self.path = Path(path).expanduser()
        if self.path.is_dir():
            self.path = self.path / FILE
        try:
            self.tokenizer = Tokenizer.from_file(str(self.path))
        except Exception as e:  # noqa: BLE001 - tokenizers raises plain Exception
            what = "does not exist" if not self.path.exists() else "is not a tokenizer"
            raise UserError(f"{self.path} {what} ({str(e).splitlines()[0][:100]}); give a "
                            "Hugging Face tokenizer.json (jaxdl data tokenizer writes one)"
                            ) from None

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tokenizer.encode(text).ids, np.int32)

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in np.asarray(ids).reshape(-1)],
                                     skip_special_tokens=False)
