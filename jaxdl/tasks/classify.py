"""Supervised losses on logits, in the train step's shape, with summed metrics.

    softmax_cross_entropy  multi-class; integer labels in [0, num_classes)  (nn.CrossEntropyLoss)
    sigmoid_bce            binary; labels 0/1, one logit per example         (nn.BCEWithLogitsLoss)
    mse                    regression; float targets                        (nn.MSELoss)

Each is `loss_fn(params, batch, rng, model, train, *, batch_stats=None, input_key='image',
label_key='label') -> (loss, metrics)`; bind keys with functools.partial. Metrics are
sums (`loss_sum`, `correct`, `count`) so batches, devices and epochs aggregate exactly;
a padded last batch is excluded through `batch['mask']`.
"""

import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.errors import UserError
from jaxdl.tasks.common import apply_model, example_weights, finish


def softmax_cross_entropy(params, batch, rng, model, train, *, batch_stats=None,
                          input_key="image", label_key="label"):
    logits, new_bs = apply_model(model, params, batch[input_key], rng, train, batch_stats)
    labels = batch[label_key]
    w = example_weights(batch, labels.shape[0])
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = jnp.sum((jnp.argmax(logits, -1) == labels) * w)
    return finish(jnp.sum(losses * w), jnp.sum(w), {"correct": correct}, new_bs, batch_stats)


def sigmoid_bce(params, batch, rng, model, train, *, batch_stats=None,
                input_key="image", label_key="label"):
    logits, new_bs = apply_model(model, params, batch[input_key], rng, train, batch_stats)
    logits = logits.reshape(logits.shape[0])  # (batch,) one logit each
    labels = batch[label_key].astype(logits.dtype).reshape(logits.shape)
    w = example_weights(batch, labels.shape[0])
    losses = optax.sigmoid_binary_cross_entropy(logits, labels)
    correct = jnp.sum(((logits > 0) == (labels > 0.5)) * w)
    return finish(jnp.sum(losses * w), jnp.sum(w), {"correct": correct}, new_bs, batch_stats)


def mse(params, batch, rng, model, train, *, batch_stats=None, input_key="x", label_key="y"):
    preds, new_bs = apply_model(model, params, batch[input_key], rng, train, batch_stats)
    targets = batch[label_key].astype(preds.dtype).reshape(preds.shape)
    w = example_weights(batch, targets.shape[0])
    per_example = jnp.mean(optax.l2_loss(preds, targets).reshape(preds.shape[0], -1), -1) * 2.0
    abs_err = jnp.mean(jnp.abs(preds - targets).reshape(preds.shape[0], -1), -1)
    return finish(jnp.sum(per_example * w), jnp.sum(w), {"mae_sum": jnp.sum(abs_err * w)},
                  new_bs, batch_stats)


LOSSES = {"softmax_cross_entropy": softmax_cross_entropy, "sigmoid_bce": sigmoid_bce, "mse": mse}


def check_labels(labels, num_classes: int) -> None:
    """Host-side label check, before anything compiles (jit cannot raise on values)."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"labels have dtype {labels.dtype}; class labels must be integers: "
                        "convert them with labels.astype(np.int32)")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(
            f"labels span [{labels.min()}, {labels.max()}] but the model has {num_classes} "
            f"classes; labels must lie in [0, {num_classes}): build the model with num_classes="
            f"{int(labels.max()) + 1} or fix the labels"
        )
