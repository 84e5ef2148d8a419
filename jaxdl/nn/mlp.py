"""Multilayer perceptron and the activation registry.

An MLP is input -> hidden layers (Dense + activation) -> output layer (Dense, no
activation: losses take logits). Activations are looked up by name so configs
and command lines can choose them:

    sigmoid  1 / (1 + e^-x)        squashes to (0, 1); saturates, so gradients vanish
    tanh     (e^x - e^-x)/(e^x + e^-x)  zero-centred (-1, 1); also saturates
    relu     max(0, x)             no saturation for x > 0; the default for deep nets
    softmax  e^x_i / sum_j e^x_j   turns a vector into a distribution (output layers)
    gelu     x * Phi(x)            smooth relu used by Transformers
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import UserError
from jaxdl.nn.precision import layer_dtypes
from jaxdl.nn.sharding import dense

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": nn.sigmoid,
    "tanh": nn.tanh,
    "relu": nn.relu,
    "softmax": nn.softmax,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "identity": lambda x: x,
}


def get_activation(name: str | Callable) -> Callable[[jax.Array], jax.Array]:
    """Resolve an activation by name (or pass a callable through)."""
    if callable(name):
        return name
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise UserError(
            f"unknown activation {name!r}; choose one of {', '.join(sorted(ACTIVATIONS))}"
        ) from None


class MLP(nn.Module):
    """Dense layers; `features[-1]` is the output width and gets no activation."""

    features: Sequence[int]
    activation: str | Callable = "relu"
    dropout: float = 0.0
    dtype: Any = jnp.float32  # compute dtype (jaxdl.nn.precision)
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        act = get_activation(self.activation)
        x = x.reshape((x.shape[0], -1))  # (batch, inputs)
        for i, width in enumerate(self.features):
            x = dense(width, name=f"dense{i}", **layer_dtypes(self))(x)
            if i < len(self.features) - 1:
                x = act(x)
                if self.dropout:
                    x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return x
