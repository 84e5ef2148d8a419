"""What orbax and tensorstore print around a failed checkpoint read or save, filtered so the
failure itself is one line (`restore_latest` and `Checkpointer.save` report it).

- `quiet_orbax()`: orbax's, absl's and asyncio's loggers silenced around a restore;
- a logging filter on absl that drops orbax's writer threads' full-disk tracebacks;
- `sys.unraisablehook` / `sys.excepthook` filters for the failed-read coroutines and for
  tensorstore's callbacks into orbax's closed event loop;
- `QuietStderr` / `quiet_stderr()`, installed by the command-line entries, for the same
  closed-loop tracebacks printed from native threads past any Python hook.
Each drops only those messages; everything else passes through unchanged.
"""

import contextlib
import errno
import logging
import re
import sys


@contextlib.contextmanager
def quiet_orbax():
    """Silence orbax's and asyncio's own logging of a failed read (hundreds of lines on
    stderr for one truncated array); the failure itself is raised and reported in one line."""
    loggers = [logging.getLogger(n) for n in ("absl", "asyncio", "orbax", "jax")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def is_disk_full(e: BaseException) -> bool:
    while e is not None:
        if getattr(e, "errno", None) == errno.ENOSPC or "No space left on device" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


class _DropDiskFullLogs(logging.Filter):
    """orbax's writer threads log a full disk with tracebacks (hundreds of lines) before the
    save's error reaches the main thread, which reports it in one line."""

    def filter(self, record) -> bool:
        if "No space left on device" in record.getMessage():
            return False
        exc = record.exc_info[1] if record.exc_info else None
        return not (exc is not None and is_disk_full(exc))


class _DropFailedReadTasks(logging.Filter):
    """A failed restore leaves orbax's other concurrent array reads as asyncio tasks whose
    errors nobody retrieves; asyncio logs each when it is collected, possibly long after
    `quiet_orbax` has ended. The restore itself raised and was reported in one line, so
    tensorstore's failed reads and opens alone are dropped here."""

    def filter(self, record) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (record.getMessage().startswith("Task exception was never retrieved")
                    and exc is not None and "tensorstore_spec" in str(exc))


for _name in ("absl", "asyncio"):  # asyncio: "Task exception was never retrieved"
    logging.getLogger(_name).addFilter(_DropDiskFullLogs())
logging.getLogger("asyncio").addFilter(_DropFailedReadTasks())


def _drop_closed_loop_noise(kind, value, tb) -> None:
    """`sys.excepthook`: after a failed save, tensorstore's callbacks into orbax's closed
    asyncio loop print 'RuntimeError: Event loop is closed'; that alone is dropped."""
    if kind is RuntimeError and str(value) == "Event loop is closed":
        return
    _DEFAULT_EXCEPTHOOK(kind, value, tb)


_DEFAULT_EXCEPTHOOK = sys.excepthook
sys.excepthook = _drop_closed_loop_noise


class QuietStderr:
    """A stderr that drops the tracebacks ending in 'RuntimeError: Event loop is closed'
    (tensorstore's callbacks into orbax's closed loop after a failed save or read, printed
    from native threads past any Python hook); everything else passes through unchanged,
    progress bars included. The command-line entries install it (`quiet_stderr()`)."""

    def __init__(self, stream):
        self.stream, self.block = stream, None

    HEADER = "Traceback (most recent call last)"
    NOISE = "RuntimeError: Event loop is closed"
    # A traceback's last line names the exception (`RuntimeError: ...`, `pkg.SomeError`);
    # another unindented line inside one was written by another thread (the command's own
    # `error: ...` line, say) and passes straight through.
    EXCEPTION_LINE = re.compile(r"(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?::|$)")

    def write(self, text: str) -> int:
        if self.block is None and not text.startswith(self.HEADER):
            return self.stream.write(text)
        self.block = (self.block or "") + text
        while self.block is not None and "\n" in self.block:
            if not self._close_block():
                break
        return len(text)

    def _close_block(self) -> bool:
        """Emit or drop the buffered tracebacks once each header has its exception line
        (threads may interleave theirs); True when the buffer was consumed."""
        lines = self.block.split("\n")
        headers, errors = 0, []
        for i, line in enumerate(lines[:-1]):
            if line.startswith(self.HEADER):
                headers += 1
            elif line and not line[0].isspace():
                if not self.EXCEPTION_LINE.match(line):  # interleaved: not the traceback's
                    self.stream.write(line + "\n")
                    self.block = "\n".join(lines[:i] + lines[i + 1:])
                    return True
                errors.append(line.strip())
                if len(errors) == headers:
                    done, rest = "\n".join(lines[:i + 1]) + "\n", "\n".join(lines[i + 1:])
                    if any(e != self.NOISE for e in errors):
                        self.stream.write(done)
                    self.block = None
                    if rest:
                        self.write(rest)
                    return True
        return False

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


@contextlib.contextmanager
def quiet_stderr():
    """Filter stderr for the command's run. On the process's own stderr the filter stays
    until the process ends (the noise comes from native threads, up to interpreter exit);
    a replaced stderr (a test's capture) gets its own stream back."""
    previous = sys.stderr
    if isinstance(previous, QuietStderr):
        yield
        return
    sys.stderr = quiet = QuietStderr(previous)
    try:
        yield
    finally:
        if previous is not sys.__stderr__:
            if quiet.block:
                previous.write(quiet.block)
            sys.stderr = previous


def _drop_orbax_read_noise(unraisable) -> None:
    """`sys.unraisablehook`: orbax's concurrent array reads that fail after the first one
    are reported by Python as 'Exception ignored in <coroutine ...>' when collected; the
    failure is already reported (one line) by `restore_latest`, so drop those alone."""
    if "_read_array_index" in repr(getattr(unraisable, "object", None)):
        return
    _DEFAULT_UNRAISABLEHOOK(unraisable)


_DEFAULT_UNRAISABLEHOOK = sys.unraisablehook
sys.unraisablehook = _drop_orbax_read_noise
