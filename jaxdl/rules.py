"""The values a config key may take (`jaxdl.options` gives each key one): a numeric range,
a fixed choice, or a check that raises its own error. Each says what it allows, for the
one-line error, `--help` and docs/options.md:

    Rule(0.0, 1.0, open_high=True).describe()   # 'numbers in [0.0, 1.0)'
"""

import math
import numbers
from collections.abc import Callable
from typing import Any


class Rule:
    """`low <= value <= high` (or `< high` with `open_high`) for numbers; ints only with
    `integer`; for a sequence, every element."""

    def __init__(self, low=None, high=None, *, integer=False, open_high=False,
                 sequence=False, example=None):
        self.low, self.high, self.integer = low, high, integer
        self.open_high, self.sequence, self.example = open_high, sequence, example

    def describe(self) -> str:
        kind = "integers" if self.integer else "numbers"
        if self.low is not None and self.high is not None:
            text = f"{kind} in [{self.low}, {self.high}{')' if self.open_high else ']'}"
        elif self.low is not None:
            text = f"{kind} >= {self.low}"
        else:
            text = f"{kind} <= {self.high}"
        return f"a non-empty tuple of {text}" if self.sequence else text

    def ok(self, value) -> bool:
        if self.sequence:
            return isinstance(value, tuple | list) and len(value) > 0 and all(
                self._ok_one(v) for v in value)
        return self._ok_one(value)

    def _ok_one(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.integer and not float(value).is_integer():
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and value < self.low:
            return False
        if self.high is not None and (value >= self.high if self.open_high
                                      else value > self.high):
            return False
        return True


class Choice:
    """One of a fixed set of values (strings, or True/False)."""

    def __init__(self, *choices):
        self.choices, self.example = choices, choices[0]

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.choices))

    def ok(self, value) -> bool:
        return any(value == c and type(value) is type(c) for c in self.choices)


class Check:
    """A value checked by a function that raises UserError itself (`profile_steps`)."""

    def __init__(self, check: Callable[[Any], Any], text: str, example=None):
        self.check, self.text, self.example = check, text, example

    def describe(self) -> str:
        return self.text

    def ok(self, value) -> bool:
        self.check(value)
        return True


def positive_int(high=10**9, example=None):
    return Rule(1, high, integer=True, example=example)


def count(high=10**9, example=None):  # zero allowed: "0 means off"
    return Rule(0, high, integer=True, example=example)


class MeshSize(Rule):
    """A mesh axis: an integer >= 1, or -1 for the devices left over."""

    def __init__(self):
        super().__init__(-1, 1 << 20, integer=True, example=8)

    def describe(self) -> str:
        return "an integer >= 1, or -1 (the devices left over)"

    def ok(self, value) -> bool:
        return super().ok(value) and value != 0


MESH_SIZE = MeshSize()
BOOL = Choice(True, False)
