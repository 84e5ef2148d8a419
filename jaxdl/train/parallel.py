"""Training on a mesh of devices and hosts: placing state and batches, the same train step.

The path is `jax.jit` with `NamedSharding` over the mesh `('data', 'fsdp', 'tensor')`
(`jaxdl.train.mesh`, re-exported here): by default the train state is replicated on
every device, each batch is split along its leading axis, and XLA averages the
gradients across devices (and processes) itself; `jaxdl.train.sharding` splits the
state for FSDP and tensor parallelism:

    mesh = make_mesh()                             # every device of every process
    state = replicate_state(state, mesh)
    step = compile_sharded_train_step(make_train_step(loss_fn, model), mesh)
    state, metrics = step(state, shard_batch(host_batch, mesh))
    fit(state, step, loader, workdir=..., **fit_options(mesh))

Because the step's randomness is `fold_in(state.rng, state.step)` and jit semantics do
not depend on sharding (threefry is partitionable), dropout and augmentation draw the
same numbers on 1 or N devices: results agree up to float summation order.

Several hosts: call `initialize_distributed()` first (before anything touches a device),
then every process runs the same program; each one loads only its slice of every
global batch (`ArrayLoader(..., **process_shard())`) and `shard_batch` assembles the
global array with `jax.make_array_from_process_local_data`. The mesh orders devices by
process, so process p's slice is block p of the global batch, exactly the rows a
single process would have put there.

`pmap_train_step` / `pmap_eval_step` (`jaxdl.train.pmap`, re-exported here) wrap the
same step for code that still uses pmap.

On CPU with several devices, dispatching many sharded steps without waiting deadlocks
in the all-reduce (DESIGN, known traps): `needs_blocking(mesh)` says when to block on
each step, and `fit_options(mesh)` passes it to `fit` as `block_every_step`.
"""

import functools
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxdl.errors import UserError
from jaxdl.nn.sharding import activation_sharding
from jaxdl.train.mesh import BATCH_AXES, check_batch_size
from jaxdl.train.sharding import LOGICAL_AXIS_RULES


def place_training(state, train_step: Callable, mesh: Mesh | None, *,
                   compiler_options: dict | str | None = "auto", shardings=None,
                   rules=LOGICAL_AXIS_RULES):
    """`(state, compiled step, fit keywords)`: one device (`mesh` None) or on the mesh, so
    every experiment takes either path with the same three lines. `shardings` (a tree of
    `NamedSharding` like the state, `jaxdl.train.sharding.state_shardings`) shards the
    state; without it the state is replicated (data parallelism). `rules` place the
    models' activation constraints (`jaxdl.nn.sharding.constrain`)."""
    if mesh is None:
        from jaxdl.train.compile import compile_step

        return state, compile_step(train_step, compiler_options=compiler_options), {}
    shardings = replicated(mesh) if shardings is None else shardings
    step = compile_sharded_train_step(train_step, mesh, compiler_options=compiler_options,
                                      state_sharding=shardings, rules=rules)
    return jax.device_put(state, shardings), step, fit_options(mesh)


def local_copy(tree):
    """A (mesh) pytree -> a plain copy on this process's first device.

    For what runs per process after training (sampling, figures). A replicated or
    single-process tree needs no communication; arrays sharded across processes (FSDP
    over hosts) are gathered, so every process must call this together.
    """
    if any(isinstance(x, jax.Array) and not x.is_fully_addressable
           for x in jax.tree.leaves(tree)):
        from jax.experimental import multihost_utils

        tree = multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_put(jax.device_get(tree), jax.local_devices()[0])


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (params, optimizer state, metrics)."""
    return NamedSharding(mesh, PartitionSpec())


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Split along the leading (batch) axis over the mesh's batch axes (data, fsdp)."""
    axes = tuple(a for a in BATCH_AXES if a in mesh.axis_names)
    return NamedSharding(mesh, PartitionSpec(axes if len(axes) > 1 else axes[0]))


