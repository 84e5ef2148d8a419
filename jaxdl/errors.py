"""User-facing errors: one line that names the problem and the fix.

Raised for bad input (shapes, dtypes, labels, missing data, unknown config keys)
before anything is compiled. Command-line entry points print the message alone
on stderr and exit with status 2; library callers catch it as a ValueError.
"""

import re


class UserError(ValueError):
    """A problem with the user's input or environment, with the fix in its message."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """An exception's first line, for a one-line message (TensorStore's "See full details"
    and source locations dropped); its type name when it has no text. A longer line keeps
    its start and its end, where TensorStore puts the innermost cause."""
    text = str(e).strip().split(" See full TensorStore details")[0].splitlines()
    if not text:
        return type(e).__name__
    line = re.split(r" \[(?:source locations|tensorstore_spec)=", text[0])[0].strip()
    if len(line) <= limit:
        return line
    half = (limit - 5) // 2
    return f"{line[:half]} ... {line[-half:]}"
