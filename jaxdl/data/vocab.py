"""One vocabulary type: tokens <-> int32 ids, for characters or words, with special tokens.

`Vocab(tokens, level, specials, unk)`: ids `0 .. len(specials) - 1` are the special
tokens (in `SPECIALS` order: PAD 0, BOS 1, EOS 2), the next one is `<unk>` where the
vocabulary has one, then the tokens in the order given. `char` level encodes each character,
`word` level each lower-cased word or punctuation mark. Where there is no `<unk>`, an
unknown token is a UserError naming it; with one, it becomes `<unk>`.

The language models' vocabularies have no specials (`Vocab.chars(text)` is nanoGPT's
sorted `stoi`); the date task's has PAD, BOS and EOS; the prompts' have PAD and BOS.
`encode(text, length=..., bos=..., eos=...)` adds BOS/EOS and pads to `length`;
`decode(ids)` drops the specials and stops at EOS.
"""

import collections
import re

import numpy as np

from jaxdl.errors import UserError

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")
UNK = "<unk>"
LEVELS = ("char", "word")
_WORD_RE = re.compile(r"[\w']+|[^\w\s]")


def tokenize_words(text: str) -> list[str]:
    """Lower-cased words (with apostrophes) and punctuation marks."""
    return _WORD_RE.findall(text.lower())


class Vocab:
    def __init__(self, tokens, *, level: str = "char", specials: int = 0, unk: bool = False):
        if level not in LEVELS:
            raise UserError(f"unknown text level {level!r}; choose char or word")
        self.level, self.num_specials, self.has_unk = level, specials, unk
        self.tokens = (*SPECIALS[:specials], *([UNK] if unk else []),
                       *[t for t in tokens if t != UNK])
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.first = specials + int(unk)  # id of the first ordinary token

    @classmethod
    def chars(cls, text: str, **kw) -> "Vocab":
        """One id per distinct character of `text`, sorted (nanoGPT's stoi / itos)."""
        return cls(sorted(set(text)), level="char", **kw)

    @classmethod
    def words(cls, text: str, min_count: int = 1, **kw) -> "Vocab":
        """Words seen at least `min_count` times, most frequent first (ties alphabetical),
        after `<unk>`."""
        counts = collections.Counter(tokenize_words(text))
        words = sorted((w for w, n in counts.items() if n >= min_count),
                       key=lambda w: (-counts[w], w))
        return cls(words, level="word", unk=True, **kw)

    def __len__(self) -> int:
        return len(self.tokens)

    def split(self, text: str) -> list[str]:
        return list(text) if self.level == "char" else tokenize_words(text)

    def encode(self, text: str, length: int | None = None, *, bos: bool = False,
               eos: bool = False) -> np.ndarray:
        pieces = self.split(text)
        if not self.has_unk:
            missing = sorted(set(pieces) - self.index.keys())
            if missing:
                shown = "".join(missing) if self.level == "char" else " ".join(missing)
                raise UserError(f"characters {shown!r} are not in the vocabulary; use only "
                                "characters that occur in the training text")
        unk = self.num_specials  # <unk>'s id, where there is one
        ids = [self.index.get(p, unk) for p in pieces]
        if (bos or eos or length) and not self.num_specials:
            raise UserError("this vocabulary has no special tokens to mark or pad a sequence")
        ids = ([BOS_ID] if bos else []) + ids + ([EOS_ID] if eos else [])
        if length is not None:
            if len(ids) > length:
                raise UserError(f"{text!r} needs {len(ids)} tokens, more than {length}; "
                                "shorten it")
            ids += [PAD_ID] * (length - len(ids))
        return np.asarray(ids, np.int32)

    def decode(self, ids) -> str:
        out = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if self.num_specials > EOS_ID and i == EOS_ID:
                break
            if i >= self.num_specials:
                out.append(self.tokens[i])
        return ("" if self.level == "char" else " ").join(out)
