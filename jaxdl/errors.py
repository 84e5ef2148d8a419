"""User-facing errors: one line that names the problem and the fix.

Raised for bad input (shapes, dtypes, labels, missing data, unknown config keys)
before anything is compiled. Command-line entry points print the message alone
on stderr and exit with status 2; library callers catch it as a ValueError.
"""


class UserError(ValueError):
    """A problem with the user's input or environment, with the fix in its message."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """An exception's first line, for a one-line message (TensorStore's "See full details"
    tail dropped); its type name when it has no text."""
    text = str(e).strip().split(" See full TensorStore details")[0].splitlines()
    return text[0][:limit] if text else type(e).__name__
