"""fit(): the one training loop, for every family.

Runs the jitted train step over a loader for a number of epochs (or steps), with a
tqdm bar per epoch, the reference's `[Epoch N] loss = X | accuracy = Y%` line, an
orbax checkpoint at each epoch end (and every `checkpoint_every` steps), evaluators every
N steps, per-step scalars to `metrics.jsonl` and TensorBoard (`jaxdl.train.writer`), and
resumption from the latest checkpoint in the workdir. A loader is anything with
`batches_per_epoch`, `position(step)` and `epoch(epoch, start) -> iterator of batches`
(see `jaxdl.data.loader`); the data position is derived from the step, so a resumed run
continues with exactly the batch an uninterrupted run would have taken. Each checkpoint
records that position (and the loader's batch size, size and seed), and a resume whose
loader disagrees is a UserError. The metric sums of an epoch cut short are saved too, so
the curves of a resumed run are those of an uninterrupted one.

Evaluators (`Evaluator(name, every, fn)`) run after step `every`, `2 * every`, ... and
before that step's checkpoint, so a resumed run evaluates exactly the steps it has not
evaluated yet; `fn(state, step, writer)` returns scalars, logged as `name/key`.

Preemption: a SIGTERM (or, after `jax.distributed.initialize`, JAX's preemption sync
point, reached by every process at the same step) makes fit save a checkpoint at the
next step boundary and raise `Preempted`, a `SystemExit` with status 0: the process
exits cleanly and the same command resumes. SIGINT (Ctrl-C) does the same and exits 130.
A second signal ends the process at once.

Divergence: a nan or inf loss raises `NonFiniteLoss` (a UserError) naming the step. The
losses are fetched every `check_every` steps (with the progress bar's) and before every
save, and the whole state is checked before it is saved, so no checkpoint ever holds a
non-finite state and none is written after the divergence: the last good one is kept.
"""

import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxdl import storage
from jaxdl.errors import UserError
from jaxdl.train.checkpoint import Checkpointer
from jaxdl.train.guards import FiniteGuard, Preempted, PreemptionWatch
from jaxdl.train.lock import WorkdirLock
from jaxdl.train.position import check_data_position, data_position
from jaxdl.train.profile import StepProfiler
from jaxdl.train.step import reduce_metrics
from jaxdl.train.writer import MetricWriter

__all__ = ["Evaluator", "evaluate", "fit", "predict"]
LOG_EVERY = 50  # default steps between logged scalar rows


class Evaluator(NamedTuple):
    """`fn(state, step, writer) -> {metric: scalar}`, run by fit every `every` steps (and
    after the last step with `at_end`)."""
    name: str
    every: int
    fn: Callable
    at_end: bool = False


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
        check_every: int = 20, evaluators=(), log_every: int | None = LOG_EVERY,
        learning_rate: Callable | float | None = None, log: bool = True,
        on_start: Callable | None = None, profile_steps: tuple[int, int] | None = None):
    """Train `state` with the (already jitted) `train_step`; returns `(state, history)`.

    history: a list of per-epoch dicts (`epoch`, `loss`, `accuracy`, `seconds`, ...),
    restored with the checkpoint, so curves span resumed runs too; a run that stops inside
    an epoch ends with a row marked `partial`.
    `put_batch` places a host batch on devices (sharding); `block_every_step` waits on
    each step's result, needed on CPU with several devices (see DESIGN's known traps).
    `check_every`: steps between the host syncs that check the loss is finite (and update
    the progress bar); the loss is also checked before every save.
    `log_every`: steps between rows of `train/loss` (and accuracy, learning rate,
    throughput, and `train/seconds`: wall seconds since this call's first step, evaluations
    left out, compiling and saving counted) in `metrics.jsonl` and the event files (None:
    epoch rows only); `log` False writes neither (a helper run inside another run's workdir).
    `learning_rate`: the optax schedule (or constant), logged as `train/learning_rate`.
    `on_start()` runs once the checkpoint (if any) has restored and fits this run, before
    the first step: the runner writes `config.json` there, so a refused rerun changes
    nothing. The workdir is locked (`jaxdl.train.lock`) for the whole call.
    `profile_steps=(start, stop)` traces those steps into `<workdir>/profile`
    (`jaxdl.train.profile`).
    Raises `Preempted` (exit status 0) after saving when preempted, `NonFiniteLoss` (a
    UserError) when the loss diverges, and a UserError when the checkpoint in `workdir`
    was saved with another loader (batch size, data, seed).
    """
    per_epoch = loader.batches_per_epoch
    total = num_steps if num_steps is not None else (epochs or 1) * per_epoch
    workdir = Path(workdir)
    is_main = jax.process_index() == 0
    watch = PreemptionWatch()
    with WorkdirLock(workdir), watch:
        ckpt = Checkpointer(storage.checkpoint_dir(workdir), max_to_keep=max_to_keep,
                            cleanup=True)
        loop = _Loop(loader, ckpt, watch, workdir=workdir, total=total,
                     checkpoint_every=checkpoint_every, put_batch=put_batch,
                     verbose=verbose and is_main, block_every_step=block_every_step,
                     check_every=max(int(check_every), 1), evaluators=tuple(evaluators),
                     log_every=log_every, learning_rate=learning_rate,
                     log=log and is_main, on_start=on_start,
                     profiler=StepProfiler(workdir / "profile", profile_steps))
        try:
            state, history = loop.run(state, train_step)
        finally:
            loop.profiler.stop()
            loop.writer.close()
            ckpt.close()  # waits for the last save
    if watch.received:  # the loop saved at the step boundary (or had just saved its last step)
        preempted = Preempted(int(jax.device_get(state.step)), ckpt.directory, watch.code)
        if is_main:
            print(f"Preemption notice: {preempted}.", flush=True)
        raise preempted
    return state, history


