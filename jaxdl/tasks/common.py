"""Helpers every task loss shares: applying a model (with or without mutable state) and masks."""

import jax
import jax.numpy as jnp


def apply_model(model, params, x, rng, train: bool, batch_stats=None, **kwargs):
    """Run `model` on `x`; returns `(output, new_batch_stats)` (None when the model has none).

    Dropout draws from `rng` when training; BatchNorm statistics update only in training.
    The output comes back in float32 whatever the model's compute dtype, so every loss,
    softmax and metric after it is float32 (jaxdl.nn.precision).
    """
    variables = {"params": params}
    if batch_stats is None:
        out = model.apply(variables, x, train=train, rngs={"dropout": rng}, **kwargs)
        return to_float32(out), None
    variables["batch_stats"] = batch_stats
    if not train:
        return to_float32(model.apply(variables, x, train=False, **kwargs)), batch_stats
    out, updates = model.apply(
        variables, x, train=True, rngs={"dropout": rng}, mutable=["batch_stats"], **kwargs
    )
    return to_float32(out), updates["batch_stats"]


def to_float32(tree):
    """Floating leaves as float32 (bfloat16 model outputs into float32 losses)."""
    return jax.tree.map(lambda a: a.astype(jnp.float32)
                        if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def example_weights(batch: dict, batch_size: int) -> jax.Array:
    """Per-example weights: the loader's padding mask when present, else ones."""
    mask = batch.get("mask")
    if mask is None:
        return jnp.ones((batch_size,), jnp.float32)
    return mask.astype(jnp.float32)


def finish(loss_sum, count, metrics: dict, new_batch_stats, batch_stats):
    """Mean loss over real examples, plus the (loss, aux) shape the train step expects."""
    loss = loss_sum / jnp.maximum(count, 1.0)
    metrics = {"loss_sum": loss_sum, "count": count, **metrics}
    if batch_stats is None:
        return loss, metrics
    return loss, (metrics, new_batch_stats)
