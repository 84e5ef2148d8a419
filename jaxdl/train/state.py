"""The train state: everything a step reads and writes, as one pytree of arrays.

`tx` is static (a pure optax transformation), so the state checkpoints as plain
arrays and a restored state is bitwise the one that was saved. The rng is a raw
uint32 key; per-step randomness is derived as `fold_in(rng, step)`, never carried.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxdl.errors import UserError


class TrainState(struct.PyTreeNode):
    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    batch_stats: Any = None  # mutable model state (BatchNorm); None when the model has none
    ema_params: Any = None  # exponential moving average of params; None unless asked for
    tx: optax.GradientTransformation = struct.field(pytree_node=False, default=None)
    ema_decay: float = struct.field(pytree_node=False, default=0.0)

    def apply_gradients(self, grads, **changes) -> "TrainState":
        """One optimizer update; the step counter and the EMA advance with it."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        ema = self.ema_params
        if ema is not None:
            ema = optax.incremental_update(params, ema, 1.0 - self.ema_decay)
        return self.replace(
            step=self.step + 1, params=params, opt_state=opt_state, ema_params=ema, **changes
        )


def create_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    rng: jax.Array,
    example_batch: Any,
    *,
    input_key: str | None = None,
    ema_decay: float | None = None,
    params: Any = None,
) -> TrainState:
    """Initialise params from one example input: an array, a tuple of the model's positional
    inputs (e.g. `(src, tgt)` for an encoder-decoder), or a batch dict with `input_key`
    naming the model's input in it.

    Modules are initialised with `train=False` so no dropout rng is needed. Parameters
    declared with logical axis names (`nn.with_logical_partitioning`) are unboxed: the
    state holds plain arrays, and `param_logical_specs` reads the names.

    `params` (a pretrained tree) replaces the drawn parameters; it must have the model's
    structure and shapes (a one-line error names the first leaf that differs).
    """
    init_rng, state_rng = jax.random.split(rng)
    variables = nn.unbox(_init(model, init_rng, example_batch, input_key))
    batch_stats = variables.get("batch_stats")
    if params is None:
        params = variables["params"]
    else:
        params = _matching(params, variables["params"])
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rng=state_rng,
        batch_stats=batch_stats,
        ema_params=None if not ema_decay else jax.tree.map(jnp.copy, params),
        tx=tx,
        ema_decay=float(ema_decay or 0.0),
    )


def _matching(given, drawn):
    """`given` as the model's params (its dtypes), after checking structure and shapes."""
    want = dict(jax.tree_util.tree_flatten_with_path(drawn)[0])
    have = dict(jax.tree_util.tree_flatten_with_path(given)[0])
    for path in sorted(set(want) | set(have), key=str):
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        if path not in have or path not in want:
            where = "the model" if path not in have else "the given params"
            raise UserError(f"parameter {name} is in {where} only; the pretrained params do "
                            "not fit this model's architecture")
        if tuple(jnp.shape(have[path])) != tuple(want[path].shape):
            raise UserError(f"parameter {name} has shape {tuple(jnp.shape(have[path]))} in the "
                            f"pretrained params and {tuple(want[path].shape)} in the model")
    return jax.tree.map(lambda g, d: jnp.asarray(g, d.dtype), given, drawn)


def param_logical_specs(model: nn.Module, example_batch: Any, *, input_key: str | None = None):
    """The params tree's logical axis names, one `PartitionSpec` of names per parameter
    (`PartitionSpec()` where a model declared none); shapes only, nothing computed."""
    boxed = jax.eval_shape(lambda: _init(model, jax.random.PRNGKey(0), example_batch,
                                         input_key))
    return nn.get_partition_spec(boxed["params"])


def _init(model, rng, example_batch, input_key):
    if isinstance(example_batch, dict):
        if input_key not in example_batch:
            raise UserError(f"the example batch is a dict (keys {', '.join(example_batch)}); "
                            "pass input_key= naming the model's input in it, or pass the "
                            "input array itself")
        inputs = (example_batch[input_key],)
    elif isinstance(example_batch, tuple):
        inputs = example_batch
    else:
        inputs = (example_batch,)
    return model.init({"params": rng}, *inputs, train=False)
