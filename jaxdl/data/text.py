"""Text for language models: the embedded corpora, vocabularies, splits and window loaders.

- `load_text(name, path)`: an embedded corpus (`tinyshakespeare`, the 1,115,394-character
  corpus of char-rnn and nanoGPT; `simple_sentences`, written for jaxdl) or any UTF-8 file.
- `make_vocab(level, text)`: one id per distinct character, sorted, as nanoGPT's
  `shakespeare_char`, or lower-cased words and punctuation with id 0 = `<unk>`
  (`jaxdl.data.vocab.Vocab`).
- `train_val_split`: the first 90% of the ids train, the rest validate (nanoGPT's split).
The loaders of token streams (`WindowLoader`, `eval_windows`) are in `jaxdl.data.loader`.
"""

from pathlib import Path

import numpy as np

from jaxdl.data.vocab import Vocab
from jaxdl.errors import UserError

EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"
EMBEDDED_TEXTS = {"tinyshakespeare": "tinyshakespeare.txt",
                  "simple_sentences": "simple_sentences.txt"}


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
    except OSError as e:  # an embedded corpus missing from a damaged install, or unreadable
        fix = ("reinstall jaxdl (pip install -e .) to restore it" if not path
               else "pass a readable file with --config.text_path")
        raise UserError(f"cannot read {file} ({e.strerror or type(e).__name__}); {fix}") from None
    if not text.strip():
        raise UserError(f"{file} is empty; pass a text file with some content")
    return text


def make_vocab(level: str, text: str) -> Vocab:
    """The vocabulary of `text` at `level` (`jaxdl.data.vocab.Vocab`): sorted characters, or
    words most frequent first after `<unk>`."""
    if level == "char":
        return Vocab.chars(text)
    if level == "word":
        return Vocab.words(text)
    raise UserError(f"unknown text level {level!r}; choose char or word (--config.level)")


def train_val_split(ids: np.ndarray, val_fraction: float = 0.1):
    """First (1 - val_fraction) of the ids train, the rest validate, as nanoGPT splits."""
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val_fraction must be in [0, 1), got {val_fraction}; e.g. 0.1")
    n = int(len(ids) * (1.0 - val_fraction))
    return ids[:n], ids[n:]
