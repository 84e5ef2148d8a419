"""One run per workdir: `<workdir>/run.lock` holds the owner's host and pid.

Taken before anything in the workdir is cleaned up or written, released when the run ends.
The lock appears with its content in one step (a hard link of a file written first), and a
stale one is moved to a name of the taker's own before it is deleted, so racing runs never
delete each other's live lock.
A second run on a live workdir is a UserError naming the other process; a lock whose
process is gone (same host, no such pid) is stale and taken over with a message. A lock of
another host cannot be checked from here, so it is refused, naming the file to remove once
that run is known to be gone. In a multi-host run only process 0 takes it (one shared
workdir).
"""

import json
import os
import socket
from pathlib import Path

import jax

from jaxdl.errors import UserError

LOCK_FILE = "run.lock"


class _Reentered(Exception):
    pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


_DAMAGED = ("", -1)


def _owner(path: Path) -> tuple[str, int] | None:
    """`(host, pid)` of a lock file; None if it is gone; `_DAMAGED` if it cannot be parsed
    (written by hand, or by a jaxdl before locks were written atomically)."""
    try:
        owner = json.loads(path.read_text())
        return str(owner["host"]), int(owner["pid"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return _DAMAGED


class WorkdirLock:
    def __init__(self, workdir: str | Path):
        self.path = Path(workdir) / LOCK_FILE
        self.held = False

    def __enter__(self):
        if jax.process_index() != 0:
            return self
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a stale lock is removed, then taken; a lost race is retried
            if self._create(me):
                self.held = True
                return self
            try:
                self._take_over_or_refuse(me)
            except _Reentered:
                return self  # held by this process already: not ours to release
        raise UserError(f"could not take the lock {self.path}; remove it if no run uses "
                        "this workdir")

    def _create(self, me: dict) -> bool:
        """Put the lock in place with its content, atomically: written to a file of this
        process's own, then hard-linked to `run.lock`, which fails if the lock exists. No
        other process ever sees an empty or half-written lock."""
        tmp = self.path.with_name(f".{LOCK_FILE}.{me['host']}.{me['pid']}.tmp")
        tmp.write_text(json.dumps(me))
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _take_over_or_refuse(self, me: dict) -> None:
        owner = _owner(self.path)
        if owner is None:  # gone meanwhile: try again
            return
        host, pid = owner if owner != _DAMAGED else (me["host"], -1)  # damaged: stale
        if host == me["host"] and pid == me["pid"]:
            raise _Reentered  # the runner holds it around fit, which asks again
        if host != me["host"]:
            raise UserError(f"workdir {self.path.parent} is in use by process {pid} on host "
                            f"{host}; wait for it to finish, or remove {self.path} if that "
                            "run is gone")
        if pid > 0 and _alive(pid):
            raise UserError(f"workdir {self.path.parent} is in use by process {pid} on this "
                            f"host ({host}); wait for it to finish or use another --workdir")
        # Remove that very lock, not one a racing process has just put in its place:
        # move it to a name of our own, check it is still the stale one, then delete it.
        moved = self.path.with_name(f".{LOCK_FILE}.{me['host']}.{me['pid']}.stale.tmp")
        try:
            os.rename(self.path, moved)
        except FileNotFoundError:
            return  # another process took it over first: try again
        if _owner(moved) != owner:
            try:  # a live lock, taken between our read and the move: put it back
                os.link(moved, self.path)
            except FileExistsError:  # a third run took the workdir meanwhile: it holds it,
                pass                 # and the run we moved fails at its next lock check
            moved.unlink(missing_ok=True)
            return
        print(f"Taking over the stale lock of process {pid} (gone) in {self.path.parent}.",
              flush=True)
        moved.unlink(missing_ok=True)

    def __exit__(self, *exc):
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
        return False
