"""Orbax checkpoints of the train state plus a small JSON of run metadata.

Layout: `<workdir>/checkpoints/<step>/{state,meta}`. orbax (0.12) writes a step as
`<step>.orbax-checkpoint-tmp/{state,meta}.orbax-checkpoint-tmp`, writes
`commit_success.txt` into it and renames it to `<step>` when complete, then deletes
the steps beyond `max_to_keep`, oldest first. A process killed mid-save therefore
leaves `<step>.orbax-checkpoint-tmp`; one killed while old steps are deleted leaves a
half-deleted old `<step>` without `commit_success.txt`. A Checkpointer opened for
training (`cleanup=True`, as `fit` does) removes both on start-up; readers (sampling,
evaluation, the CLI) leave the directory alone, since a run may be saving into it.

Resume protocol (the Flax examples' convention):
1. no checkpoint in the workdir: start fresh;
2. a complete latest step: restore it, into the caller's state template (and so
   into the caller's sharding);
3. the latest step is proven damaged (corrupt metadata, missing items, truncated or
   garbled arrays; `jaxdl.storage_errors.classify`): say so and try the previous one. A
   training Checkpointer (`cleanup=True`) moves each damaged step aside to
   `<step>.damaged-<time>` (nothing is deleted) once an older step has restored, so the
   run retrains through that step and saves it anew; readers leave it in place;
4. the checkpoint does not fit the model (a parameter missing, extra or of another shape,
   found from the step's metadata before any array is read): raise a UserError naming
   it, delete nothing;
5. any other failure is not damage: a store that does not answer is retried with backoff
   (`JAXDL_IO_RETRY_SECONDS`), then it, device out-of-memory, a refused permission or an
   unknown error is one UserError naming the step and the cause; nothing is moved.
`meta` carries what is not an array: the data position (`jaxdl.train.position`, checked
against the loader on resume) and the curves so far.
"""

import contextlib
import os
import shutil
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxdl import storage, storage_errors
from jaxdl.errors import UserError, first_line
from jaxdl.train.noise import is_disk_full, quiet_orbax

TMP_SUFFIX = ".orbax-checkpoint-tmp"
COMMIT_FILE = "commit_success.txt"


