"""Optimizer recipes on optax, named as PyTorch users know them.

Weight decay comes in two kinds, and the name says which:

- `adam`, `sgd`, `momentum`, `rmsprop` with `weight_decay=wd` add `wd * param` to the
  gradient before the update (PyTorch's coupled L2, `torch.optim.Adam(weight_decay=)`):
  `optax.chain(optax.add_decayed_weights(wd), optax.adam(lr))`.
- `adamw` decays the weights directly, outside the adaptive scaling (Loshchilov &
  Hutter; `torch.optim.AdamW`): `optax.adamw(lr, weight_decay=wd)`.

The reference CNN recipe is `adam` with lr 1e-3 and weight decay 1e-4 (coupled).

`muon_adamw` is the split modern speedruns use (modded-nanogpt, Keller Jordan 2024):
Muon (momentum orthogonalised by Newton-Schulz, `optax.contrib.muon`) for the hidden
weight matrices, AdamW for everything else (embeddings, output head, gains, biases); the
caller labels which parameter is which, since only it knows what a hidden matrix is.
"""

import jax
import jax.numpy as jnp
import optax

from jaxdl.errors import UserError

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "warmup_constant", "warmup_linear")


def make_schedule(
    learning_rate: float,
    schedule: str = "constant",
    *,
    total_steps: int = 0,
    warmup_steps: int = 0,
    min_learning_rate: float = 0.0,
) -> optax.Schedule:
    """A learning-rate schedule from optax: constant, cosine, or either after linear warmup;
    `warmup_linear` decays linearly from the peak to `min_learning_rate` at `total_steps`.
    With `min_learning_rate=0` the cosine and linear ones decay to zero.

    Warmup is nanoGPT's: step `i < warmup_steps` takes `lr * (i + 1) / (warmup_steps + 1)`,
    so the first update already moves the weights (a warmup from 0 would waste step 0 and
    run one step behind a PyTorch run of the same recipe).
    """
    if schedule == "constant":
        return optax.constant_schedule(learning_rate)
    if schedule == "warmup_constant":
        return optax.join_schedules(
            [optax.linear_schedule(_warmup_start(learning_rate, warmup_steps), learning_rate,
                                   max(warmup_steps, 1)),
             optax.constant_schedule(learning_rate)],
            [max(warmup_steps, 1)],
        )
    if schedule == "warmup_linear":
        if total_steps <= 0:
            raise UserError(f"schedule {schedule!r} needs total_steps > 0; set the run length")
        warmup = max(warmup_steps, 1)
        return optax.join_schedules(
            [optax.linear_schedule(_warmup_start(learning_rate, warmup_steps), learning_rate,
                                   warmup),
             optax.linear_schedule(learning_rate, min_learning_rate,
                                   max(total_steps - warmup, 1))],
            [warmup])
    if schedule in ("cosine", "warmup_cosine"):
        if total_steps <= 0:
            raise UserError(f"schedule {schedule!r} needs total_steps > 0; set the run length")
        warmup = warmup_steps if schedule == "warmup_cosine" else 0
        return optax.warmup_cosine_decay_schedule(
            init_value=_warmup_start(learning_rate, warmup),
            peak_value=learning_rate,
            warmup_steps=warmup,
            decay_steps=max(total_steps, warmup + 1),
            end_value=min_learning_rate,
        )
    raise UserError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


def _warmup_start(learning_rate: float, warmup_steps: int) -> float:
    return learning_rate / (warmup_steps + 1)


def make_optimizer(
    name: str,
    learning_rate: float | optax.Schedule,
    weight_decay: float = 0.0,
    *,
    momentum: float = 0.9,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    rmsprop_decay: float = 0.99,
    grad_clip_norm: float | None = None,
    decay_matrices_only: bool = False,
) -> optax.GradientTransformation:
    """Build a named optimizer; see the module docstring for what weight decay means.

    Defaults follow PyTorch (Adam eps 1e-8, RMSprop alpha 0.99 and eps 1e-8), so a
    recipe ported from PyTorch behaves the same. `decay_matrices_only` decays only
    parameters of rank >= 2 (weights, embeddings), not biases or norm scales (GPT-2 and
    nanoGPT's choice).
    """
    mask = (lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)) if (
        decay_matrices_only) else None
    if name == "sgd":
        core = optax.sgd(learning_rate)
    elif name == "momentum":
        core = optax.sgd(learning_rate, momentum=momentum)
    elif name == "adam":
        core = optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)
    elif name == "adamw":
        core = optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                           mask=mask)
    elif name == "rmsprop":
        # PyTorch's RMSprop adds eps outside the square root and starts the average at 0.
        core = optax.rmsprop(learning_rate, decay=rmsprop_decay, eps=eps, eps_in_sqrt=False)
    else:
        raise UserError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    parts = []
    if grad_clip_norm:
        parts.append(optax.clip_by_global_norm(grad_clip_norm))
    if weight_decay and name != "adamw":
        parts.append(optax.add_decayed_weights(weight_decay, mask=mask))
    parts.append(core)
    return optax.chain(*parts) if len(parts) > 1 else core


def with_state_dtype(tx: optax.GradientTransformation, dtype) -> optax.GradientTransformation:
    """`tx` with its floating state (Adam's moments) stored in `dtype` (`opt_state_dtype`):
    half the bytes in bfloat16. Each update upcasts the state, computes in float32 and
    rounds the new state back, so only the stored moments lose precision."""

    def cast(tree, to):
        return jax.tree.map(lambda a: a.astype(to) if hasattr(a, "dtype") and jnp.issubdtype(
            a.dtype, jnp.floating) else a, tree)

    def init(params):
        return cast(tx.init(params), dtype)

    def update(updates, state, params=None, **extra):
        updates, state = tx.update(updates, cast(state, jnp.float32), params, **extra)
        return updates, cast(state, dtype)

    return optax.GradientTransformationExtraArgs(init, update)


def muon_adamw(
    learning_rate: float | optax.Schedule,
    adam_learning_rate: float | optax.Schedule,
    dimension_numbers,
    *,
    weight_decay: float = 0.0,
    adam_weight_decay: float = 0.0,
    b1: float = 0.9,
    b2: float = 0.999,
    beta: float = 0.95,
    grad_clip_norm: float | None = None,
) -> optax.GradientTransformation:
    """Muon on the parameters `dimension_numbers(params)` labels with an
    `optax.contrib.MuonDimensionNumbers` (which axes are the matrix's input and output;
    others are batch axes), AdamW on those it labels None.

    `learning_rate` is Muon's (an orthogonalised update has unit spectral norm, so its
    good rates are ~0.02-0.05 whatever the width), `adam_learning_rate` AdamW's; decay
    is decoupled on both sides (multiplied by the learning rate, as in PyTorch).
    """
    core = optax.contrib.muon(
        learning_rate, beta=beta, weight_decay=weight_decay, adam_b1=b1, adam_b2=b2,
        adam_weight_decay=adam_weight_decay, adam_learning_rate=adam_learning_rate,
        muon_weight_dimension_numbers=dimension_numbers)
    return optax.chain(optax.clip_by_global_norm(grad_clip_norm), core) if grad_clip_norm \
        else core
