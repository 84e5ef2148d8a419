"""The Transformer block's per-position parts: its norms (PyTorch's LayerNorm or an
RMSNorm) and its MLP (GELU, GPT-2's tanh GELU, ReLU squared or SwiGLU), each parameter
named along its logical axes for sharding."""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxdl.errors import UserError
from jaxdl.nn.precision import layer_dtypes
from jaxdl.nn.sharding import constrain, logical, residual

LN_EPS = 1e-5  # PyTorch's LayerNorm epsilon (flax's default is 1e-6)
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "gelu_tanh", "relu2", "swiglu")


def layer_norm(use_bias: bool, name: str, dtypes: dict, kind: str = "layernorm") -> nn.Module:
    """PyTorch's LayerNorm (eps 1e-5) or an RMSNorm (no centring, no bias; the same eps),
    the scale and bias named along `norm`."""
    scale = logical(nn.initializers.ones, "norm")
    if kind == "rmsnorm":
        return nn.RMSNorm(LN_EPS, name=name, scale_init=scale, **dtypes)
    if kind != "layernorm":
        raise UserError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)} "
                        "(--config.norm)")
    return nn.LayerNorm(LN_EPS, use_bias=use_bias, name=name, scale_init=scale,
                        bias_init=logical(nn.initializers.zeros, "norm"), **dtypes)


class MlpBlock(nn.Module):
    hidden: int
    dropout: float = 0.0
    use_bias: bool = True
    kernel_init: Callable = nn.initializers.xavier_uniform()
    out_init: Callable | None = None
    activation: str = "gelu"  # gelu | gelu_tanh | relu2 | swiglu
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        # On (tokens, dim) rather than (batch, time, dim): the same maths, but XLA:CPU then
        # computes the weight gradients without a slow transposing fusion (the decoder LM's
        # CPU train step is about 1.4x faster; benchmarks/).
        rows = x.reshape(-1, x.shape[-1])
        fc = lambda name: nn.Dense(  # noqa: E731
            self.hidden, use_bias=self.use_bias, kernel_init=logical(self.kernel_init, "embed",
                                                                     "mlp"),
            bias_init=logical(nn.initializers.zeros, "mlp"), name=name, **layer_dtypes(self))
        if self.activation == "gelu":
            y = nn.gelu(fc("fc")(rows), approximate=False)  # exact, as torch's nn.GELU
        elif self.activation == "gelu_tanh":  # GPT-2's (Hugging Face's "gelu_new")
            y = nn.gelu(fc("fc")(rows), approximate=True)
        elif self.activation == "relu2":
            y = jnp.square(nn.relu(fc("fc")(rows)))
        elif self.activation == "swiglu":
            y = nn.silu(fc("gate")(rows)) * fc("fc")(rows)
        else:
            raise UserError(f"unknown mlp {self.activation!r}; choose one of {', '.join(MLPS)} "
                            "(--config.mlp)")
        y = constrain(y, "batch", "act_mlp")  # (tokens, hidden): the hidden on `tensor`
        y = nn.Dense(x.shape[-1], use_bias=self.use_bias,
                     kernel_init=logical(self.out_init or self.kernel_init, "mlp", "embed"),
                     bias_init=logical(nn.initializers.zeros, "embed"), name="proj",
                     **layer_dtypes(self))(y)
        return nn.Dropout(self.dropout)(residual(y.reshape(x.shape)), deterministic=not train)