class Checkpointer:
    def __init__(self, directory: str | Path, *, max_to_keep: int = 3, async_save: bool = True,
                 cleanup: bool = False):
        self.directory = (storage.remote(directory) if storage.is_remote(directory)
                          else Path(directory).absolute())  # gs://: jaxdl.storage
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create checkpoint directory {self.directory}: "
                            f"{e.strerror}; pick a writable --workdir") from None
        self.cleanup, self._saving = cleanup, None
        if cleanup and jax.process_index() == 0:
            remove_unfinished(self.directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers={
            "state": ocp.StandardCheckpointHandler(use_ocdbt=use_ocdbt()),
            "meta": ocp.JsonCheckpointHandler()})

    def save(self, step: int, state, meta: dict, *, force: bool = True) -> None:
        """Start saving `step` (asynchronously: the arrays are copied off the devices before
        this returns, the files are written in the background; `wait` for them). The previous
        save is waited for first, so its failure names its own step."""
        self.wait()
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        with self._save_errors(step), storage_errors.gcs_retry_policy():
            self.manager.save(int(step), args=args, force=force)
        self._saving = int(step)

    @contextlib.contextmanager
    def _save_errors(self, step):
        """Any failed save: one UserError naming the step, its path and the cause; the last
        complete step stays as it was (the cut-off save is removed on the next start)."""
        try:
            yield
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - orbax wraps its writer threads' errors
            if step is None:
                raise
            kept = [s for s in self.manager.all_steps() if s != step]
            last = (f"the last complete checkpoint, step {max(kept)}, is kept and a rerun "
                    "resumes from it" if kept else "no checkpoint was complete yet, so a rerun "
                    "starts from the beginning")
            path = self.directory / str(step)
            if is_disk_full(e):
                raise UserError(f"no space left on the device of {self.directory} while "
                                f"saving checkpoint step {step}; free some space (or point "
                                f"--workdir elsewhere) and rerun: {last}") from None
            kind = storage_errors.classify(e, missing_is_damage=False)
            why = {storage_errors.TRANSIENT: "the store did not answer after retries",
                   storage_errors.DENIED: "permission denied",
                   storage_errors.MEMORY: "out of memory"}.get(kind, "the store refused it")
            self._saving = None
            raise UserError(f"could not save checkpoint step {step} to {path}: {why} "
                            f"({first_line(e)}); {last}") from None

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def restore_latest(self, template):
        """Return `(state, meta, step)` from the newest readable step, or None if there is none.

        Each step's stored tree (parameter paths and shapes, from its metadata) is compared
        with `template` before any array is read: a mismatch is a UserError naming the first
        differing parameter (the checkpoint belongs to another model or config); a step whose
        metadata or arrays cannot be read is corrupt, and the previous step is tried.
        Leaves of `template` without a sharding (`eval_shape`'s) restore onto this
        process's first device, whatever mesh or processes saved them."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        abstract = jax.tree.map(_with_sharding, template)
        damaged = []
        for i, step in enumerate(steps):
            try:
                restored = storage_errors.retrying(
                    lambda step=step: self._read_step(step, abstract),
                    what=f"reading checkpoint step {step} from {self.directory}",
                    say=lambda line: print(line, file=sys.stderr, flush=True))
            except UserError:
                raise
            except Exception as e:  # noqa: BLE001 - classified: only damage falls back
                kind = storage_errors.classify(e)
                if kind != storage_errors.DAMAGE:
                    raise UserError(self._read_failure(step, kind, e)) from None
                self._fall_back(step, steps[i + 1:], e)
                damaged.append(step)
                continue
            if damaged and self.cleanup:
                self._move_aside(damaged)
            return restored.state, dict(restored.meta), step
        if steps:
            raise UserError(f"no readable checkpoint in {self.directory} (steps {steps}); "
                            "move the directory away to start fresh")
        return None

    def _read_step(self, step: int, abstract):
        """Restore one step into `abstract`; a UserError when its tree does not fit."""
        with quiet_orbax(), storage_errors.gcs_retry_policy():
            stored = self._stored_shapes(step)
            mismatch = _first_mismatch(stored, abstract)
            if mismatch is not None:
                raise UserError(
                    f"checkpoint step {step} in {self.directory} does not match this model "
                    f"({mismatch}); use a fresh --workdir or the config it was saved with")
            args = ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
            return self.manager.restore(step, args=args)

    def _read_failure(self, step: int, kind: str, e: Exception) -> str:
        """The one line for a restore that failed without proof of damage."""
        where = f"checkpoint step {step} in {self.directory}"
        cause = first_line(e)
        if kind == storage_errors.TRANSIENT:
            return (f"cannot read {where}: the store did not answer for "
                    f"{storage_errors.retry_seconds():.0f} s ({cause}); nothing was moved or "
                    "deleted: rerun when it answers (JAXDL_IO_RETRY_SECONDS sets the wait)")
        if kind == storage_errors.MEMORY:
            return (f"out of memory restoring {where} ({cause}); free the device (another "
                    "process may hold it) or use a machine with more memory: nothing was "
                    "moved or deleted")
        if kind == storage_errors.DENIED:
            return (f"permission denied reading {where} ({cause}); check the credentials "
                    "and the permissions on the workdir: nothing was moved or deleted")
        return (f"cannot read {where} ({type(e).__name__}: {cause}); this is not known "
                "damage, so nothing was moved or deleted: fix the cause and rerun")

    def _stored_shapes(self, step: int) -> dict[tuple[str, ...], tuple[int, ...] | None]:
        """`{parameter path: global shape}` of a step's saved state, from its metadata
        (`_METADATA` and each array's zarr header; no array data is read)."""
        handler = ocp.StandardCheckpointHandler()
        try:
            metadata = handler.metadata(self.directory / str(step) / "state")
        finally:
            handler.close()
        flat = ocp.tree.to_flat_dict(getattr(metadata, "tree", metadata))
        return {path: _shape(value) for path, value in flat.items()}

    @staticmethod
    def _fall_back(step: int, older: list[int], e: Exception) -> None:
        if older:
            print(f"Checkpoint step {step} is unreadable ({first_line(e)}); "
                  f"falling back to step {older[0]}.", file=sys.stderr, flush=True)

    def _move_aside(self, steps: list[int]) -> None:
        """Rename damaged steps to `<step>.damaged-<time>` (process 0; kept for inspection)
        so that training can save those steps again."""
        if jax.process_index() == 0:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for step in steps:
                target = self.directory / f"{step}.damaged-{stamp}"
                (self.directory / str(step)).rename(target)
                print(f"Moved the damaged checkpoint step {step} aside to {target.name}.",
                      file=sys.stderr, flush=True)
        self.manager.reload()

    def wait(self) -> None:
        with self._save_errors(getattr(self, "_saving", None)):
            self.manager.wait_until_finished()
        self._saving = None

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.manager.close()


def use_ocdbt() -> bool:
    """OCDBT (orbax's default: a step's arrays in one database) unless
    `JAXDL_CHECKPOINT_OCDBT=0`: one zarr directory per array instead. The Cloud Storage
    emulator needs it off: objects big enough for its resumable uploads come back with a
    storage generation tensorstore cannot parse, and OCDBT's manifest updates are
    conditional on it ("Malformed StorageGeneration"). Restores read either layout."""
    return os.environ.get("JAXDL_CHECKPOINT_OCDBT", "1").strip().lower() not in ("0", "false")


def _rmtree(path) -> None:
    if isinstance(path, Path):
        shutil.rmtree(path, ignore_errors=True)
    else:  # an epath on Cloud Storage
        path.rmtree(missing_ok=True)


def remove_unfinished(directory: Path) -> list[str]:
    """Remove what a process killed mid-save or mid-delete leaves; returns the names removed.

    - `<step>.orbax-checkpoint-tmp` (and any `*.orbax-checkpoint-tmp*`): a save cut off
      before its final rename; never complete, never restorable.
    - a numbered step without `commit_success.txt` that is older than a step with one:
      orbax writes that file before the rename, so such a step was being deleted (keep N)
      when the process died. The newest step is never removed.
    - on Cloud Storage (no rename there: orbax writes the step in place and the marker
      last), every numbered step without `commit_success.txt`.
    """
    removed = []
    if not directory.exists():  # Cloud Storage: no objects under the prefix yet
        return removed
    for tmp in sorted(directory.glob(f"*{TMP_SUFFIX}*")):
        print(f"Removing unfinished checkpoint {tmp.name} (cut off mid-save).")
        _rmtree(tmp)
        removed.append(tmp.name)
    steps = sorted((int(p.name), p) for p in directory.iterdir() if p.name.isdigit() and p.is_dir())
    committed = [s for s, p in steps if (p / COMMIT_FILE).exists()]
    if not isinstance(directory, Path):  # Cloud Storage: no rename, the marker is the commit
        for step, path in steps:
            if step not in committed:
                print(f"Removing unfinished checkpoint step {step} (no {COMMIT_FILE}: cut "
                      "off mid-save).")
                _rmtree(path)
                removed.append(path.name)
        return removed
    if committed:
        for step, path in steps:
            if step < committed[-1] and not (path / COMMIT_FILE).exists():
                print(f"Removing half-deleted checkpoint step {step} (cut off while old "
                      "checkpoints were deleted).")
                _rmtree(path)
                removed.append(path.name)
    return removed


def _shape(value) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    if shape is None and isinstance(value, int | float | complex | np.number | np.bool_):
        shape = ()
    return None if shape is None else tuple(int(n) for n in shape)


def _is_key_array(value) -> bool:
    dtype = getattr(value, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _with_sharding(leaf):
    leaf = ocp.utils.to_shape_dtype_struct(leaf)
    if isinstance(leaf, jax.ShapeDtypeStruct) and leaf.sharding is None:
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=jax.sharding.
                                    SingleDeviceSharding(jax.local_devices()[0]))
    return leaf


def _first_mismatch(stored: dict, abstract) -> str | None:
    """The first difference between a checkpoint's `{path: shape}` and the template's tree,
    in words, or None when every parameter is present in both with the same shape."""
    wanted = ocp.tree.to_flat_dict(abstract)
    for path, value in wanted.items():
        name = "/".join(path)
        if path not in stored:
            return f"parameter {name} of this model is not in the checkpoint"
        have, want = stored[path], _shape(value)
        if have is not None and want is not None and have != want and not _is_key_array(value):
            return (f"parameter {name} has shape {have} in the checkpoint, "
                    f"{want} in this model")
    extra = [path for path in stored if path not in wanted]
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        return f"the checkpoint has parameter {'/'.join(extra[0])}{more}, which this model lacks"
    return None



def restore_from_workdir(workdir: str | Path, template, *, fix: str):
    """`(state, meta, step)` from the newest checkpoint of a run's workdir, for sampling,
    evaluation or analysis; a workdir with none is a UserError whose message ends in `fix`."""
    ckpt = Checkpointer(storage.checkpoint_dir(workdir))
    try:
        restored = ckpt.restore_latest(template)
    finally:
        ckpt.close()
    if restored is None:
        raise UserError(f"no checkpoint in {ckpt.directory}; {fix}")
    return restored
