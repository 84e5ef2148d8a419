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
import jax.numpy as jnp

from jaxdl.errors import UserError
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
    loss_fn: LossFn, model, *, preprocess: Preprocess | None = None, axis_name: str | None = None,
    grad_accum_steps: int = 1,
) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """Return `train_step(state, batch) -> (state, metrics)`; jit, shard or pmap it.

    With `jax.jit` and sharded inputs, gradients are averaged across devices by XLA.
    `axis_name` is only for the pmap path, where the mean must be written out.
    `grad_accum_steps=K` splits the (preprocessed) batch into K microbatches under
    `lax.scan` and applies one update with their gradients combined as the whole batch's
    would be (each weighted by its `count`, so masked tokens and padding weigh as in the
    plain step); the activations of one microbatch are live at a time. Microbatch k's
    model rng is `fold_in(rng, k)`: still a pure function of (state, batch).
    """
    k_steps = int(grad_accum_steps)
    if k_steps < 1:
        raise UserError(f"grad_accum_steps must be >= 1, got {grad_accum_steps}")

    def grads_and_metrics(state, batch, model_rng):
        def compute(params):
            return _call_loss(loss_fn, params, batch, model_rng, model, True, state.batch_stats)

        (_, (metrics, batch_stats)), grads = jax.value_and_grad(compute, has_aux=True)(
            state.params)
        return grads, metrics, batch_stats

    def accumulated(state, batch, model_rng):
        size = jax.tree.leaves(batch)[0].shape[0]
        if size % k_steps:
            raise UserError(f"the batch of {size} does not split into grad_accum_steps="
                            f"{k_steps} equal microbatches; set --config.batch_size to a "
                            f"multiple of {k_steps}")
        micro = jax.tree.map(lambda x: x.reshape((k_steps, size // k_steps) + x.shape[1:]),
                             batch)

        def weighted(params, mb, rng, batch_stats):
            loss, (metrics, new_bs) = _call_loss(loss_fn, params, mb, rng, model, True,
                                                 batch_stats)
            weight = jax.lax.stop_gradient(metrics["count"]) if "count" in metrics else 1.0
            return loss * weight, (metrics, new_bs)  # d/dparams of the microbatch's sum

        def body(carry, inputs):
            grads, sums, batch_stats = carry
            k, mb = inputs
            (_, (metrics, batch_stats)), g = jax.value_and_grad(weighted, has_aux=True)(
                state.params, mb, jax.random.fold_in(model_rng, k), batch_stats)
            return (jax.tree.map(jnp.add, grads, g), jax.tree.map(jnp.add, sums, metrics),
                    batch_stats), None

        first = jax.tree.map(lambda x: x[0], micro)
        shapes = jax.eval_shape(lambda: weighted(state.params, first, model_rng,
                                                 state.batch_stats)[1][0])
        zeros = lambda tree: jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), tree)  # noqa
        init = (zeros(state.params), zeros(shapes), state.batch_stats)
        (grads, metrics, batch_stats), _ = jax.lax.scan(body, init,
                                                        (jnp.arange(k_steps), micro))
        total = jnp.maximum(metrics["count"], 1.0) if "count" in metrics else k_steps
        return jax.tree.map(lambda g: g / total, grads), metrics, batch_stats

    def train_step(state: TrainState, batch: dict):
        pre_rng, model_rng = _keys(state)
        if preprocess is not None:
            batch = preprocess(batch, pre_rng, True)
        step = grads_and_metrics if k_steps == 1 else accumulated
        grads, metrics, batch_stats = step(state, batch, model_rng)
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
