"""Text for language models: the embedded corpora, vocabularies, splits and window loaders.

- `load_text(name, path)`: an embedded corpus (`tinyshakespeare`, the 1,115,394-character
  corpus of char-rnn and nanoGPT; `simple_sentences`, written for jaxdl) or any UTF-8 file.
- `CharVocab` (one id per distinct character, sorted, as nanoGPT's `shakespeare_char`) and
  `WordVocab` (lower-cased words and punctuation, id 0 = `<unk>`): `encode` / `decode`.
- `train_val_split`: the first 90% of the ids train, the rest validate (nanoGPT's split).
The loaders of token streams (`WindowLoader`, `eval_windows`) are in `jaxdl.data.loader`.
"""

import collections
import re
from pathlib import Path

import numpy as np

from jaxdl.errors import UserError

EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"
EMBEDDED_TEXTS = {"tinyshakespeare": "tinyshakespeare.txt",
                  "simple_sentences": "simple_sentences.txt"}
UNK = "<unk>"
_WORD_RE = re.compile(r"[\w']+|[^\w\s]")


def load_text(name: str = "tinyshakespeare", path: str = "") -> str:
    """The text of `path` if given, else of the embedded corpus `name`."""
    if path:
        file = Path(path).expanduser()
        if not file.is_file():
            raise UserError(f"text file {file} not found; pass an existing UTF-8 file with "
                            "--config.text_path, or leave it empty for the embedded corpus")
    elif name in EMBEDDED_TEXTS:
        file = EMBEDDED_DIR / EMBEDDED_TEXTS[name]
    else:
        raise UserError(f"unknown embedded text {name!r}; choose one of "
                        f"{', '.join(EMBEDDED_TEXTS)} or pass --config.text_path")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{file} is not UTF-8 text ({e.reason} at byte {e.start}); "
                        "convert it to UTF-8") from None
    if not text.strip():
        raise UserError(f"{file} is empty; pass a text file with some content")
    return text


class CharVocab:
    """One id per distinct character of the text, in sorted order (nanoGPT's stoi / itos)."""

    def __init__(self, chars):
        self.tokens = tuple(chars)
        self.index = {c: i for i, c in enumerate(self.tokens)}

    @classmethod
    def from_text(cls, text: str) -> "CharVocab":
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> np.ndarray:
        missing = sorted(set(text) - self.index.keys())
        if missing:
            raise UserError(f"characters {''.join(missing)!r} are not in the vocabulary; "
                            "use only characters that occur in the training text")
        return np.fromiter((self.index[c] for c in text), np.int32, len(text))

    def decode(self, ids) -> str:
        return "".join(self.tokens[int(i)] for i in np.asarray(ids).reshape(-1))


class WordVocab:
    """Lower-cased words and punctuation marks; id 0 is `<unk>` for anything unseen."""

    def __init__(self, words):
        self.tokens = (UNK, *[w for w in words if w != UNK])
        self.index = {w: i for i, w in enumerate(self.tokens)}

    @staticmethod
    def tokenize(text: str) -> list[str]:
        return _WORD_RE.findall(text.lower())

    @classmethod
    def from_text(cls, text: str, min_count: int = 1) -> "WordVocab":
        """Words seen at least `min_count` times, most frequent first (ties alphabetical)."""
        counts = collections.Counter(cls.tokenize(text))
        words = sorted((w for w, n in counts.items() if n >= min_count),
                       key=lambda w: (-counts[w], w))
        return cls(words)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> np.ndarray:
        return np.array([self.index.get(w, 0) for w in self.tokenize(text)], np.int32)

    def decode(self, ids) -> str:
        return " ".join(self.tokens[int(i)] for i in np.asarray(ids).reshape(-1))


def make_vocab(level: str, text: str):
    if level == "char":
        return CharVocab.from_text(text)
    if level == "word":
        return WordVocab.from_text(text)
    raise UserError(f"unknown text level {level!r}; choose char or word (--config.level)")


def train_val_split(ids: np.ndarray, val_fraction: float = 0.1):
    """First (1 - val_fraction) of the ids train, the rest validate, as nanoGPT splits."""
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val_fraction must be in [0, 1), got {val_fraction}; e.g. 0.1")
    n = int(len(ids) * (1.0 - val_fraction))
    return ids[:n], ids[n:]
