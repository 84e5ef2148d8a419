"""Multi-head attention with a KV cache, and the causal and padding masks.

Attention (Vaswani et al. 2017): for each head, softmax(Q K^T / sqrt(d_head) + mask) V,
with Q, K, V linear maps of the inputs; heads are concatenated and mixed by a last linear
map. Self-attention takes Q, K, V from one sequence; cross-attention takes Q from the
decoder and K, V from the encoder's output. A causal mask hides future positions, a
padding mask hides padding tokens. Decoding with `decode=True` keeps the keys and values
in the flax `cache` collection.

Options of the modern decoders (jaxdl.nn.transformer): `rotary` rotates queries and keys
by their positions (jaxdl.nn.rotary; the cache's index gives them when decoding), and
`qk_norm` RMS-normalises each head's query and key before the dot product (bounded
logits, so higher learning rates stay stable; Dehghani et al. 2023, modded-nanogpt).
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.errors import UserError
from jaxdl.nn.attention import attend
from jaxdl.nn.precision import layer_dtypes
from jaxdl.nn.rotary import rotate
from jaxdl.nn.sharding import constrain, logical, residual

NEG_INF = -1e9  # large finite negative: a fully masked row stays finite


def causal_mask(length: int) -> jax.Array:
    """(1, 1, length, length) True where query i may attend to key j (j <= i)."""
    return jnp.tril(jnp.ones((length, length), bool))[None, None]


def padding_mask(query_valid: jax.Array | None, key_valid: jax.Array) -> jax.Array:
    """(batch, 1, q, k) True where the key is a real token (and the query too, if given)."""
    mask = key_valid[:, None, None, :]
    if query_valid is not None:
        mask = mask & query_valid[:, None, :, None]
    return mask


class Projection(nn.Module):
    """One of attention's input maps as parameters, not applied: the kernel (dim, heads,
    head_dim) and bias (heads, head_dim) that `nn.DenseGeneral((heads, head_dim))` would
    make, with the same names, initial values and logical axes, so checkpoints and
    converters are unchanged while the maps that read one input run as one matmul."""

    features: tuple[int, int]  # (heads, head_dim)
    use_bias: bool = True
    kernel_init: Callable = nn.initializers.xavier_uniform()
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, dim: int):
        def init(rng, shape, dtype):  # DenseGeneral's: drawn as (dim, heads * head_dim)
            return jnp.reshape(self.kernel_init(rng, (shape[0], int(np.prod(shape[1:]))),
                                                dtype), shape)

        kernel = self.param("kernel", logical(init, "embed", "heads", "kv"),
                            (dim, *self.features), self.param_dtype)
        bias = (self.param("bias", logical(nn.initializers.zeros, "heads", "kv"), self.features,
                           self.param_dtype) if self.use_bias else None)
        return kernel, bias


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention; `decode=True` uses and fills a KV cache.

    `causal=True` hides future positions (as a mask would, but a fused kernel can skip
    them); `mask` hides more (padding, the cache's unwritten slots). The attention itself
    is `jaxdl.nn.attention.attend` (`attention_impl`: auto | xla | cudnn); the explicit
    einsum-softmax path runs where its weights are needed: attention dropout in training,
    or a caller that asks for them with `mutable=['intermediates']` (they are sown there).
    """

    num_heads: int
    dropout: float = 0.0
    use_bias: bool = True
    kernel_init: Callable = nn.initializers.xavier_uniform()
    out_init: Callable | None = None
    attention_impl: str = "auto"
    rotary: bool = False  # rotate q and k by position (self-attention only)
    qk_norm: bool = False  # RMSNorm on each head's q and k
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, q_in, kv_in, mask=None, *, train: bool = False, decode: bool = False,
                 causal: bool = False):
        dim = q_in.shape[-1]
        if dim % self.num_heads:
            raise UserError(f"model width {dim} is not divisible by {self.num_heads} heads")
        head = (self.num_heads, dim // self.num_heads)
        projection = lambda name, x: Projection(  # noqa: E731
            head, self.use_bias, self.kernel_init, self.param_dtype, name=name)(x.shape[-1])
        if q_in is kv_in:  # self-attention: Q, K and V in one matmul
            q, k, v = self._project(q_in, [projection(n, q_in) for n in ("query", "key",
                                                                            "value")])
        else:  # cross-attention: Q from the queries, K and V together from the keys
            (q,) = self._project(q_in, [projection("query", q_in)])
            k, v = self._project(kv_in, [projection(n, kv_in) for n in ("key", "value")])
        if self.qk_norm:
            q, k = (nn.RMSNorm(1e-6, name=f"{n}_norm", scale_init=logical(
                nn.initializers.ones, "norm"), **layer_dtypes(self))(x)
                for n, x in (("query", q), ("key", k)))
        if self.rotary:
            start = (self.get_variable("cache", "cache_index") if decode and
                     self.has_variable("cache", "cache_index") else 0)
            positions = start + jnp.arange(q.shape[1])
            q, k = rotate(q, positions), rotate(k, positions)
        if decode:
            k, v, mask = self._cached(k, v, causal)
            causal = False  # the cache's mask is causal already
        if (train and self.dropout > 0) or self.is_mutable_collection("intermediates"):
            if causal:
                mask = causal_mask(q.shape[1]) if mask is None else mask & causal_mask(q.shape[1])
            out = self._explicit(q, k, v, mask, train=train)
        else:
            out = attend(q, k, v, mask, causal=causal, implementation=self.attention_impl)
        out = nn.DenseGeneral(dim, axis=(-2, -1), use_bias=self.use_bias,
                              kernel_init=logical(self.out_init or self.kernel_init, "heads",
                                                  "kv", "embed"),
                              bias_init=logical(nn.initializers.zeros, "embed"), name="out",
                              **layer_dtypes(self))(out.reshape(-1, *head))
        return residual(out.reshape(q_in.shape))

    def _project(self, x, weights):
        """x (batch, len, dim) through the stacked (kernel, bias) pairs in one matmul:
        one (batch, len, heads, head_dim) array per pair, heads constrained to `tensor`.

        On (tokens, dim) rows, as in MlpBlock: the same maths, but XLA:CPU computes the
        weight gradients without transposing fusions. The kernels are stacked on a new
        axis, not concatenated along heads, so a split along `tensor` needs no exchange.
        """
        kernel = jnp.stack([w for w, _ in weights], axis=1)  # (dim, n, heads, head_dim)
        bias = jnp.stack([b for _, b in weights]) if self.use_bias else None
        rows, kernel, bias = nn.dtypes.promote_dtype(x.reshape(-1, x.shape[-1]), kernel, bias,
                                                     dtype=self.dtype)
        y = jax.lax.dot_general(rows, kernel, (((1,), (0,)), ((), ())))  # (tokens, n, h, d)
        if bias is not None:
            y = y + bias
        return [constrain(y[:, i].reshape(*x.shape[:-1], *y.shape[-2:]), "batch", "length",
                          "act_heads", "act_kv") for i in range(len(weights))]

    def _explicit(self, q, k, v, mask, *, train: bool):
        """softmax(Q K^T / sqrt(d) + mask) V with the weights at hand: sown, dropped out."""
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k,
                            preferred_element_type=jnp.float32) / np.sqrt(q.shape[-1])
        if mask is not None:
            logits = jnp.where(mask, logits, NEG_INF)
        weights = jax.nn.softmax(logits, axis=-1).astype(q.dtype)
        self.sow("intermediates", "attention", weights)
        weights = nn.Dropout(self.dropout)(weights, deterministic=not train)
        return jnp.einsum("bhqk,bkhd->bqhd", weights, v)

    def _cached(self, k, v, causal: bool):
        """Write this call's keys/values at the cache index; mask the positions not yet seen.

        Initialising with `decode=True` on a (batch, max_len) input sizes the cache.
        """
        initialised = self.has_variable("cache", "cached_key")
        ck = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
        cv = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
        index = self.variable("cache", "cache_index", lambda: jnp.zeros((), jnp.int32))
        max_len, q_len = ck.value.shape[1], k.shape[1]
        if not initialised:
            return k, v, causal_mask(q_len) if causal else None
        i = index.value
        ck.value = jax.lax.dynamic_update_slice(ck.value, k, (0, i, 0, 0))
        cv.value = jax.lax.dynamic_update_slice(cv.value, v, (0, i, 0, 0))
        index.value = i + q_len
        visible = jnp.arange(max_len)[None, :] <= i + jnp.arange(q_len)[:, None]
        return ck.value, cv.value, visible[None, None]
