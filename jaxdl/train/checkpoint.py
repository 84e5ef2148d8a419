"""Orbax checkpoints of the train state plus a small JSON of run metadata.

Layout: `<workdir>/checkpoints/<step>/{state,meta}`; orbax writes a step under a
temporary name and renames it when complete, so a save cut off by a crash leaves
only `<step>.orbax-checkpoint-tmp-*`, which is removed here on start-up.

Resume protocol (the Flax examples' convention):
1. no checkpoint in the workdir: start fresh;
2. a complete latest step: restore it, into the caller's state template (and so
   into the caller's sharding);
3. the latest step cannot be read (corrupt): say so, try the previous one;
4. the checkpoint does not fit the model (shape mismatch): raise a UserError,
   delete nothing.
`meta` carries what is not an array: the data position and the curves so far.
"""

import shutil
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from jaxdl.errors import UserError


class Checkpointer:
    def __init__(self, directory: str | Path, *, max_to_keep: int = 3, async_save: bool = True):
        self.directory = Path(directory).absolute()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create checkpoint directory {self.directory}: "
                            f"{e.strerror}; pick a writable --workdir") from None
        if jax.process_index() == 0:
            for tmp in self.directory.glob("*.orbax-checkpoint-tmp*"):
                print(f"Removing unfinished checkpoint {tmp.name} (cut off mid-save).")
                shutil.rmtree(tmp, ignore_errors=True)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state, meta: dict, *, force: bool = True) -> None:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self.manager.save(int(step), args=args, force=force)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

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
