"""A language model's output layer as data: logits = softcap(x @ kernel).

A decoder called with `features=True` returns its final hidden states and this head
instead of the logits, so a loss can apply the head itself, a chunk of positions at a
time (jaxdl.tasks.chunked_loss), and never hold every position's logits at once. The
plain path (`features=False`) calls the same head, so the two share one definition.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from jaxdl.nn.sharding import constrain, logical


@struct.dataclass
class LMHead:
    """The output layer: `kernel` (dim, vocab) as stored (the float32 master weights), the
    compute `dtype` it is cast to, and the soft cap (> 0: c * tanh(logits / c))."""

    kernel: jax.Array  # (dim, vocab)
    dtype: Any = struct.field(pytree_node=False, default=jnp.float32)
    softcap: float = struct.field(pytree_node=False, default=0.0)

    def __call__(self, x: jax.Array) -> jax.Array:
        """(..., dim) -> (..., vocab) logits: in `dtype`, or float32 when soft-capped."""
        logits = jax.lax.dot_general(x.astype(self.dtype), self.kernel.astype(self.dtype),
                                     (((x.ndim - 1,), (0,)), ((), ())))
        if logits.ndim == 3:  # (batch, length, vocab): the vocabulary on `tensor`
            logits = constrain(logits, "batch", "length", "act_vocab")
        return self.cap(logits)

    def cap(self, logits: jax.Array) -> jax.Array:
        """The soft cap, in float32 (the loss's softmax is); the identity when off."""
        if self.softcap <= 0:
            return logits
        return self.softcap * jnp.tanh(logits.astype(jnp.float32) / self.softcap)


class HeadKernel(nn.Module):
    """An untied output layer's kernel (dim, vocab): the parameter `nn.Dense(vocab,
    use_bias=False)` would make (same name, init and logical axes), returned, not applied."""

    vocab_size: int
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, dim: int) -> jax.Array:
        return self.param("kernel", logical(nn.initializers.lecun_normal(), "embed", "vocab"),
                          (dim, self.vocab_size), self.param_dtype)
