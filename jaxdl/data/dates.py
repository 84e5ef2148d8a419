"""Dates written by people -> ISO 8601: a real, offline sequence-to-sequence task.

Each example renders one calendar date from Python's `datetime` in one of many human
formats, English and French ("Thursday, March 5th 1998", "5/3/98" (day first),
"5 mars 1998", "jeudi 5 mars 1998", "1998.03.05" ...), and the target is `1998-03-05`.
Dates run from 1950 to 2049 so two-digit years are unambiguous (50-99 -> 19xx). Train and
test use disjoint sets of dates, drawn with a fixed seed, so the test measures
generalisation to dates never seen in any format.
"""

import datetime as dt

import numpy as np

from jaxdl.data.vocab import Vocab

MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August",
             "September", "October", "November", "December")
MONTHS_FR = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
             "septembre", "octobre", "novembre", "décembre")
DAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
DAYS_FR = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
FIRST, LAST = dt.date(1950, 1, 1), dt.date(2049, 12, 31)


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


FORMATS = (
    lambda d: f"{DAYS_EN[d.weekday()]}, {MONTHS_EN[d.month - 1]} {_ordinal(d.day)} {d.year}",
    lambda d: f"{d.day}/{d.month}/{d.year % 100:02d}",
    lambda d: f"{d.day} {MONTHS_FR[d.month - 1]} {d.year}",
    lambda d: f"{DAYS_FR[d.weekday()]} {d.day} {MONTHS_FR[d.month - 1]} {d.year}",
    lambda d: f"{MONTHS_EN[d.month - 1]} {d.day}, {d.year}",
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",
    lambda d: f"{d.day} {MONTHS_EN[d.month - 1][:3]} {d.year % 100:02d}",
    lambda d: f"{DAYS_EN[d.weekday()].upper()} {d.day} {MONTHS_EN[d.month - 1].upper()} {d.year}",
    lambda d: f"the {_ordinal(d.day)} of {MONTHS_EN[d.month - 1]}, {d.year}",
    lambda d: f"{MONTHS_EN[d.month - 1][:3]} {d.day:02d} {d.year}",
    lambda d: f"{d.day}-{MONTHS_EN[d.month - 1][:3].lower()}-{d.year}",
)


def render(date: dt.date, fmt: int) -> str:
    return FORMATS[fmt](date)


def date_vocab() -> Vocab:
    """Characters of every format, after the three specials (PAD 0, BOS 1, EOS 2)."""
    chars = set("0123456789-")
    for d in (dt.date(2000, m, 1) for m in range(1, 13)):
        for f in range(len(FORMATS)):
            chars |= set(render(d, f))
    for name in DAYS_EN + DAYS_FR:
        chars |= set(name) | set(name.upper())
    return Vocab(sorted(chars), level="char", specials=3)


def make_dataset(num_train: int = 20_000, num_test: int = 2_000, seed: int = 0,
                 src_len: int = 40, tgt_len: int = 12):
    """Disjoint train/test dates, each in a random format: dicts of `src`, `tgt`, `date`, `fmt`.

    `tgt` is (n, tgt_len) = BOS + 10 ISO characters + EOS (time-shifted by the loss).
    """
    vocab = date_vocab()
    rng = np.random.default_rng(seed)
    days = (LAST - FIRST).days + 1
    picks = rng.choice(days, num_train + num_test, replace=False)

    def build(offsets):
        dates = [FIRST + dt.timedelta(days=int(o)) for o in offsets]
        fmts = rng.integers(0, len(FORMATS), len(dates))
        src = np.stack([vocab.encode(render(d, int(f)), src_len, eos=True)
                        for d, f in zip(dates, fmts, strict=True)])
        tgt = np.stack([vocab.encode(d.isoformat(), tgt_len, bos=True, eos=True) for d in dates])
        return {"src": src, "tgt": tgt, "fmt": fmts.astype(np.int32),
                "date": np.array([d.isoformat() for d in dates])}

    return build(picks[:num_train]), build(picks[num_train:]), vocab
