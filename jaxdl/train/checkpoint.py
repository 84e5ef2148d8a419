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
3. the latest step cannot be read (corrupt): say so, try the previous one;
4. the checkpoint does not fit the model (shape mismatch): raise a UserError,
   delete nothing.
`meta` carries what is not an array: the data position (`data_position`, checked
against the loader on resume by `check_data_position`) and the curves so far.
"""

import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxdl.errors import UserError

TMP_SUFFIX = ".orbax-checkpoint-tmp"
COMMIT_FILE = "commit_success.txt"


class Checkpointer:
    def __init__(self, directory: str | Path, *, max_to_keep: int = 3, async_save: bool = True,
                 cleanup: bool = False):
        self.directory = Path(directory).absolute()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create checkpoint directory {self.directory}: "
                            f"{e.strerror}; pick a writable --workdir") from None
        if cleanup and jax.process_index() == 0:
            remove_unfinished(self.directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state, meta: dict, *, force: bool = True) -> None:
        """Start saving `step` (asynchronously: the arrays are copied off the devices before
        this returns, the files are written in the background; `wait` for them)."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self.manager.save(int(step), args=args, force=force)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def restore_latest(self, template):
        """Return `(state, meta, step)` from the newest readable step, or None if there is none."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        for i, step in enumerate(steps):
            args = ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            )
            try:
                restored = self.manager.restore(step, args=args)
            except ValueError as e:
                if "shape" in str(e).lower() or "structure" in str(e).lower():
                    raise UserError(
                        f"checkpoint step {step} in {self.directory} does not match this model "
                        f"({_first_line(e)}); use a fresh --workdir or the config it was saved "
                        "with") from None
                if i + 1 < len(steps):
                    print(f"Checkpoint step {step} is unreadable ({_first_line(e)}); "
                          f"falling back to step {steps[i + 1]}.")
                continue
            except (OSError, KeyError, FileNotFoundError) as e:
                if i + 1 < len(steps):
                    print(f"Checkpoint step {step} is unreadable ({_first_line(e)}); "
                          f"falling back to step {steps[i + 1]}.")
                continue
            return restored.state, dict(restored.meta), step
        if steps:
            raise UserError(f"no readable checkpoint in {self.directory} (steps {steps}); "
                            "move the directory away to start fresh")
        return None

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def remove_unfinished(directory: Path) -> list[str]:
    """Remove what a process killed mid-save or mid-delete leaves; returns the names removed.

    - `<step>.orbax-checkpoint-tmp` (and any `*.orbax-checkpoint-tmp*`): a save cut off
      before its final rename; never complete, never restorable.
    - a numbered step without `commit_success.txt` that is older than a step with one:
      orbax writes that file before the rename, so such a step was being deleted (keep N)
      when the process died. The newest step is never removed.
    """
    removed = []
    for tmp in sorted(directory.glob(f"*{TMP_SUFFIX}*")):
        print(f"Removing unfinished checkpoint {tmp.name} (cut off mid-save).")
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp.name)
    steps = sorted((int(p.name), p) for p in directory.iterdir() if p.name.isdigit() and p.is_dir())
    committed = [s for s, p in steps if (p / COMMIT_FILE).exists()]
    if committed:
        for step, path in steps:
            if step < committed[-1] and not (path / COMMIT_FILE).exists():
                print(f"Removing half-deleted checkpoint step {step} (cut off while old "
                      "checkpoints were deleted).")
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
    return removed


def data_position(loader, step: int) -> dict:
    """What `meta` records of the data: the position after `step` steps and what of the
    loader it depends on (batches per epoch, batch size, examples or tokens, seed)."""
    pos = loader.position(step)
    out = {"epoch": int(pos.epoch), "batch": int(pos.batch),
           "batches_per_epoch": int(loader.batches_per_epoch)}
    ids = getattr(loader, "ids", None)  # a token stream (WindowLoader)
    for key, value in (("batch_size", getattr(loader, "batch_size", None)),
                       ("examples", getattr(loader, "n", None)),
                       ("tokens", None if ids is None else len(ids)),
                       ("seq_len", getattr(loader, "seq_len", None)),
                       ("seed", getattr(loader, "seed", None)),
                       ("shuffle", getattr(loader, "shuffle", None))):
        if isinstance(value, bool):
            out[key] = value
        elif isinstance(value, int | np.integer):
            out[key] = int(value)
    return out


def check_data_position(meta: dict, loader, step: int, directory) -> None:
    """Raise a UserError when the loader of this run cannot continue where the checkpoint's
    run stopped (another batch size, dataset or seed); checkpoints without a recorded
    position (older runs) pass."""
    saved = meta.get("data")
    if not isinstance(saved, dict):
        return
    now = data_position(loader, step)
    diff = [k for k in now if k in saved and saved[k] != now[k]]
    if not diff:
        return
    what = ", ".join(f"{k} {saved[k]!r} then, {now[k]!r} now" for k in diff)
    raise UserError(
        f"checkpoint step {step} in {directory} was saved at data position epoch "
        f"{saved.get('epoch')}, batch {saved.get('batch')} of a different loader ({what}); "
        "resuming would not continue the same run: resume with the batch size, data and seed "
        "it was saved with, or use a fresh --workdir")


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def restore_from_workdir(workdir: str | Path, template, *, fix: str):
    """`(state, meta, step)` from the newest checkpoint of a run's workdir, for sampling,
    evaluation or analysis; a workdir with none is a UserError whose message ends in `fix`."""
    ckpt = Checkpointer(Path(workdir) / "checkpoints")
    try:
        restored = ckpt.restore_latest(template)
    finally:
        ckpt.close()
    if restored is None:
        raise UserError(f"no checkpoint in {ckpt.directory}; {fix}")
    return restored
