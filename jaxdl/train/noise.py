"""What orbax and tensorstore print around a failed checkpoint read or save, filtered so the
failure itself is one line (`Checkpointer` reports it).

Importing this module changes nothing. `quiet_orbax()` silences orbax's, absl's, asyncio's
and gcsfs's loggers around one restore. `command_line_filters()`, entered by the command-line
entries alone, installs for the command's run:
- logging filters on absl and asyncio that drop orbax's writer threads' tracebacks of a
  full disk or a refused write and the unretrieved failed reads of a damaged step, and on
  gcsfs its "out of retries" tracebacks (the error itself is raised and reported), and
  orbax's "no per-process OCDBT files to merge" warning after each save with OCDBT off;
- `sys.unraisablehook` / `sys.excepthook` filters for the failed-read coroutines and for
  tensorstore's callbacks into orbax's closed event loop;
- `QuietStderr` for the same closed-loop tracebacks printed from native threads;
- a warnings filter for the one write coroutine an interrupted orbax save leaves unawaited.
Each drops only those exact messages; everything else passes through unchanged.
"""

import contextlib
import errno
import io
import logging
import os
import sys
import threading
import warnings


@contextlib.contextmanager
def quiet_orbax():
    """Silence orbax's and asyncio's own logging of a failed read (hundreds of lines on
    stderr for one truncated array); the failure itself is raised and reported in one line."""
    names = ("absl", "asyncio", "orbax", "jax", "gcsfs", "fsspec")
    loggers = [logging.getLogger(n) for n in names]
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


class _DropFailedWriteLogs(logging.Filter):
    """orbax's writer threads log a failed save (a full disk, a refused or unanswered write)
    with its traceback, hundreds of lines across its threads, before the save's error
    reaches the main thread, which reports it in one line (`Checkpointer._save_errors`):
    orbax's records that carry an exception are dropped, and full-disk messages."""

    def filter(self, record) -> bool:
        if "No space left on device" in record.getMessage():
            return False
        exc = record.exc_info[1] if record.exc_info else None
        return not (exc is not None and (is_disk_full(exc) or _ORBAX in record.pathname))


_ORBAX = f"{os.sep}orbax{os.sep}checkpoint{os.sep}"


class _DropFailedReadTasks(logging.Filter):
    """A failed restore leaves orbax's other concurrent array reads as asyncio tasks whose
    errors nobody retrieves; asyncio logs each when it is collected, possibly long after
    `quiet_orbax` has ended. The restore itself raised and was reported in one line, so
    tensorstore's failed reads and opens alone are dropped here."""

    def filter(self, record) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (record.getMessage().startswith("Task exception was never retrieved")
                    and exc is not None and "tensorstore_spec" in str(exc))


class _DropOutOfRetries(logging.Filter):
    """gcsfs logs each request that ran out of retries, with its traceback, and raises; the
    mirror's push and the checkpoint code report that error themselves, once."""

    def filter(self, record) -> bool:
        return not record.getMessage().startswith("_request out of retries")


class _DropOcdbtMergeSkip(logging.Filter):
    """With OCDBT off (`JAXDL_CHECKPOINT_OCDBT=0`, the GCS emulator's setting) orbax still
    tries to merge per-process OCDBT files after every save and warns that there are none:
    true by construction, so that one message is dropped."""

    MESSAGE = "Skipping merge of OCDBT checkpoints: No per-process OCDBT checkpoint subdirs"

    def filter(self, record) -> bool:
        return not (self.MESSAGE in record.getMessage() and _ORBAX in record.pathname)


class QuietStderr:
    """A stderr that drops the tracebacks ending in exactly 'RuntimeError: Event loop is
    closed' (tensorstore's callbacks into orbax's closed loop after a failed save or read,
    printed from native threads past any Python hook) and passes everything else through.

    Each thread's writes are read on their own: several native threads print their
    tracebacks at once, a few characters per write, so only per thread is a traceback
    contiguous. Only lines from a traceback header on are held, until the traceback's
    exception line (its first unindented line) arrives: noise is dropped, anything else is
    written in full. A traceback longer than `LIMIT` lines, or one still held at `close()`
    (at exit), is written as it is."""

    HEADER = "Traceback (most recent call last):"
    NOISE = "RuntimeError: Event loop is closed"
    LIMIT = 500

    def __init__(self, stream, *, thread=threading.get_ident):
        self.stream = stream
        self.thread = thread  # who is writing; a test may interleave its own writers
        self.writers: dict[int, _ThreadText] = {}
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        who = self.thread()
        writer = self.writers.get(who)
        if writer is None:
            writer = self.writers[who] = _ThreadText(self)
        writer.write(text)
        if writer.idle():
            del self.writers[who]
        return len(text)

    def _emit(self, text: str) -> None:
        with self.lock:
            self.stream.write(text)

    def close(self) -> None:
        """Write whatever is still held (an unfinished traceback, a partial line)."""
        for writer in list(self.writers.values()):
            writer.close()
        self.writers.clear()
        self.stream.flush()

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


