"""The device mesh `('data', 'fsdp', 'tensor')` over every device of every process, how a
batch splits over it, and joining a multi-host run (`initialize_distributed`).

`jaxdl.train.parallel` places state and batches on the mesh and compiles steps over it;
`jaxdl.train.sharding` maps parameters to its axes.
"""

import math
import os
import sys

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

from jaxdl.errors import UserError

DATA, FSDP, TENSOR = "data", "fsdp", "tensor"  # the mesh axes (jaxdl.train.sharding)
MESH_AXES = (DATA, FSDP, TENSOR)
BATCH_AXES = (DATA, FSDP)  # batches are split over both; the state shards along fsdp

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
    _no_compilation_cache_across_cpu_processes()
    return True


def _no_compilation_cache_across_cpu_processes() -> None:
    """JAX writes its persistent compilation cache from process 0 only, so on a rerun process
    0 loads a step the other processes compile afresh; on CPU (jax 0.12) the two programs'
    collectives then wait for each other for ever in the first step (a 2-process FSDP rerun:
    stuck for 150 s, 12 s with the cache off). Multi-process CPU runs therefore compile
    without it, and say so once."""
    if jax.default_backend() != "cpu" or not jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_enable_compilation_cache", False)
    if jax.process_index() == 0:
        print("notice: the persistent compilation cache (JAX_COMPILATION_CACHE_DIR) is off for "
              "this multi-process CPU run: its processes would run different compiles of a "
              "step and wait for each other", file=sys.stderr, flush=True)


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
    so process p holds the p-th block of every global batch, `tensor` groups stay inside
    one host (fast interconnect), and `fsdp` x `tensor` groups fit inside one host or span
    whole hosts (`_check_hosts`); `data` spans hosts.
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
    if jax.process_count() > 1:
        _check_hosts(shape, jax.local_device_count())
    ordered = jax.make_mesh((n,), (DATA,), axis_types=(AxisType.Auto,),
                            devices=devices[:n]).devices.flat
    ordered = sorted(ordered, key=lambda d: d.process_index)  # stable: keeps ring order
    return Mesh(np.array(ordered).reshape(shape), MESH_AXES,
                axis_types=(AxisType.Auto,) * len(MESH_AXES))


def _check_hosts(shape: tuple, local: int) -> None:
    """Tensor groups must stay inside a host (they communicate every layer); an fsdp x
    tensor group either fits inside one host or spans whole hosts (FSDP over DCN, as
    MaxText's `dcn_fsdp_parallelism`: slower than ICI, but it fits models a host cannot)."""
    tensor, inner = shape[2], shape[1] * shape[2]
    if local % tensor:
        raise UserError(f"tensor={tensor} must fit inside one host's {local} devices; set "
                        f"--config.mesh.tensor to a divisor of {local}")
    if local % inner and inner % local:
        raise UserError(f"fsdp x tensor = {inner} devices must divide one host's {local} "
                        f"devices or be a multiple of them; put the rest on --config.mesh.data")


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


def run_mesh(batch_size: int, *, devices: int = 1, distributed: bool = False,
             data: int = -1, fsdp: int = 1, tensor: int = 1) -> Mesh | None:
    """The mesh a run's `devices` / `distributed` / `mesh.*` keys ask for, or None for the
    plain one-device path; the batch size is checked against it before anything
    compiles. `fsdp` or `tensor` above 1 (with `devices` left at 1) takes every device."""
    axes = {"data": data, "fsdp": fsdp, "tensor": tensor}
    sharded = axes != {"data": -1, "fsdp": 1, "tensor": 1}
    if devices == 1 and not distributed and not sharded:
        return None
    if distributed:
        initialize_distributed()
    mesh = make_mesh(None if devices in (0, 1) and (sharded or devices == 0) else devices,
                     **axes)
    check_batch_size(batch_size, mesh)
    return mesh


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
