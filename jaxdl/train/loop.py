"""fit(): the one training loop, for every family.

Runs the jitted train step over a loader for a number of epochs (or steps), with a
tqdm bar per epoch, the reference's `[Epoch N] loss = X | accuracy = Y%` line, an
orbax checkpoint at each epoch end (and every `checkpoint_every` steps), and
resumption from the latest checkpoint in the workdir. A loader is anything with
`batches_per_epoch`, `position(step)` and `epoch(epoch, start) -> iterator of batches`
(see `jaxdl.data.loader`); the data position is derived from the step, so a resumed run
continues with exactly the batch an uninterrupted run would have taken. Each checkpoint
records that position (and the loader's batch size, size and seed), and a resume whose
loader disagrees is a UserError. The metric sums of an epoch cut short are saved too, so
the curves of a resumed run are those of an uninterrupted one.

Preemption: a SIGTERM (or, after `jax.distributed.initialize`, JAX's preemption sync
point, reached by every process at the same step) makes fit save a checkpoint at the
next step boundary and raise `Preempted`, a `SystemExit` with status 0: the process
exits cleanly and the same command resumes. A second SIGTERM ends the process at once.

Divergence: a nan or inf loss raises `NonFiniteLoss` (a UserError) naming the step. The
losses are fetched every `check_every` steps (with the progress bar's) and before every
save, and the whole state is checked before it is saved, so no checkpoint ever holds a
non-finite state and none is written after the divergence: the last good one is kept.
"""

import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxdl.train.checkpoint import Checkpointer, check_data_position, data_position
from jaxdl.train.guards import FiniteGuard, NonFiniteLoss, Preempted, PreemptionWatch

__all__ = ["NonFiniteLoss", "Preempted", "compile_step", "evaluate", "fit", "predict"]
from jaxdl.train.step import reduce_metrics

# XLA:CPU's default YNNPACK fusions (elementwise ops fused around library kernels) slow
# the backward passes: measured here, alone, at batch 64, train steps with only YNNPACK's
# individual dots and reductions run 1.6x faster for MyNet (197 vs 120 img/s) and 1.25x
# for the diffusion UNet; the LMs are unchanged (switching YNNPACK off entirely would make
# the LSTM 1.7x slower). Eval and generation keep XLA's default, which is faster for
# inference (DESIGN, known traps; README, Benchmarks).
CPU_TRAIN_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type":
                              "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
AUTO = "auto"  # compile_step's default: jaxdl's train-step options for this backend


def compile_step(step_fn: Callable, *, donate: bool = True,
                 compiler_options: dict | str | None = AUTO, **jit_kwargs) -> Callable:
    """jit the step, donating the state's buffers (it is replaced by the new state).

    `compiler_options` are XLA options for this function alone (`jax.jit`'s own
    `compiler_options`), so a train step and an eval step can each take their faster path:
    "auto" (the default, for train steps) is `train_compiler_options()`; None or {} keeps
    XLA's defaults (what eval steps want). The result is a plain `jax.jit` function, with
    jit's C++ dispatch: an earlier per-call Python wrapper cost ~3 ms a step (LM, CPU).
    """
    if compiler_options == AUTO:
        compiler_options = train_compiler_options()
    return jax.jit(step_fn, donate_argnums=(0,) if donate else (),
                   compiler_options=compiler_options or None, **jit_kwargs)


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


def _sums_to_json(sums) -> dict:
    out = {}
    for key, value in jax.device_get(sums).items():
        a = np.asarray(value)
        out[key] = {"value": a.tolist(), "dtype": str(a.dtype)}
    return out


def _sums_from_json(saved: dict):
    return {k: jnp.asarray(np.asarray(v["value"], dtype=v["dtype"])) for k, v in saved.items()}


