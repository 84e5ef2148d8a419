"""The shared train and eval steps under `jax.pmap`, for code that still uses it: state
with a leading device axis (`replicate_for_pmap` / `unreplicate`), batches reshaped to
(devices, per_device, ...) by `split_for_pmap`. The main path is `jax.jit` over a mesh
(`jaxdl.train.parallel`)."""

from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxdl.errors import UserError
from jaxdl.train.mesh import _multiples
from jaxdl.train.step import make_eval_step, make_train_step

PMAP_AXIS = "batch"  # the axis name the pmap path reduces over


def pmap_train_step(loss_fn, model, *, preprocess=None, devices=None) -> Callable:
    """The shared train step under `jax.pmap` (grads pmean'd, metrics psum'd over devices).

    Takes a state from `replicate_for_pmap` and a batch from `split_for_pmap`; returns the
    replicated new state and metrics (each device holds the global sums).
    Each device derives the same step rng, so with dropout or random augmentation the
    draws differ from the jit path's (which draws for the global batch at once).
    """
    step = make_train_step(loss_fn, model, preprocess=preprocess, axis_name=PMAP_AXIS)
    return jax.pmap(step, axis_name=PMAP_AXIS, donate_argnums=(0,), devices=devices)


def pmap_eval_step(loss_fn, model, *, preprocess=None, use_ema: bool = False,
                   devices=None) -> Callable:
    """The shared eval step under `jax.pmap`; metrics are global sums on every device."""
    step = make_eval_step(loss_fn, model, preprocess=preprocess, use_ema=use_ema,
                          axis_name=PMAP_AXIS)
    return jax.pmap(step, axis_name=PMAP_AXIS, devices=devices)


def replicate_for_pmap(tree, devices=None):
    """Copy a pytree onto each local device, stacked along a new leading axis."""
    devices = list(devices) if devices is not None else jax.local_devices()
    n = len(devices)
    sharding = NamedSharding(Mesh(np.array(devices), (PMAP_AXIS,)), PartitionSpec(PMAP_AXIS))

    def put(x):
        x = np.asarray(jax.device_get(x))
        return jax.device_put(np.broadcast_to(x, (n,) + x.shape), sharding)

    return jax.tree.map(put, tree)


def unreplicate(tree):
    """The first device's copy of a pmap-replicated pytree."""
    return jax.tree.map(lambda x: x[0], tree)


def split_for_pmap(batch, num_devices: int | None = None):
    """Reshape each leaf (batch, ...) -> (devices, batch / devices, ...) on the host."""
    n = num_devices or jax.local_device_count()

    def split(x):
        x = np.asarray(x)
        if x.ndim == 0 or x.shape[0] % n:
            size = x.shape[0] if x.ndim else 0
            raise UserError(f"batch size {size} is not divisible by the {n} devices; set "
                            f"--config.batch_size to a multiple of {n} (e.g. "
                            f"{_multiples(size, n)})")
        return x.reshape((n, x.shape[0] // n) + x.shape[1:])

    return jax.tree.map(split, batch)
