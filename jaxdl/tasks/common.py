"""Helpers every task loss shares: applying a model (with or without mutable state), the
token cross-entropy through a language model's output layer, and masks."""

import inspect

import jax
import jax.numpy as jnp
import optax

from jaxdl.errors import UserError
from jaxdl.tasks import chunked_loss


def apply_model(model, params, x, rng, train: bool, batch_stats=None, *, float32: bool = True,
                **kwargs):
    """Run `model` on `x`; returns `(output, new_batch_stats)` (None when the model has none).

    Dropout draws from `rng` when training; BatchNorm statistics update only in training.
    The output comes back in float32 whatever the model's compute dtype (`float32=False`:
    as the model gives it), so every loss, softmax and metric after it is float32
    (jaxdl.nn.precision).
    """
    cast = to_float32 if float32 else (lambda out: out)
    variables = {"params": params}
    if batch_stats is None:
        out = model.apply(variables, x, train=train, rngs={"dropout": rng}, **kwargs)
        return cast(out), None
    variables["batch_stats"] = batch_stats
    if not train:
        return cast(model.apply(variables, x, train=False, **kwargs)), batch_stats
    out, updates = model.apply(
        variables, x, train=True, rngs={"dropout": rng}, mutable=["batch_stats"], **kwargs
    )
    return cast(out), updates["batch_stats"]


def token_cross_entropy(model, params, x, targets, weights, rng, train: bool, batch_stats=None,
                        *, loss_impl: str = "auto", **kwargs):
    """`(sum of weights * cross-entropy, hits, new_batch_stats)` of a model whose output
    is next-token logits (batch, time, vocab); hits (batch, time) are argmax == target.

    `loss_impl` (jaxdl.tasks.chunked_loss): `plain` takes the model's logits; `chunked`
    asks the model for its hidden states and output layer (`features=True`) and never
    holds every position's logits; `auto` picks by the size of those logits. A model
    without `features` (the recurrent LMs) always takes the plain path.
    """
    if loss_impl != "plain" and _has_features(model):
        (hidden, head), new_bs = apply_model(model, params, x, rng, train, batch_stats,
                                             float32=False, features=True, **kwargs)
        if chunked_loss.resolve(loss_impl, targets.size, head.kernel.shape[-1]) == "chunked":
            loss_sum, hits = chunked_loss.cross_entropy(hidden, head, targets, weights)
            return loss_sum, hits, new_bs
        logits = to_float32(head(hidden))
    elif loss_impl == "chunked":
        raise UserError(f"loss_impl 'chunked' needs a model that returns its output layer "
                        f"(features=True, as DecoderLM); {type(model).__name__} does not: "
                        "use --config.loss_impl=plain")
    else:
        logits, new_bs = apply_model(model, params, x, rng, train, batch_stats, **kwargs)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    return jnp.sum(losses * weights), jnp.argmax(logits, -1) == targets, new_bs


def _has_features(model) -> bool:
    return "features" in inspect.signature(type(model).__call__).parameters


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