class _ThreadText:
    """One thread's text through `QuietStderr`: lines pass at once unless a traceback is
    open, whose lines are held until it ends."""

    def __init__(self, owner: QuietStderr):
        self.owner = owner
        self.held: list[str] = []  # complete lines of open tracebacks
        self.partial = ""  # an unfinished line that may be (or be part of) a traceback
        self.headers = self.ends = 0
        self.real = False
        self.line_start = True

    def idle(self) -> bool:
        return not self.held and not self.partial and self.line_start

    def write(self, text: str) -> None:
        header = self.owner.HEADER
        if not self.held and not self.partial and text.startswith(header):
            self.line_start = True  # a traceback written mid-line (after a progress bar)
        data, self.partial = self.partial + text, ""
        *lines, last = data.split("\n")
        for line in lines:
            self._line(line + "\n")
        if self.held or (self.line_start and (last.startswith(header)
                                              or header.startswith(last))):
            self.partial = last  # wait for the rest of the line
        elif last:
            self.owner._emit(last)
            self.line_start = last.endswith("\r")

    def _line(self, line: str) -> None:
        text = line.rstrip("\n")
        header = self.owner.HEADER
        if not self.held:
            if self.line_start and text.startswith(header):
                self.held, self.headers, self.ends, self.real = [line], 1, 0, False
            else:
                self.owner._emit(line)
                self.line_start = True
            return
        if text.startswith(header):
            self.headers += 1
        elif text and not text[0].isspace():
            self.ends += 1  # an exception line closes the oldest open traceback
            self.real = self.real or text != self.owner.NOISE
        self.held.append(line)
        if self.ends >= self.headers or len(self.held) > self.owner.LIMIT:
            self._release(write=self.real or self.ends < self.headers)

    def _release(self, *, write: bool) -> None:
        if write:
            self.owner._emit("".join(self.held))
        self.held, self.headers, self.ends, self.real = [], 0, 0, False
        self.line_start = True

    def close(self) -> None:
        if self.held:
            self._release(write=True)
        if self.partial:
            self.owner._emit(self.partial)
            self.partial = ""


def _drop_closed_loop_noise(previous):
    """`sys.excepthook`: after a failed save, tensorstore's callbacks into orbax's closed
    asyncio loop raise 'RuntimeError: Event loop is closed'; that alone is dropped."""
    def hook(kind, value, tb) -> None:
        if kind is RuntimeError and str(value) == "Event loop is closed":
            return
        previous(kind, value, tb)
    return hook


def _drop_orbax_read_noise(previous):
    """`sys.unraisablehook`: orbax's concurrent array reads that fail after the first one
    are reported by Python as 'Exception ignored in <coroutine ...>' when collected, and
    gcsfs's failed uploads leave a 'BufferError: Existing exports of data' on their buffer;
    the failure is already reported in one line, so those alone are dropped."""
    def hook(unraisable) -> None:
        if "_read_array_index" in repr(getattr(unraisable, "object", None)):
            return
        if isinstance(unraisable.exc_value, BufferError) and isinstance(
                getattr(unraisable, "object", None), io.BytesIO):
            return
        previous(unraisable)
    return hook


# A save cut short (a full disk, a refused write) can leave one of orbax's write coroutines
# never started; Python warns when it is collected, often at exit, after the save's own
# one-line error (seen in CI: `<sys>:0: RuntimeWarning: coroutine
# 'async_serialize_from_host.<locals>.write_fragment' was never awaited`).
_UNAWAITED_WRITE = (r"coroutine 'async_serialize_from_host\.<locals>\.write_fragment' "
                    r"was never awaited")


@contextlib.contextmanager
def command_line_filters():
    """The filters above, for a command's run. On the process's own stderr they stay until
    the process ends (the noise comes from native threads, up to interpreter exit) and what
    the stderr filter holds is written at exit; a replaced stderr (a test's capture) gets
    its stream, hooks and loggers back."""
    if isinstance(sys.stderr, QuietStderr):  # nested (the runner inside the CLI)
        yield
        return
    previous = sys.stderr, sys.excepthook, sys.unraisablehook
    filters = [(logging.getLogger(name), f) for name, f in (
        ("absl", _DropFailedWriteLogs()), ("absl", _DropOcdbtMergeSkip()),
        ("asyncio", _DropFailedWriteLogs()),
        ("asyncio", _DropFailedReadTasks()), ("gcsfs", _DropOutOfRetries()))]
    for logger, f in filters:
        logger.addFilter(f)
    caught = warnings.catch_warnings()  # restores the caller's warning filters
    caught.__enter__()
    warnings.filterwarnings("ignore", _UNAWAITED_WRITE, RuntimeWarning)
    sys.stderr = quiet = QuietStderr(previous[0])
    sys.excepthook = _drop_closed_loop_noise(previous[1])
    sys.unraisablehook = _drop_orbax_read_noise(previous[2])
    try:
        yield
    finally:
        if previous[0] is sys.__stderr__:
            import atexit

            atexit.register(quiet.close)
        else:
            quiet.close()
            sys.stderr, sys.excepthook, sys.unraisablehook = previous
            for logger, f in filters:
                logger.removeFilter(f)
            caught.__exit__(None, None, None)
