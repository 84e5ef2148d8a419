"""Where the data stood at a checkpoint, and whether this run's loader can continue there.

A checkpoint's `meta["data"]` records the position after its step and what that position
depends on (batch size, dataset size, seed), as the loader itself says
(`data_position(step)`, jaxdl.data.loader); a resume whose loader differs is refused in
one line rather than silently training on other batches."""

from jaxdl.errors import UserError


def data_position(loader, step: int) -> dict:
    """What `meta` records of the data after `step` steps: the loader's own
    `data_position(step)` (position, batch size, dataset size, seed: jaxdl.data.loader), or
    for a loader without one, the position alone."""
    if hasattr(loader, "data_position"):
        return loader.data_position(step)
    pos = loader.position(step)
    return {"epoch": int(pos.epoch), "batch": int(pos.batch),
            "batches_per_epoch": int(loader.batches_per_epoch)}


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
