"""Logical axis names on parameters, for sharding them (`jaxdl.train.sharding` maps the
names to mesh axes): `nn.with_logical_partitioning` with the names as arguments.

Names used by the models: `embed` (model width), `mlp` (MLP hidden width), `heads` and
`kv` (attention heads and head width), `vocab`, `position`, `norm` (norm scales). A
parameter without names is still split along `fsdp` by size (train.sharding).
"""

from collections.abc import Callable

import flax.linen as nn


def logical(init: Callable, *names: str | None) -> Callable:
    """`init` whose parameter carries these logical axis names (one per dimension)."""
    return nn.with_logical_partitioning(init, names)
