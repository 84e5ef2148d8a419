"""Mixed precision: a compute `dtype` and a `param_dtype` on every model.

Every jaxdl model has the two fields flax's layers have: `dtype` is what activations and
matmuls run in, `param_dtype` what the parameters are stored in (the float32 master
weights; the update is applied to them in float32). With `dtype=bfloat16`:

- matmuls and convolutions take bfloat16 inputs and weights (cast on the fly); on TPUs,
  recent GPUs and CPUs with AMX they run at bfloat16 rate and move half the bytes;
- softmax (attention, losses), the losses themselves and normalisation statistics
  (flax's LayerNorm/GroupNorm/BatchNorm reduce in float32) stay float32, because
  exponentials and sums of many terms lose too much in bfloat16's 8-bit mantissa;
- gradients come back in `param_dtype` (float32), so the optimizer is unchanged.

`with_dtype(model, dtype)` sets the compute dtype of a model and of every model it holds
as a field (TextToImage's encoder and UNet), which is how `--config.dtype` reaches every
recipe's model.
"""

import flax.linen as nn
import jax.numpy as jnp

from jaxdl.errors import UserError
from jaxdl.nn.fields import with_fields

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def dtype_of(name: str):
    """'float32' | 'bfloat16' -> the jnp dtype."""
    if name not in DTYPES:
        raise UserError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)} "
                        "(--config.dtype)")
    return DTYPES[name]


def layer_dtypes(module: nn.Module) -> dict:
    """The keywords a flax layer inside `module` takes: its dtype and param_dtype."""
    return {"dtype": module.dtype, "param_dtype": module.param_dtype}


def with_dtype(model: nn.Module, dtype) -> nn.Module:
    """`model` (and the models among its fields) computing in `dtype`."""
    return with_fields(model, dtype=dtype)