def needs_blocking(mesh: Mesh | None = None) -> bool:
    """True where each step must be waited on: CPU with more than one device in the mesh.

    (XLA:CPU deadlocks in the all-reduce after about 33 un-awaited sharded steps.)
    Without a mesh: CPU with more than one device visible.
    """
    devices = list(mesh.devices.flat) if mesh is not None else jax.devices()
    return devices[0].platform == "cpu" and len(devices) > 1


def replicate_state(state, mesh: Mesh):
    """Put every leaf of the (host or one-device) state on every device of the mesh.

    Also the template for restoring a checkpoint onto the mesh: `Checkpointer.restore_latest`
    restores into the sharding of its template's leaves.
    """
    return jax.device_put(state, replicated(mesh))


def shard_batch(batch, mesh: Mesh):
    """This process's part of a global batch -> global arrays split along `data`.

    Each process passes only its own rows (`batch_size / process_count` of them, as a
    loader built with `process_shard()` yields); with one process this is the whole batch.
    """
    sharding = data_sharding(mesh)
    procs = jax.process_count()
    leaves = jax.tree.leaves(batch)
    if leaves:
        local = np.shape(leaves[0])[0] if np.ndim(leaves[0]) else 0
        check_batch_size(local * procs, mesh)
        for leaf in leaves:
            if np.ndim(leaf) == 0 or np.shape(leaf)[0] != local:
                raise UserError(f"batch leaves must share the leading batch axis ({local}), got "
                                f"shape {np.shape(leaf)}; give every batch entry one row per "
                                "example")
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def make_put_batch(mesh: Mesh) -> Callable:
    """`put_batch` for `fit` / `evaluate`: host batch -> batch split over the mesh."""
    return lambda batch: shard_batch(batch, mesh)


def fit_options(mesh: Mesh) -> dict:
    """Keywords for `fit` on a mesh: `put_batch` and `block_every_step`."""
    return {"put_batch": make_put_batch(mesh), "block_every_step": needs_blocking(mesh)}


# --------------------------------------------------------------------------- jit + sharding


def compile_sharded_train_step(train_step: Callable, mesh: Mesh, *,
                               compiler_options: dict | str | None = "auto",
                               state_sharding=None, rules=LOGICAL_AXIS_RULES) -> Callable:
    """jit `train_step(state, batch) -> (state, metrics)` over the mesh.

    State in and out with `state_sharding` (default replicated; its buffers donated),
    batch split along the batch axes, metrics replicated (global sums), the models'
    activation constraints placed by `rules`. Build the step with `make_train_step` and
    no `axis_name`.
    """
    from jaxdl.train.compile import compile_step

    rep, data = replicated(mesh), data_sharding(mesh)
    state_sharding = rep if state_sharding is None else state_sharding
    return compile_step(traced_on(train_step, mesh, rules), donate=True,
                        compiler_options=compiler_options, in_shardings=(state_sharding, data),
                        out_shardings=(state_sharding, rep))


def compile_sharded_eval_step(eval_step: Callable, mesh: Mesh, *,
                              compiler_options: dict | None = None,
                              rules=LOGICAL_AXIS_RULES) -> Callable:
    """jit `eval_step(state, batch) -> out` over the mesh (nothing donated): the state
    as it lies (replicated or sharded), the batch split along the batch axes."""
    from jaxdl.train.compile import compile_step

    return compile_step(traced_on(eval_step, mesh, rules), donate=False,
                        compiler_options=compiler_options,
                        in_shardings=(None, data_sharding(mesh)),
                        out_shardings=replicated(mesh))


def traced_on(fn: Callable, mesh: Mesh, rules=LOGICAL_AXIS_RULES) -> Callable:
    """`fn` whose tracing happens inside `activation_sharding(mesh, rules)`, wherever jit
    traces it (first call, `.lower`), so the models' `constrain` calls take effect."""
    @functools.wraps(fn)
    def traced(*args, **kwargs):
        with activation_sharding(mesh, rules):
            return fn(*args, **kwargs)

    return traced
