"""Logical axis names, for sharding: on parameters (`logical`) and on activations
(`constrain`). `jaxdl.train.sharding` maps the names to mesh axes.

Parameter names: `embed` (model width), `mlp` (MLP hidden width), `heads` and `kv`
(attention heads and head width), `vocab`, `position`, `norm` (norm scales) in the
Transformers; `conv_in` / `conv_out` (a conv kernel's channels: `conv`) and `fc_in` /
`fc_out` (a dense layer's: `dense`) in the conv nets, the MLP and the UNet. A parameter
without names (the RNN cells', made inside flax's cells) is still split along `fsdp` by
size (train.sharding).

Activation names: `batch`, `length`, `act_embed`, `act_mlp`, `act_heads`, `act_kv`,
`act_vocab`. Apart from the parameters' because a weight's `embed` is split along `fsdp`
while the residual stream's width stays whole: without a constraint XLA's propagation
may carry the weight's split into the activations and then undo it at a cost (its
"involuntary full rematerialization" warning). The constraints apply only inside
`activation_sharding(mesh, rules)`, which the sharded train and eval steps enter while
they are traced; everywhere else (one device, sampling) `constrain` returns `x`.
"""

import contextlib
import contextvars
import math
from collections.abc import Callable

import flax.linen as nn
import jax

_ACTIVE = contextvars.ContextVar("jaxdl_activation_sharding", default=None)


def logical(init: Callable, *names: str | None) -> Callable:
    """`init` whose parameter carries these logical axis names (one per dimension)."""
    return nn.with_logical_partitioning(init, names)


def conv(features: int, kernel_size, *, kernel_init: Callable = nn.linear.default_kernel_init,
         bias_init: Callable = nn.initializers.zeros, **kwargs) -> nn.Conv:
    """`nn.Conv` (flax's default inits) with its kernel named (.., conv_in, conv_out)."""
    spatial = (None,) * len(kernel_size)
    return nn.Conv(features, kernel_size, kernel_init=logical(
        kernel_init, *spatial, "conv_in", "conv_out"), bias_init=logical(
        bias_init, "conv_out"), **kwargs)


def dense(features: int, *, kernel_init: Callable = nn.linear.default_kernel_init,
          bias_init: Callable = nn.initializers.zeros, **kwargs) -> nn.Dense:
    """`nn.Dense` (flax's default inits) with its kernel named (fc_in, fc_out)."""
    return nn.Dense(features, kernel_init=logical(kernel_init, "fc_in", "fc_out"),
                    bias_init=logical(bias_init, "fc_out"), **kwargs)


@contextlib.contextmanager
def activation_sharding(mesh, rules):
    """Within: `constrain` pins activations to `mesh` by the logical `rules` table."""
    token = _ACTIVE.set((mesh, tuple(rules)))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def constrain(x: jax.Array, *names: str | None) -> jax.Array:
    """`x` (one name per dimension) under a sharding constraint, where one is active.

    A mesh axis (or group) that does not divide its dimension is dropped for it: a batch
    of 4 on 8 devices, a 65-character vocabulary over `tensor` 2.
    """
    active = _ACTIVE.get()
    if active is None:
        return x
    mesh, rules = active
    axes = []
    for size, entry in zip(x.shape, nn.logical_to_mesh_axes(names, rules), strict=True):
        group = () if entry is None else entry if isinstance(entry, tuple) else (entry,)
        axes.append(entry if group and size % math.prod(mesh.shape[a] for a in group) == 0
                    else None)
    spec = jax.sharding.PartitionSpec(*axes)
    return jax.lax.with_sharding_constraint(x, jax.sharding.NamedSharding(mesh, spec))


def residual(x: jax.Array) -> jax.Array:
    """The residual stream (batch, length, width): the batch split, the width whole."""
    return constrain(x, "batch", "length", "act_embed")
