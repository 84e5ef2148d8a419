"""Sharded train state: logical axis names -> mesh axes, for FSDP and tensor parallelism.

The mesh has three axes (`jaxdl.train.mesh.make_mesh`):

    data    the batch is split over it; the state is replicated along it (spans hosts)
    fsdp    the batch is split over it too, and every large parameter and its optimizer
            moments are split along it (ZeRO-3 / FSDP: gathered for each use by XLA)
    tensor  Megatron tensor parallelism: attention heads and MLP width are split over it

Models name their parameters' axes with `nn.with_logical_partitioning` (the Transformers:
`embed`, `mlp`, `heads`, `kv`, `vocab`; conv nets, the MLP and the UNet: `conv_in`,
`conv_out`, `fc_in`, `fc_out`); `LOGICAL_AXIS_RULES` maps each name to mesh axes
(`--config.logical_axis_rules` replaces the table). Parameters without names, and named
ones none of whose axes reach `fsdp`, are split along `fsdp` on their largest dimension
that divides evenly (so FSDP works for every model: the RNN cells, a conv whose output
channels do not divide).
Parameters under `MIN_SHARD_SIZE` elements stay whole on every device (all-gathering them
costs more than they weigh). A dimension that does not divide its split is left whole
(a 65-character vocabulary over tensor=2; GPT-2 pads its vocabulary to 50304 for this),
except `heads` and `mlp`, where tensor parallelism is the point: `heads=4 cannot split
over tensor=8` is an error.

Optimizer moments and EMA parameters take their parameter's sharding (matched by the
longest tail of their path that is a parameter's path, and by shape); everything else in
the state (step, rng, counts, BatchNorm statistics) is replicated.
"""

import math

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxdl.errors import UserError

FSDP, TENSOR = "fsdp", "tensor"
LOGICAL_AXIS_RULES = (
    ("batch", ("data", "fsdp")),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("norm", None),
    ("position", None),
    ("conv_in", None),
    ("conv_out", "fsdp"),
    ("fc_in", "fsdp"),
    ("fc_out", None),
    # activations (jaxdl.nn.sharding.constrain): the batch split, the residual width whole
    ("length", None),
    ("act_embed", None),
    ("act_mlp", "tensor"),
    ("act_heads", "tensor"),
    ("act_kv", None),
    ("act_vocab", "tensor"),
)
MIN_SHARD_SIZE = 4096  # elements: smaller parameters (biases, norm scales) are replicated
STRUCTURAL = ("heads", "mlp")  # tensor parallelism must split these evenly, or refuse


def rules_of(rules) -> tuple:
    """`--config.logical_axis_rules` (pairs of (logical name, mesh axis or axes or None)),
    or the default table where it is empty."""
    rules = rules or LOGICAL_AXIS_RULES
    return tuple((str(name), tuple(axes) if isinstance(axes, list | tuple) else axes)
                 for name, axes in rules)


def param_sharding_specs(param_specs, param_shapes, mesh: Mesh, rules=LOGICAL_AXIS_RULES):
    """Mesh `PartitionSpec`s for the params tree, from its logical specs and shapes."""
    return jax.tree.map(lambda spec, shape: _mesh_spec(spec, shape.shape, mesh, rules),
                        param_specs, param_shapes,
                        is_leaf=lambda x: isinstance(x, PartitionSpec))


def state_shardings(abstract_state, param_specs, mesh: Mesh, rules=LOGICAL_AXIS_RULES):
    """A `NamedSharding` for every leaf of the train state (see the module docstring)."""
    specs = param_sharding_specs(param_specs, abstract_state.params, mesh, rules)
    by_path = {}
    for path, spec in jax.tree_util.tree_flatten_with_path(
            specs, is_leaf=lambda x: isinstance(x, PartitionSpec))[0]:
        by_path[_dict_keys(path)] = spec
    shapes = {_dict_keys(p): leaf.shape for p, leaf in
              jax.tree_util.tree_flatten_with_path(abstract_state.params)[0]}

    def leaf_sharding(path, leaf):
        keys = _dict_keys(path)
        # The longest tail of the leaf's dict keys that is a parameter's path: optimizer
        # wrappers key their inner states by dicts too (optax.multi_transform's
        # inner_states['muon'].mu['block0']...).
        for start in range(len(keys)):
            tail = keys[start:]
            if tail in by_path and shapes[tail] == tuple(leaf.shape):
                return NamedSharding(mesh, by_path[tail])
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree_util.tree_map_with_path(leaf_sharding, abstract_state)


def _dict_keys(path) -> tuple:
    return tuple(k.key for k in path if isinstance(k, jax.tree_util.DictKey))


def _mesh_spec(logical: PartitionSpec, shape: tuple, mesh: Mesh, rules) -> PartitionSpec:
    names = tuple(logical) + (None,) * (len(shape) - len(logical))
    axes = list(nn.logical_to_mesh_axes(names, rules)) if any(names) else [None] * len(shape)
    size = math.prod(shape)
    for dim, entry in enumerate(axes):
        group = _as_tuple(entry)
        split = math.prod(mesh.shape[a] for a in group)
        if TENSOR in group and shape[dim] % mesh.shape[TENSOR] and names[dim] in STRUCTURAL:
            raise UserError(f"{names[dim]}={shape[dim]} cannot split over "
                            f"tensor={mesh.shape[TENSOR]}; choose --config.mesh.tensor "
                            f"dividing {shape[dim]} (or a model whose {names[dim]} it divides)")
        if FSDP in group and (shape[dim] % split or size < MIN_SHARD_SIZE):
            group = tuple(a for a in group if a != FSDP)
        if shape[dim] % math.prod(mesh.shape[a] for a in group):
            group = ()  # e.g. a 65-character vocabulary over tensor=2: left whole
        axes[dim] = _entry(group)
    fsdp = mesh.shape.get(FSDP, 1)
    if fsdp > 1 and size >= MIN_SHARD_SIZE and not any(FSDP in _as_tuple(e) for e in axes):
        free = [d for d in np.argsort(shape)[::-1]
                if axes[d] is None and shape[d] % fsdp == 0]
        if free:  # the largest dimension still whole that divides: FSDP for any model
            axes[int(free[0])] = FSDP
    return PartitionSpec(*axes)


def _as_tuple(entry) -> tuple:
    if entry is None:
        return ()
    return tuple(entry) if isinstance(entry, tuple | list) else (entry,)


def _entry(group: tuple):
    if not group:
        return None
    return group[0] if len(group) == 1 else group


def state_bytes(state) -> dict:
    """`state_bytes_total` (one copy of every leaf) and `state_bytes_per_device` (the most
    any device holds, from `addressable_shards`: this process's devices)."""
    total, per_device = 0, {}
    for leaf in jax.tree.leaves(state):
        if not hasattr(leaf, "addressable_shards"):
            continue
        total += leaf.size * leaf.dtype.itemsize
        for shard in leaf.addressable_shards:
            per_device[shard.device.id] = per_device.get(shard.device.id, 0) + shard.data.nbytes
    return {"state_bytes_total": int(total),
            "state_bytes_per_device": int(max(per_device.values(), default=0))}
