"""Data parallelism over devices and hosts: one `data` mesh axis, the same train step.

The main path is `jax.jit` with `NamedSharding`: the train state is replicated on every
device of a one-axis mesh `('data',)`, each batch is split along its leading axis, and
XLA averages the gradients across devices (and processes) itself:

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

`pmap_train_step` / `pmap_eval_step` wrap the same step for code that still uses pmap:
state with a leading device axis (`replicate_for_pmap` / `unreplicate`), batches
reshaped to (devices, per_device, ...) by `split_for_pmap`.

On CPU with several devices, dispatching many sharded steps without waiting deadlocks
in the all-reduce (DESIGN, known traps): `needs_blocking(mesh)` says when to block on
each step, and `fit_options(mesh)` passes it to `fit` as `block_every_step`.
"""

import math
import os
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxdl.errors import UserError
from jaxdl.train.step import make_eval_step, make_train_step

DATA, FSDP, TENSOR = "data", "fsdp", "tensor"  # the mesh axes (jaxdl.train.sharding)
MESH_AXES = (DATA, FSDP, TENSOR)
BATCH_AXES = (DATA, FSDP)  # batches are split over both; the state shards along fsdp
PMAP_AXIS = "batch"  # the axis name the pmap path reduces over

# --------------------------------------------------------------------------- multi-host


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None, **kwargs) -> bool:
    """Join the processes of a multi-host run; call it before anything touches a device.

    Arguments left out are read from `JAX_COORDINATOR_ADDRESS` (host:port of process 0),
    `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`; where none is set, JAX detects the cluster
    itself (Cloud TPU VMs, Slurm, Open MPI, Kubernetes), so TPU VMs need no arguments.
    On CPU or GPU machines give all three. Extra keywords go to `jax.distributed.initialize`
    (e.g. `coordinator_bind_address`, `initialization_timeout`). Returns True when this
    process is now part of a multi-process run, False for a single process (1 process
    asked for: nothing is started). Calling it again is a no-op.
    """
    if jax.distributed.is_initialized():
        return True
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    num_processes = _env_int("JAX_NUM_PROCESSES", num_processes)
    process_id = _env_int("JAX_PROCESS_ID", process_id)
    if num_processes == 1:
        return False
    try:
        jax.distributed.initialize(coordinator_address, num_processes, process_id, **kwargs)
    except ValueError as e:
        if "should be defined" not in str(e) and "must be defined" not in str(e):
            raise
        raise UserError(
            "no cluster detected to start a multi-process run "
            f"(coordinator_address={coordinator_address}, num_processes={num_processes}, "
            f"process_id={process_id}); set JAX_COORDINATOR_ADDRESS=host:port, "
            "JAX_NUM_PROCESSES and JAX_PROCESS_ID on every process") from None
    return True


def _env_int(name: str, value: int | None) -> int | None:
    if value is not None:
        return int(value)
    text = os.environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{name}={text!r} is not an integer; set it to a number") from None


def process_shard() -> dict:
    """Keywords for a loader to yield only this process's slice of every global batch."""
    return {"process_index": jax.process_index(), "process_count": jax.process_count()}


def is_main_process() -> bool:
    """Process 0 writes logs, figures and results; every process writes checkpoints."""
    return jax.process_index() == 0


# --------------------------------------------------------------------------- the mesh


def make_mesh(num_devices: int | None = None, *, data: int = -1, fsdp: int = 1,
              tensor: int = 1) -> Mesh:
    """A mesh `('data', 'fsdp', 'tensor')` over `num_devices` devices (None or 0: all).

    One axis size may be -1 (the devices left over; `data` by default), so
    `make_mesh()` is today's data parallelism over every device. Devices keep
    `jax.make_mesh`'s topology-aware order within a process and are grouped by process,
    so process p holds the p-th block of every global batch, and `fsdp` x `tensor`
    groups stay inside one host (fast interconnect) while `data` spans hosts.
    """
    devices = jax.devices()
    n = len(devices) if not num_devices else int(num_devices)
    if n < 0 or n > len(devices):
        raise UserError(f"asked for {n} devices but {len(devices)} "
                        f"{devices[0].platform.upper()} devices are visible; set "
                        f"--config.devices to at most {len(devices)} (0 for all)")
    if jax.process_count() > 1 and n != len(devices):
        raise UserError(f"with {jax.process_count()} processes the mesh must span all "
                        f"{len(devices)} devices, not {n}; set --config.devices=0")
    shape = mesh_shape(n, data, fsdp, tensor)
    inner = shape[1] * shape[2]
    if jax.process_count() > 1 and jax.local_device_count() % inner:
        raise UserError(f"fsdp x tensor = {inner} devices must fit inside one host's "
                        f"{jax.local_device_count()}; put the rest on --config.mesh.data")
    ordered = jax.make_mesh((n,), (DATA,), axis_types=(AxisType.Auto,),
                            devices=devices[:n]).devices.flat
    ordered = sorted(ordered, key=lambda d: d.process_index)  # stable: keeps ring order
    return Mesh(np.array(ordered).reshape(shape), MESH_AXES,
                axis_types=(AxisType.Auto,) * len(MESH_AXES))


