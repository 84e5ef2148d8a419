"""User-facing errors: one line that names the problem and the fix.

Raised for bad input (shapes, dtypes, labels, missing data, unknown config keys)
before anything is compiled. Command-line entry points print the message alone
on stderr and exit with status 2; library callers catch it as a ValueError.
"""


class UserError(ValueError):
    """A problem with the user's input or environment, with the fix in its message."""