class _Loop:
    """fit's state between steps: history, guard, writer, the scalar window."""

    def __init__(self, loader, ckpt, watch, *, workdir, total, checkpoint_every, put_batch,
                 verbose, block_every_step, check_every, evaluators, log_every, learning_rate,
                 log, on_start, profiler):
        self.loader, self.ckpt, self.watch = loader, ckpt, watch
        self.workdir, self.total, self.checkpoint_every = workdir, total, checkpoint_every
        self.put_batch, self.verbose, self.block = put_batch, verbose, block_every_step
        self.profiler = profiler
        self.check_every, self.evaluators = check_every, evaluators
        self.log_every, self.learning_rate, self.log = log_every, learning_rate, log
        self.on_start = on_start
        self.history: list[dict] = []  # completed epochs (and rows of older checkpoints)
        self.writer = MetricWriter(workdir, enabled=False)

    def meta(self, step, sums=None, seconds=0.0):
        # copies: orbax may serialise the JSON in its background thread, after more appends
        out = {"history": list(self.history), "data": data_position(self.loader, step)}
        if sums is not None and self.loader.position(step).batch:
            out["epoch_so_far"] = {"sums": _sums_to_json(sums), "seconds": seconds}
        return out

    def run(self, state, train_step):
        loader, per_epoch = self.loader, self.loader.batches_per_epoch
        carry = None  # metric sums and seconds of an epoch the checkpoint was saved inside
        restored = self.ckpt.restore_latest(state)
        if restored is not None:
            state, meta, step = restored
            check_data_position(meta, loader, step, self.ckpt.directory)
            self.history = list(meta.get("history", []))
            carry = meta.get("epoch_so_far")
            pos = loader.position(step)
            _say(self.verbose, f"Resuming from checkpoint step {step} in {self.ckpt.directory} "
                               f"(epoch {pos.epoch + 1}, batch {pos.batch}).")
        step = int(jax.device_get(state.step))
        if step > self.total:
            raise UserError(f"the checkpoint in {self.ckpt.directory} is at step {step}, past "
                            f"this run's {self.total} steps; ask for at least as many "
                            "(--config.epochs / --config.num_steps) or use a fresh --workdir")
        if self.on_start is not None:
            self.on_start()
        self.writer = MetricWriter(self.workdir, resume_step=step, enabled=self.log)
        self.guard = FiniteGuard(self.ckpt, step if restored is not None else None)
        partial, stop = [], False
        self.clock0 = time.perf_counter()  # train/seconds: evaluations are taken out
        while step < self.total and not stop:
            pos = loader.position(step)
            n_batches = min(per_epoch - pos.batch, self.total - step)
            sums, seconds0 = None, 0.0
            if carry is not None and pos.batch:
                sums = _sums_from_json(carry["sums"])
                seconds0 = float(carry.get("seconds", 0.0))
            carry = None
            self.t0 = time.perf_counter()
            self._window_start(self.t0)
            bar = tqdm(total=n_batches, desc=f"Epoch {pos.epoch + 1}", leave=False,
                       disable=not self.verbose)
            try:
                for i, batch in enumerate(loader.epoch(pos.epoch, pos.batch)):
                    with self.profiler.step(step):
                        state, metrics = train_step(state, self.put_batch(batch))
                    sums = _add(sums, metrics)
                    if self.log_every:
                        self.window = _add(self.window, metrics)
                    step += 1
                    self.profiler.done(step, metrics)
                    self.guard.add(step, metrics)
                    if self.block:
                        jax.block_until_ready(metrics)
                    if i % self.check_every == 0 or i == n_batches - 1:
                        loss = self.guard.check()
                        if loss is not None:
                            bar.set_postfix(loss=f"{loss:.4f}")
                    bar.update(1)
                    if self.log_every and (step % self.log_every == 0 or step == self.total):
                        self._log_window(step)
                    self._evaluate(state, step)
                    stop = self.watch.reached(step)  # asked every step (the multi-host sync)
                    if stop or i == n_batches - 1:
                        break  # saved below
                    if self.checkpoint_every and step % self.checkpoint_every == 0:
                        elapsed = seconds0 + time.perf_counter() - self.t0
                        self.guard.save(step, state, self.meta(step, sums, elapsed))
            finally:
                bar.close()  # before any message: an error line never shares the bar's line
            seconds = seconds0 + time.perf_counter() - self.t0
            epoch_done = loader.position(step).batch == 0
            self.guard.check()
            summary = reduce_metrics(jax.device_get(sums))
            summary.update(epoch=pos.epoch + 1, step=step, seconds=seconds,
                           partial=not epoch_done)
            if epoch_done:
                self.history.append(summary)
                _say(self.verbose, epoch_line(pos.epoch + 1, summary))
                self.writer.scalars(step, {"epoch": pos.epoch + 1, **{
                    f"epoch/{k}": v for k, v in summary.items() if k not in ("epoch", "step")}})
                self.guard.save(step, state, self.meta(step))
            else:  # stopped inside the epoch: its sums go into the checkpoint, not the history
                partial = [summary]
                self.guard.save(step, state, self.meta(step, sums, seconds))
        return state, self.history + partial

    def _window_start(self, now: float) -> None:
        self.window, self.window_t0 = None, now

    def _log_window(self, step: int) -> None:
        if self.window is None:
            return
        self.guard.check()  # nothing non-finite is logged
        now = time.perf_counter()
        sums = jax.device_get(self.window)
        values = {f"train/{k}": v for k, v in reduce_metrics(sums).items() if k != "count"}
        seconds = max(now - self.window_t0, 1e-9)
        values["train/throughput"] = float(sums.get("count", 0.0)) / seconds
        values["train/seconds"] = now - self.clock0
        if self.learning_rate is not None:
            lr = self.learning_rate
            values["train/learning_rate"] = float(lr(max(step - 1, 0)) if callable(lr) else lr)
        self.writer.scalars(step, values)
        self._window_start(now)

    def _evaluate(self, state, step: int) -> None:
        due = [e for e in self.evaluators if (e.every and step % e.every == 0)
               or (e.at_end and step == self.total)]
        if not due:
            return
        t = time.perf_counter()
        for e in due:
            values = e.fn(state, step, self.writer)
            self.writer.scalars(step, {f"{e.name}/{k}": v for k, v in values.items()})
        spent = time.perf_counter() - t  # evaluation time is not training time
        self.t0 += spent
        self.window_t0 += spent
        self.clock0 += spent


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
        mask = np.asarray(batch["mask"])
        if len(out) != len(mask):  # a global output of process-local batches
            from jax.experimental import multihost_utils

            mask = np.asarray(multihost_utils.process_allgather(mask, tiled=True))
        outputs.append(out[mask > 0])
    return np.concatenate(outputs)


def _say(verbose: bool, text: str) -> None:
    if verbose:
        print(text, flush=True)
