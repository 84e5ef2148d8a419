"""What a failed checkpoint read or write means, and how long to retry it.

A failure is one of four kinds, decided from the exception and its causes:

- `transient`: the store did not answer (connection refused or reset, timeouts, HTTP 429
  and 5xx, TensorStore's UNAVAILABLE / DEADLINE_EXCEEDED / ABORTED after its own retries).
  Retried with backoff for `JAXDL_IO_RETRY_SECONDS` (default 120), then an error.
- `memory`: the device (or host) ran out of memory; retrying cannot help.
- `denied`: permission or credentials; retrying cannot help.
- `damage`: the files are proven damaged: unparseable JSON, a truncated or garbled array
  (DATA_LOSS, OUT_OF_RANGE, "Error reading array index"), a file missing from a complete
  step. Only this kind lets a restore fall back to an older step.
Anything else is `unknown`, reported as an error; it is never taken for damage.

`gcs_retry_policy()` bounds TensorStore's own per-request retries on Cloud Storage (32
attempts with delays up to 32 s by default, a quarter of an hour per request) so that
jaxdl's deadline, not TensorStore's, decides when to give up.
"""

import contextlib
import json
import os
import time
from collections.abc import Callable

from jaxdl.errors import UserError, first_line

TRANSIENT, MEMORY, DENIED, DAMAGE, UNKNOWN = "transient", "memory", "denied", "damage", "unknown"

_TRANSIENT_TEXT = ("UNAVAILABLE:", "DEADLINE_EXCEEDED:", "ABORTED:", "retry attempts failed",
                   "CURL error", "Connection refused", "Connection reset", "Server disconnected",
                   "Service Unavailable", "Too Many Requests", "timed out", "Broken pipe")
_TRANSIENT_TYPES = ("ConnectionError", "TimeoutError", "ServerDisconnectedError",
                    "ClientConnectorError", "ClientOSError", "TransportError",
                    "ServiceUnavailable", "TooManyRequests", "InternalServerError",
                    "BadGateway", "GatewayTimeout")
_MEMORY_TEXT = ("Out of memory", "out of memory", "OOM when allocating")
_DENIED_TEXT = ("PERMISSION_DENIED:", "UNAUTHENTICATED:", "403 Forbidden", "401 Unauthorized")
_DAMAGE_TEXT = ("DATA_LOSS:", "OUT_OF_RANGE:", "Error reading array index",
                "Encountered error while reading", "Error decoding", "Error parsing",
                "Expecting value", "Expecting property name", "Unterminated string",
                "Extra data", "corrupt", "truncated", "Malformed")


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def classify(e: BaseException, *, missing_is_damage: bool = True) -> str:
    """The kind of a storage failure (see the module docstring). `missing_is_damage`: a
    missing file means damage (the step was complete); False where it may be in flight."""
    if isinstance(e, UserError):  # jaxdl's own verdict (a mismatched tree, say)
        return UNKNOWN
    chain = list(_chain(e))
    texts = [str(x) for x in chain]
    names = {cls.__name__ for x in chain for cls in type(x).__mro__}
    if any(isinstance(x, MemoryError) for x in chain) or any(
            "RESOURCE_EXHAUSTED" in t and any(m in t for m in _MEMORY_TEXT) for t in texts):
        return MEMORY
    if any(isinstance(x, PermissionError) for x in chain) or any(
            d in t for t in texts for d in _DENIED_TEXT):
        return DENIED
    if names & set(_TRANSIENT_TYPES) or any(s in t for t in texts for s in _TRANSIENT_TEXT):
        return TRANSIENT
    if any(isinstance(x, json.JSONDecodeError | KeyError) for x in chain) or any(
            d in t for t in texts for d in _DAMAGE_TEXT):
        return DAMAGE
    if missing_is_damage and (any(isinstance(x, FileNotFoundError) for x in chain)
                              or any("NOT_FOUND:" in t for t in texts)):
        return DAMAGE
    return UNKNOWN


def retry_seconds() -> float:
    """How long a transient failure is retried: `JAXDL_IO_RETRY_SECONDS`, default 120."""
    return float(os.environ.get("JAXDL_IO_RETRY_SECONDS", "120"))


def retrying(call: Callable, *, what: str, say: Callable[[str], None] = print,
             seconds: float | None = None, sleep: Callable[[float], None] = time.sleep):
    """`call()`, retried with exponential backoff (1 s, 2 s, ... up to 30 s) while it fails
    with a transient error and `seconds` have not passed; the last error is raised. One
    notice names `what` when the first retry starts."""
    deadline = time.monotonic() + (retry_seconds() if seconds is None else seconds)
    delay = 1.0
    for attempt in range(1_000_000):
        try:
            return call()
        except Exception as e:  # noqa: BLE001 - classified below, re-raised unless transient
            left = deadline - time.monotonic()
            if classify(e) != TRANSIENT or left <= 0:
                raise
            if attempt == 0:
                say(f"The store did not answer while {what} ({first_line(e, 120)}); retrying "
                    f"for up to {max(left, 0):.0f} s.")
            sleep(min(delay, max(left, 0.0)))
            delay = min(2 * delay, 30.0)
    raise AssertionError("unreachable")


# TensorStore's Cloud Storage retries, per request: few and short, so jaxdl's deadline
# decides (each call of `retrying` re-issues the request).
GCS_REQUEST_RETRIES = {"max_retries": 4, "initial_delay": "0.5s", "max_delay": "4s"}


@contextlib.contextmanager
def gcs_retry_policy():
    """Within the block, orbax opens its TensorStores with `GCS_REQUEST_RETRIES` (orbax
    builds a fresh context per save and restore from `get_ts_context`, which this wraps)."""
    from orbax.checkpoint._src.serialization import tensorstore_utils as ts_utils

    real = ts_utils.get_ts_context
    if getattr(real, "_jaxdl_bounded", False):  # nested
        yield
        return

    def bounded(**kwargs):
        import tensorstore as ts

        spec = real(**kwargs).spec  # the orbax context's resources, plus the retry policy
        return ts.Context(ts.Context.Spec({**spec.to_json(),
                                           "gcs_request_retries": GCS_REQUEST_RETRIES}))

    bounded._jaxdl_bounded = True
    ts_utils.get_ts_context = bounded
    try:
        yield
    finally:
        ts_utils.get_ts_context = real
