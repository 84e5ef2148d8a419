"""The one train step and its eval twin: pure functions of (state, batch).

A model family supplies only its task loss:

    loss_fn(params, batch, rng, model, train) -> (loss, metrics)

Models with mutable state (BatchNorm) get `batch_stats=` as a keyword and return
`(loss, (metrics, new_batch_stats))`. An optional `preprocess(batch, rng, train)`
runs on device inside the step (augmentation, normalisation).

Randomness: `rng = fold_in(state.rng, state.step)`, split into a preprocessing key
and a model key. The same (state, batch) always gives the same result, which is
what makes exact resume and multi-device agreement possible. Metrics are sums
(`loss_sum`, `correct`, `count`, ...) so they aggregate exactly over batches,
devices and epochs; `reduce_metrics` turns them into means.
"""

from collections.abc import Callable
from typing import Any

import jax

from jaxdl.train.state import TrainState

LossFn = Callable[..., tuple[jax.Array, Any]]
Preprocess = Callable[[dict, jax.Array, bool], dict]


def _keys(state: TrainState):
    rng = jax.random.fold_in(state.rng, state.step)
    return jax.random.split(rng)


def _call_loss(loss_fn, params, batch, rng, model, train, batch_stats):
    if batch_stats is None:
        loss, metrics = loss_fn(params, batch, rng, model, train)
        return loss, (metrics, None)
    return loss_fn(params, batch, rng, model, train, batch_stats=batch_stats)


def make_train_step(
    loss_fn: LossFn, model, *, preprocess: Preprocess | None = None, axis_name: str | None = None
) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """Return `train_step(state, batch) -> (state, metrics)`; jit, shard or pmap it.

    With `jax.jit` and sharded inputs, gradients are averaged across devices by XLA.
    `axis_name` is only for the pmap path, where the mean must be written out.
    """

    def train_step(state: TrainState, batch: dict):
        pre_rng, model_rng = _keys(state)
        if preprocess is not None:
            batch = preprocess(batch, pre_rng, True)

        def compute(params):
            return _call_loss(loss_fn, params, batch, model_rng, model, True, state.batch_stats)

        (_, (metrics, batch_stats)), grads = jax.value_and_grad(compute, has_aux=True)(
            state.params
        )
        if axis_name is not None:
            grads = jax.lax.pmean(grads, axis_name)
            metrics = jax.lax.psum(metrics, axis_name)
            if batch_stats is not None:
                batch_stats = jax.lax.pmean(batch_stats, axis_name)
        changes = {} if batch_stats is None else {"batch_stats": batch_stats}
        return state.apply_gradients(grads, **changes), metrics

    return train_step


def make_eval_step(
    loss_fn: LossFn,
    model,
    *,
    preprocess: Preprocess | None = None,
    use_ema: bool = False,
    axis_name: str | None = None,
) -> Callable[[TrainState, dict], dict]:
    """Return `eval_step(state, batch) -> metrics` with the model in eval mode."""

    def eval_step(state: TrainState, batch: dict):
        pre_rng, model_rng = _keys(state)
        if preprocess is not None:
            batch = preprocess(batch, pre_rng, False)
        params = state.ema_params if use_ema and state.ema_params is not None else state.params
        _, (metrics, _) = _call_loss(
            loss_fn, params, batch, model_rng, model, False, state.batch_stats
        )
        if axis_name is not None:
            metrics = jax.lax.psum(metrics, axis_name)
        return metrics

    return eval_step


def reduce_metrics(sums: dict) -> dict:
    """Turn summed metrics into means: `x_sum` -> `x`, `correct` -> `accuracy` (per `count`)."""
    count = max(float(sums.get("count", 1.0)), 1.0)
    out = {}
    for key, value in sums.items():
        if key == "count":
            out["count"] = int(value)
        elif key == "correct":
            out["accuracy"] = float(value) / count
        elif key.endswith("_sum"):
            out[key[: -len("_sum")]] = float(value) / count
        else:
            out[key] = float(value)
    return out
