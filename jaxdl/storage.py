"""Workdirs on Cloud Storage: `--workdir gs://bucket/run` for training, resume and every
`jaxdl` subcommand.

Checkpoints go straight to the bucket: orbax writes `gs://bucket/run/checkpoints` itself
(tensorstore), each process its shards, and restores from there. Everything else a run
writes (config.json, results.json, metrics.jsonl, event files, figures, samples,
eval.json) is written into a local mirror of the workdir (`$JAXDL_CACHE`, default
`~/.cache/jaxdl/gs/bucket/run`) and copied to the bucket through `etils.epath` by
`Mirror.push`. A push runs every `PUSH_SECONDS` while training, after the run, and
when it stops on an error or preemption. A run that starts on a workdir first pulls
what the bucket holds, so a resumed run on a fresh VM sees its config and its logs. (The
mirror is there because tensorboardX and matplotlib write local files, and appending to
metrics.jsonl is not a Cloud Storage operation.) `mirror_of(local)` names the remote
workdir of a mirror, so the checkpoint code finds the bucket from the local path.

Point jaxdl at a bucket as at any GCS client: application default credentials on a TPU
VM. At an emulator: `STORAGE_EMULATOR_HOST=http://127.0.0.1:PORT` (epath, through gcsfs),
`TENSORSTORE_GCS_HTTP_URL=http://127.0.0.1:PORT` and `GOOGLE_AUTH_TOKEN_FOR_TESTING=x`
(orbax, through tensorstore). gcsfs first asks over gRPC what kind of bucket it is, which
hangs for 60 s against an emulator; `GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`, set when
jaxdl first opens a bucket unless the user set it, skips that question.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from pathlib import Path

from jaxdl.errors import UserError, first_line

SCHEMES = ("gs",)
MARKER = ".jaxdl_remote"  # in a mirror: the URL of its workdir
PUSH_SECONDS = 60.0
WARN_AFTER = 3  # failed background pushes in a row before a warning
PROBE = ".write_probe"
SKIP = ("checkpoints", MARKER, "run.lock", PROBE)  # never copied either way


def is_remote(workdir) -> bool:
    return "://" in str(workdir)


def check_url(url: str) -> tuple[str, str]:
    """`(bucket, path)` of a `gs://bucket/path` URL; any other scheme is a UserError."""
    scheme, _, rest = str(url).partition("://")
    if scheme not in SCHEMES:
        raise UserError(f"workdir {url}: unknown scheme {scheme!r}; use a local directory or "
                        "gs://BUCKET/PATH")
    bucket, _, path = rest.partition("/")
    if not bucket:
        raise UserError(f"workdir {url} names no bucket; use gs://BUCKET/PATH")
    return bucket, path.strip("/")


def remote(url: str):
    """`url` as an `etils.epath.Path` (gcsfs underneath, its listing cache off: a listing
    cached before another process wrote a file would hide that file)."""
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # before gcsfs loads
    import fsspec
    from etils import epath

    for protocol in ("gs", "gcs"):
        fsspec.config.conf.setdefault(protocol, {})["use_listings_cache"] = False
    return epath.Path(str(url).rstrip("/"))


def mirror_of(local) -> str | None:
    """The remote workdir a local directory mirrors, or None for a plain workdir."""
    marker = Path(local) / MARKER
    return marker.read_text().strip() if marker.is_file() else None


def checkpoint_dir(workdir):
    """Where a workdir's checkpoints live: the bucket for a mirror, else `workdir/checkpoints`."""
    url = mirror_of(workdir)
    return remote(url) / "checkpoints" if url else Path(workdir) / "checkpoints"