def mesh_shape(n: int, data: int = -1, fsdp: int = 1, tensor: int = 1) -> tuple:
    """(data, fsdp, tensor) with one -1 filled from the `n` devices; a UserError naming
    the mesh when it does not fit them."""
    sizes = [int(data), int(fsdp), int(tensor)]
    text = lambda: "x".join("?" if v == -1 else str(v) for v in sizes)  # noqa: E731
    if sizes.count(-1) > 1 or any(v == 0 or v < -1 for v in sizes):
        raise UserError(f"mesh {text()} (data x fsdp x tensor): give positive sizes, at most "
                        "one -1 (the devices left over), e.g. --config.mesh.fsdp=8")
    known = math.prod(v for v in sizes if v != -1)
    if -1 in sizes:
        if n % known:
            raise UserError(f"mesh {text()} does not divide the {n} devices of this run; "
                            f"choose sizes whose product divides {n}")
        sizes[sizes.index(-1)] = n // known
    if math.prod(sizes) != n:
        raise UserError(f"mesh {text()} needs {math.prod(sizes)} devices, this run has {n}; "
                        "set --config.mesh.* (or --config.devices) to match")
    return tuple(sizes)


def setup_mesh(devices: int = 0, *, distributed: bool = False) -> Mesh:
    """An experiment's `--config.devices` / `--config.distributed`, as a mesh.

    `distributed` joins a multi-host run first (`initialize_distributed()`: call this
    before anything touches a device). `devices`: 0 for all devices of all processes,
    n for the first n (one process only).
    """
    if distributed:
        initialize_distributed()
    return make_mesh(devices or None)


def mesh_from_config(config) -> Mesh | None:
    """The mesh an experiment's `devices` / `distributed` / `mesh.*` keys ask for, or None
    for the plain one-device path; the batch size is checked against it before anything
    compiles. `mesh.fsdp` or `mesh.tensor` above 1 (with `devices` left at 1) takes every
    device."""
    m = config.get("mesh") or {}
    axes = {"data": m.get("data", -1), "fsdp": m.get("fsdp", 1), "tensor": m.get("tensor", 1)}
    sharded = axes != {"data": -1, "fsdp": 1, "tensor": 1}
    devices = config.get("devices", 1)
    if devices == 1 and not config.get("distributed", False) and not sharded:
        return None
    if config.get("distributed", False):
        initialize_distributed()
    mesh = make_mesh(None if devices in (0, 1) and (sharded or devices == 0) else devices,
                     **axes)
    check_batch_size(config.batch_size, mesh)
    return mesh


def place_training(state, train_step: Callable, mesh: Mesh | None, *,
                   compiler_options: dict | str | None = "auto", shardings=None):
    """`(state, compiled step, fit keywords)`: one device (`mesh` None) or on the mesh, so
    every experiment takes either path with the same three lines. `shardings` (a tree of
    `NamedSharding` like the state, `jaxdl.train.sharding.state_shardings`) shards the
    state; without it the state is replicated (data parallelism)."""
    if mesh is None:
        from jaxdl.train.compile import compile_step

        return state, compile_step(train_step, compiler_options=compiler_options), {}
    shardings = replicated(mesh) if shardings is None else shardings
    step = compile_sharded_train_step(train_step, mesh, compiler_options=compiler_options,
                                      state_sharding=shardings)
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


def batch_shards(mesh: Mesh) -> int:
    """How many ways a batch splits: data x fsdp (the tensor axis shares each slice)."""
    return math.prod(mesh.shape.get(a, 1) for a in BATCH_AXES)


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "batch_size") -> None:
    """A global batch must split evenly over the mesh's batch axes (and over processes)."""
    n = batch_shards(mesh)
    where = "devices" if n == mesh.devices.size else "batch shards of the mesh (data x fsdp)"
    if batch_size <= 0 or batch_size % n:
        raise UserError(f"{what.replace('_', ' ')} {batch_size} is not divisible by the {n} "
                        f"{where}; set --config.{what} to a multiple of {n} "
                        f"(e.g. {_multiples(batch_size, n)})")


def _multiples(size: int, n: int) -> str:
    below = (size // n) * n
    return f"{below} or {below + n}" if below > 0 else str(n)


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
                               state_sharding=None) -> Callable:
    """jit `train_step(state, batch) -> (state, metrics)` over the mesh.

    State in and out with `state_sharding` (default replicated; its buffers donated),
    batch split along the batch axes, metrics replicated (global sums). Build the step
    with `make_train_step` and no `axis_name`.
    """
    from jaxdl.train.compile import compile_step

    rep, data = replicated(mesh), data_sharding(mesh)
    state_sharding = rep if state_sharding is None else state_sharding
    return compile_step(train_step, donate=True, compiler_options=compiler_options,
                        in_shardings=(state_sharding, data),
                        out_shardings=(state_sharding, rep))


def compile_sharded_eval_step(eval_step: Callable, mesh: Mesh, *,
                              compiler_options: dict | None = None) -> Callable:
    """jit `eval_step(state, batch) -> out` over the mesh (nothing donated): the state
    as it lies (replicated or sharded), the batch split along the batch axes."""
    from jaxdl.train.compile import compile_step

    return compile_step(eval_step, donate=False, compiler_options=compiler_options,
                        in_shardings=(None, data_sharding(mesh)),
                        out_shardings=replicated(mesh))


# --------------------------------------------------------------------------- pmap


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
