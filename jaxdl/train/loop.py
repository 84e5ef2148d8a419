"""fit(): the one training loop, for every family.

Runs the jitted train step over a loader for a number of epochs (or steps), with a
tqdm bar per epoch, the reference's `[Epoch N] loss = X | accuracy = Y%` line, an
orbax checkpoint at each epoch end (and every `checkpoint_every` steps), and
resumption from the latest checkpoint in the workdir. A loader is anything with
`batches_per_epoch` and `epoch(epoch, start) -> iterator of batches` (see
`jaxdl.data.loader`); the data position is derived from the step, so a resumed run
continues with exactly the batch an uninterrupted run would have taken.
"""

import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxdl.train.checkpoint import Checkpointer
from jaxdl.train.step import reduce_metrics

# XLA:CPU's YNNPACK fusions slow the CNN's backward pass; without them the train step
# runs about 1.5x faster here, while inference is faster with them (DESIGN, known traps).
CPU_TRAIN_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def compile_step(step_fn: Callable, *, donate: bool = True,
                 compiler_options: dict | None = None, **jit_kwargs) -> Callable:
    """jit the step, donating the state's buffers (it is replaced by the new state).

    `compiler_options` are applied per compiled function (ahead-of-time, on the first
    call's shapes), so a train step and an eval step can each take their faster path.
    """
    jitted = jax.jit(step_fn, donate_argnums=(0,) if donate else (), **jit_kwargs)
    if not compiler_options:
        return jitted
    compiled = {}

    def call(*args):
        key = jax.tree.structure(args), tuple(
            (getattr(x, "shape", None), str(getattr(x, "dtype", type(x))))
            for x in jax.tree.leaves(args))
        if key not in compiled:
            compiled[key] = jitted.lower(*args).compile(compiler_options=compiler_options)
        return compiled[key](*args)

    return call


def train_compiler_options() -> dict | None:
    """The options jaxdl sets for train steps on this backend (CPU only, for now)."""
    return CPU_TRAIN_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None


def epoch_line(epoch: int, metrics: dict) -> str:
    """The reference's per-epoch line; accuracy only where the task has one."""
    line = f"[Epoch {epoch}] loss = {metrics['loss']:.4f}"
    if "accuracy" in metrics:
        line += f" | accuracy = {100.0 * metrics['accuracy']:.2f}%"
    return line


def _add(total, metrics):
    return metrics if total is None else jax.tree.map(jnp.add, total, metrics)


def fit(state, train_step: Callable, loader, *, workdir: str | Path, epochs: int | None = None,
        num_steps: int | None = None, checkpoint_every: int | None = None, max_to_keep: int = 3,
        put_batch: Callable = lambda b: b, verbose: bool = True, block_every_step: bool = False):
    """Train `state` with the (already jitted) `train_step`; returns `(state, history)`.

    history: a list of per-epoch dicts (`epoch`, `loss`, `accuracy`, `seconds`, ...),
    restored with the checkpoint, so curves span resumed runs too.
    `put_batch` places a host batch on devices (sharding); `block_every_step` waits on
    each step's result, needed on CPU with several devices (see DESIGN's known traps).
    """
    per_epoch = loader.batches_per_epoch
    total = num_steps if num_steps is not None else (epochs or 1) * per_epoch
    workdir = Path(workdir)
    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=max_to_keep)
    history: list[dict] = []
    restored = ckpt.restore_latest(state)
    if restored is not None:
        state, meta, step = restored
        history = list(meta.get("history", []))
        pos = loader.position(step)
        _say(verbose, f"Resuming from checkpoint step {step} in {ckpt.directory} "
                      f"(epoch {pos.epoch + 1}, batch {pos.batch}).")
    step = int(jax.device_get(state.step))
    is_main = jax.process_index() == 0
    try:
        while step < total:
            pos = loader.position(step)
            n_batches = min(per_epoch - pos.batch, total - step)
            sums, t0 = None, time.perf_counter()
            bar = tqdm(total=n_batches, desc=f"Epoch {pos.epoch + 1}", leave=False,
                       disable=not (verbose and is_main))
            for i, batch in enumerate(loader.epoch(pos.epoch, pos.batch)):
                if i == n_batches:
                    break
                state, metrics = train_step(state, put_batch(batch))
                sums = _add(sums, metrics)
                step += 1
                if block_every_step:
                    jax.block_until_ready(metrics)
                if i % 20 == 0 or i == n_batches - 1:
                    bar.set_postfix(loss=f"{float(metrics['loss_sum'] / metrics['count']):.4f}")
                bar.update(1)
                if checkpoint_every and step % checkpoint_every == 0 and step < total:
                    ckpt.save(step, state, {"history": history})
            bar.close()
            epoch_done = loader.position(step).batch == 0
            summary = reduce_metrics(jax.device_get(sums))
            summary.update(epoch=pos.epoch + 1, step=step,
                           seconds=time.perf_counter() - t0, partial=not epoch_done)
            history.append(summary)
            if epoch_done:
                _say(verbose and is_main, epoch_line(pos.epoch + 1, summary))
            ckpt.save(step, state, {"history": history})
    finally:
        ckpt.close()
    _write_jsonl(workdir / "metrics.jsonl", history) if is_main else None
    return state, history


def evaluate(eval_step: Callable, state, loader, *, put_batch: Callable = lambda b: b) -> dict:
    """Mean metrics of the (jitted) eval step over one pass of the loader."""
    sums = None
    for batch in loader.epoch(0):
        sums = _add(sums, eval_step(state, put_batch(batch)))
    return reduce_metrics(jax.device_get(sums))


def predict(predict_fn: Callable, state, loader, *, put_batch: Callable = lambda b: b):
    """Concatenate `predict_fn(state, batch)` over one pass, dropping the padding."""
    outputs = []
    for batch in loader.epoch(0):
        out = np.asarray(jax.device_get(predict_fn(state, put_batch(batch))))
        outputs.append(out[np.asarray(batch["mask"]) > 0])
    return np.concatenate(outputs)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _say(verbose: bool, text: str) -> None:
    if verbose:
        print(text, flush=True)