def check_credentials(bucket: str) -> None:
    """Application default credentials exist (an emulator needs none): otherwise one line
    now, rather than gcsfs falling back to anonymous access and the bucket refusing it."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    quiet = logging.getLogger("google.auth._default")  # its warning would repeat ours
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        google.auth.default()
    except DefaultCredentialsError:
        raise UserError(f"no Google Cloud credentials to reach gs://{bucket}: run `gcloud auth "
                        "application-default login` or set GOOGLE_APPLICATION_CREDENTIALS (a "
                        "TPU VM has its service account's); for an emulator set "
                        "STORAGE_EMULATOR_HOST") from None
    finally:
        quiet.setLevel(level)


def cache_root() -> Path:
    return Path(os.environ.get("JAXDL_CACHE", "~/.cache/jaxdl")).expanduser()


class Mirror:
    """The local copy of a `gs://` workdir: `pull()` from the bucket, `push()` to it."""

    def __init__(self, url: str):
        self.bucket, path = check_url(url)
        self.url = f"gs://{self.bucket}/{path}".rstrip("/")
        self.root = remote(self.url)
        self.local = cache_root() / "gs" / self.bucket / path
        self._pushed: dict[str, tuple] = {}
        self.unsynced: dict[str, float] = {}  # relative path: when it first failed
        self.last_error: Exception | None = None
        self._failed = 0  # background pushes in a row that left files unsynced
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def check_bucket(self) -> None:
        """The bucket exists and takes writes (a probe object written and removed): one line
        naming it otherwise, before any work."""
        check_credentials(self.bucket)
        try:
            ok = remote(f"gs://{self.bucket}").exists()
        except Exception as e:  # noqa: BLE001 - auth and transport errors have many types
            raise UserError(f"cannot reach bucket gs://{self.bucket} ({first_line(e)}); check "
                            "the credentials (gcloud auth application-default login) or, for "
                            "an emulator, STORAGE_EMULATOR_HOST") from None
        if not ok:
            raise UserError(f"bucket gs://{self.bucket} does not exist; create it (gcloud "
                            "storage buckets create gs://BUCKET) or fix --workdir")
        probe = self.root / PROBE
        try:
            probe.write_text("jaxdl write probe\n")
            probe.unlink()
        except Exception as e:  # noqa: BLE001 - permission and transport errors alike
            raise UserError(f"cannot write to {self.url} ({first_line(e)}); the run could not "
                            "save there: grant this account write access (roles/storage."
                            "objectUser) or pick another --workdir") from None

    def pull(self) -> Path:
        """Copy the bucket's files (not its checkpoints) into the mirror; returns it."""
        self.check_bucket()
        self.local.mkdir(parents=True, exist_ok=True)
        (self.local / MARKER).write_text(self.url + "\n")
        if self.root.exists():
            for path in self._remote_files():
                target = self.local / path.relative_to(self.root)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
                self._pushed[str(target)] = _stamp(target)
        return self.local

    def push(self) -> int:
        """Copy the mirror's new or changed files to the bucket; returns how many. A file
        that fails stays unsynced, and so do the files after it (gcsfs has retried it for
        half a minute: the bucket is not answering); the next push retries them all. The
        failure is kept in `last_error`; `unsynced` maps each file to when it first failed."""
        with self._lock:
            n, failed = 0, False
            for file in sorted(self.local.rglob("*")):
                rel = file.relative_to(self.local)
                if not file.is_file() or rel.parts[0] in SKIP or rel.name.startswith(".") and (
                        ".tmp" in rel.name):
                    continue
                stamp = _stamp(file)
                if self._pushed.get(str(file)) == stamp:
                    continue
                try:
                    if failed:
                        raise self.last_error
                    target = self.root / str(rel)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(file.read_bytes())
                except Exception as e:  # noqa: BLE001 - reported by the caller, see stop()
                    self.unsynced.setdefault(str(rel), time.time())
                    self.last_error, failed = e, True
                    continue
                self._pushed[str(file)] = stamp
                self.unsynced.pop(str(rel), None)
                n += 1
            if not self.unsynced:
                self.last_error = None
            return n

    def start(self, every: float = PUSH_SECONDS, *, warn_after: int = WARN_AFTER) -> None:
        """Push every `every` seconds in the background until `stop`. After `warn_after`
        pushes in a row leave files unsynced, one warning on stderr says how many and since
        when (again only after a push has succeeded)."""
        def tick():
            try:
                self.push()
                self._failed = self._failed + 1 if self.unsynced else 0
            except Exception as e:  # noqa: BLE001 - the listing itself failed: retried
                self.last_error, self._failed = e, self._failed + 1
            if self._failed == warn_after:
                print(f"warning: {self._unsynced_summary()}; retrying every {every:.0f} s",
                      file=sys.stderr, flush=True)
            self.start(every, warn_after=warn_after)

        self._timer = threading.Timer(every, tick)
        self._timer.daemon = True
        self._timer.start()

    def stop(self) -> None:
        """Stop the background pushes and push once more; a file still unsynced is a
        UserError listing them (they stay in the mirror)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            self.push()
        except Exception as e:  # noqa: BLE001 - listing the mirror or the bucket failed
            self.last_error = e
            self.unsynced.setdefault("(all new files)", time.time())
        if self.unsynced:
            names = sorted(self.unsynced)
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5
                                            else "")
            raise UserError(f"{self._unsynced_summary()}: {shown}; they are in {self.local}: "
                            f"copy them with `gcloud storage cp -r {self.local}/* {self.url}/` "
                            "or rerun the command once the bucket answers")

    def _unsynced_summary(self) -> str:
        since = time.strftime("%H:%M:%S", time.localtime(min(self.unsynced.values(),
                                                             default=time.time())))
        cause = first_line(self.last_error) if self.last_error else "unknown cause"
        return (f"{len(self.unsynced)} file(s) of {self.url} unsynced since {since} "
                f"({cause})")

    def _remote_files(self, directory=None):
        """The workdir's files in the bucket, by listing each directory (epath refuses a
        recursive glob on GCS), never descending into the checkpoints."""
        for path in (directory or self.root).iterdir():
            if path.name in SKIP:
                continue
            if path.is_dir():
                yield from self._remote_files(path)
            else:
                yield path


def _stamp(file: Path) -> tuple:
    st = file.stat()
    return (st.st_size, st.st_mtime_ns)



def local_workdir(workdir, *, start: bool = False):
    """`(local Path, Mirror or None)`: a local workdir as it is; a `gs://` one pulled into
    its mirror (and pushing in the background if `start`)."""
    if not is_remote(workdir):
        return Path(workdir), None
    mirror = Mirror(str(workdir))
    local = mirror.pull()
    if start:
        mirror.start()
    return local, mirror


@contextlib.contextmanager
def synced(mirror: Mirror | None):
    """Push `mirror` (if any) when the block ends. Files left unsynced are a UserError after
    a block that succeeded, and a warning line after one that raised: the block's own error
    (or preemption) is what the command ends with."""
    if mirror is None:
        yield
        return
    try:
        yield
    except BaseException:
        try:
            mirror.stop()
        except UserError as e:
            print(f"warning: {e}", file=sys.stderr, flush=True)
        raise
    mirror.stop()
