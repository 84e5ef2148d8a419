"""One run per workdir: `<workdir>/run.lock` holds the owner's host and pid.

Taken before anything in the workdir is cleaned up or written, released when the run ends.
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


class WorkdirLock:
    def __init__(self, workdir: str | Path):
        self.path = Path(workdir) / LOCK_FILE
        self.held = False

    def __enter__(self):
        if jax.process_index() != 0:
            return self
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):  # a stale lock is removed once, then taken
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    self._take_over_or_refuse(me)
                except _Reentered:
                    return self  # held by this process already: not ours to release
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise UserError(f"could not take the lock {self.path}; remove it if no run uses "
                        "this workdir")

    def _take_over_or_refuse(self, me: dict) -> None:
        try:
            owner = json.loads(self.path.read_text())
            host, pid = str(owner["host"]), int(owner["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            host, pid = me["host"], -1  # unreadable (cut off mid-write): stale
        if host == me["host"] and pid == me["pid"]:
            raise _Reentered  # the runner holds it around fit, which asks again
        if host != me["host"]:
            raise UserError(f"workdir {self.path.parent} is in use by process {pid} on host "
                            f"{host}; wait for it to finish, or remove {self.path} if that "
                            "run is gone")
        if pid > 0 and _alive(pid):
            raise UserError(f"workdir {self.path.parent} is in use by process {pid} on this "
                            f"host ({host}); wait for it to finish or use another --workdir")
        print(f"Taking over the stale lock of process {pid} (gone) in {self.path.parent}.",
              flush=True)
        self.path.unlink(missing_ok=True)

    def __exit__(self, *exc):
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
        return False