def fit(state, train_step: Callable, loader, *, workdir: str | Path, epochs: int | None = None,
        num_steps: int | None = None, checkpoint_every: int | None = None, max_to_keep: int = 3,
        put_batch: Callable = lambda b: b, verbose: bool = True, block_every_step: bool = False,
        check_every: int = 20):
    """Train `state` with the (already jitted) `train_step`; returns `(state, history)`.

    history: a list of per-epoch dicts (`epoch`, `loss`, `accuracy`, `seconds`, ...),
    restored with the checkpoint, so curves span resumed runs too; a run that stops inside
    an epoch ends with a row marked `partial`.
    `put_batch` places a host batch on devices (sharding); `block_every_step` waits on
    each step's result, needed on CPU with several devices (see DESIGN's known traps).
    `check_every`: steps between the host syncs that check the loss is finite (and update
    the progress bar); the loss is also checked before every save.
    Raises `Preempted` (exit status 0) after saving when preempted, `NonFiniteLoss` (a
    UserError) when the loss diverges, and a UserError when the checkpoint in `workdir`
    was saved with another loader (batch size, data, seed).
    """
    per_epoch = loader.batches_per_epoch
    total = num_steps if num_steps is not None else (epochs or 1) * per_epoch
    check_every = max(int(check_every), 1)
    workdir = Path(workdir)
    is_main = jax.process_index() == 0
    watch = PreemptionWatch()
    with watch:
        ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=max_to_keep, cleanup=True)
        try:
            state, history = _fit(state, train_step, loader, ckpt, watch, workdir=workdir,
                                  total=total, checkpoint_every=checkpoint_every,
                                  put_batch=put_batch, verbose=verbose,
                                  block_every_step=block_every_step, check_every=check_every,
                                  is_main=is_main)
        finally:
            ckpt.close()  # waits for the last save
    if watch.received:  # _fit saved at the step boundary (or had just saved its last step)
        preempted = Preempted(int(jax.device_get(state.step)), ckpt.directory)
        if is_main:
            print(f"Preemption notice: {preempted}.", flush=True)
        raise preempted
    return state, history


def _fit(state, train_step, loader, ckpt, watch, *, workdir, total, checkpoint_every, put_batch,
         verbose, block_every_step, check_every, is_main):
    per_epoch = loader.batches_per_epoch
    history: list[dict] = []  # completed epochs (and rows of older checkpoints as they were)
    carry = None  # metric sums and seconds of an epoch the checkpoint was saved inside
    restored = ckpt.restore_latest(state)
    if restored is not None:
        state, meta, step = restored
        check_data_position(meta, loader, step, ckpt.directory)
        history = list(meta.get("history", []))
        carry = meta.get("epoch_so_far")
        pos = loader.position(step)
        _say(verbose and is_main, f"Resuming from checkpoint step {step} in {ckpt.directory} "
                                  f"(epoch {pos.epoch + 1}, batch {pos.batch}).")
    step = int(jax.device_get(state.step))
    guard = FiniteGuard(ckpt, step if restored is not None else None)

    def meta(step, sums=None, seconds=0.0):
        # copies: orbax may serialise the JSON in its background thread, after more appends
        out = {"history": list(history), "data": data_position(loader, step)}
        if sums is not None and loader.position(step).batch:
            out["epoch_so_far"] = {"sums": _sums_to_json(sums), "seconds": seconds}
        return out

    partial, stop = [], False
    while step < total and not stop:
        pos = loader.position(step)
        n_batches = min(per_epoch - pos.batch, total - step)
        sums, seconds0 = None, 0.0
        if carry is not None and pos.batch:
            sums, seconds0 = _sums_from_json(carry["sums"]), float(carry.get("seconds", 0.0))
        carry = None
        t0 = time.perf_counter()
        bar = tqdm(total=n_batches, desc=f"Epoch {pos.epoch + 1}", leave=False,
                   disable=not (verbose and is_main))
        for i, batch in enumerate(loader.epoch(pos.epoch, pos.batch)):
            state, metrics = train_step(state, put_batch(batch))
            sums = _add(sums, metrics)
            step += 1
            guard.add(step, metrics)
            if block_every_step:
                jax.block_until_ready(metrics)
            if i % check_every == 0 or i == n_batches - 1:
                loss = guard.check()
                if loss is not None:
                    bar.set_postfix(loss=f"{loss:.4f}")
            bar.update(1)
            stop = watch.reached(step)  # asked at every step (the multi-host sync point)
            if stop or i == n_batches - 1:
                break  # saved below
            if checkpoint_every and step % checkpoint_every == 0:
                guard.save(step, state, meta(step, sums, seconds0 + time.perf_counter() - t0))
        bar.close()
        seconds = seconds0 + time.perf_counter() - t0
        epoch_done = loader.position(step).batch == 0
        guard.check()
        summary = reduce_metrics(jax.device_get(sums))
        summary.update(epoch=pos.epoch + 1, step=step, seconds=seconds, partial=not epoch_done)
        if epoch_done:
            history.append(summary)
            _say(verbose and is_main, epoch_line(pos.epoch + 1, summary))
            guard.save(step, state, meta(step))
        else:  # stopped inside the epoch: its sums go into the checkpoint, not the history
            partial = [summary]
            guard.save(step, state, meta(step, sums, seconds))
    if is_main:
        _write_jsonl(workdir / "metrics.jsonl", history + partial)
    return state, history + partial


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
