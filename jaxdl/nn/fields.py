"""Setting a field through a model and every model it holds: how a config key such as
`dtype` reaches TextToImage's encoder and UNet, and how the FLOP count turns off remat
and the fused attention kernel in whatever module has them."""

import dataclasses

import flax.linen as nn


def with_fields(model: nn.Module, **values) -> nn.Module:
    """`model` (and the models among its fields) with each of `values` set where the
    module has that field; modules without it are left as they are."""
    names = {f.name for f in dataclasses.fields(model)}
    updates = {name: with_fields(getattr(model, name), **values) for name in names
               if name != "parent" and isinstance(getattr(model, name, None), nn.Module)}
    updates.update({k: v for k, v in values.items() if k in names})
    return model.clone(**updates) if updates else model
