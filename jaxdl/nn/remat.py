"""Rematerialisation of a model's blocks (`--config.remat`): recompute activations in the
backward pass instead of keeping them, trading compute for memory.

    none   keep every activation (the default)
    block  each block under `nn.remat` keeping its matmul outputs (JAX's
           `dots_with_no_batch_dims_saveable`): the elementwise work is recomputed
    full   each block under `nn.remat` keeping nothing: the whole block is recomputed

Gradients are the same functions of the parameters either way (tested to float rounding).
"""

import flax.linen as nn
import jax

from jaxdl.errors import UserError

REMAT = ("none", "block", "full")
_POLICIES = {"block": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
             "full": jax.checkpoint_policies.nothing_saveable}


def remat_block(cls, remat: str, static_argnums=()):
    """`cls`, or `nn.remat(cls)` with the policy `remat` names. `static_argnums` count the
    block's `__call__` arguments from 1 (after the module), for its Python flags."""
    if remat not in REMAT:
        raise UserError(f"unknown remat {remat!r}; choose one of {', '.join(REMAT)} "
                        "(--config.remat)")
    if remat == "none":
        return cls
    return nn.remat(cls, policy=_POLICIES[remat], static_argnums=static_argnums)
