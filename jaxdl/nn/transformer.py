"""Transformers: positional encodings, multi-head attention with a KV cache, pre-norm
encoder and decoder blocks, an `EncoderDecoder` and a GPT-style `DecoderLM`.

Attention (Vaswani et al. 2017): for each head, softmax(Q K^T / sqrt(d_head) + mask) V,
with Q, K, V linear maps of the inputs; heads are concatenated and mixed by a last linear
map. Self-attention takes Q, K, V from one sequence; cross-attention takes Q from the
decoder and K, V from the encoder's output. A causal mask hides future positions, a
padding mask hides padding tokens.

Positional encoding: attention is order-blind, so position is added to the token
embeddings, either the fixed sinusoids PE[p, 2i] = sin(p / 10000^(2i/d)),
PE[p, 2i+1] = cos(p / 10000^(2i/d)) or a learned table.

Blocks are pre-norm (x + f(LayerNorm(x))), as GPT-2 and most modern models are: more
stable to train than the original post-norm. Decoding with `decode=True` keeps each
self-attention layer's keys and values in the flax `cache` collection, so generating N
tokens costs N one-position steps instead of N passes over the growing prefix.
Attention weights are sown into the `intermediates` collection for inspection
(`apply(..., mutable=['intermediates'])`).
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
from jaxdl.nn.remat import remat_block
from jaxdl.nn.sharding import logical

NEG_INF = -1e9  # large finite negative: a fully masked row stays finite
LN_EPS = 1e-5  # PyTorch's LayerNorm epsilon (flax's default is 1e-6)


def sinusoidal_table(length: int, dim: int) -> np.ndarray:
    """(length, dim) sinusoids: PE[p, 2i] = sin(p / 10000^(2i/dim)), PE[p, 2i+1] = cos(...)."""
    pos = np.arange(length, dtype=np.float64)[:, None]
    rates = 1.0 / (10000.0 ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    table = np.zeros((length, dim), np.float64)
    table[:, 0::2] = np.sin(pos * rates)
    table[:, 1::2] = np.cos(pos * rates[: dim // 2])
    return table.astype(np.float32)


def causal_mask(length: int) -> jax.Array:
    """(1, 1, length, length) True where query i may attend to key j (j <= i)."""
    return jnp.tril(jnp.ones((length, length), bool))[None, None]


def padding_mask(query_valid: jax.Array | None, key_valid: jax.Array) -> jax.Array:
    """(batch, 1, q, k) True where the key is a real token (and the query too, if given)."""
    mask = key_valid[:, None, None, :]
    if query_valid is not None:
        mask = mask & query_valid[:, None, :, None]
    return mask


class PositionalEncoding(nn.Module):
    """Adds sinusoidal or learned positions to (batch, time, dim) embeddings from `offset` on."""

    max_len: int
    kind: str = "learned"  # 'learned' | 'sinusoidal'
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, offset=0):
        length, dim = x.shape[1], x.shape[2]
        if length > self.max_len:  # static: fails at trace time, before compiling
            raise UserError(f"sequence of {length} positions is longer than the positional "
                            f"encoding's max_len of {self.max_len}; crop it to {self.max_len} "
                            f"or build the model with max_len >= {length}")
        if self.kind == "sinusoidal":
            table = jnp.asarray(sinusoidal_table(self.max_len, dim))
        elif self.kind == "learned":
            table = self.param("table", logical(nn.initializers.normal(0.02), "position",
                                                "embed"), (self.max_len, dim), self.param_dtype)
        else:
            raise UserError(f"unknown positional encoding {self.kind!r}; use learned or sinusoidal")
        return x + jax.lax.dynamic_slice_in_dim(table, offset, length)[None].astype(x.dtype)


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
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, q_in, kv_in, mask=None, *, train: bool = False, decode: bool = False,
                 causal: bool = False):
        dim = q_in.shape[-1]
        if dim % self.num_heads:
            raise UserError(f"model width {dim} is not divisible by {self.num_heads} heads")
        head = (self.num_heads, dim // self.num_heads)
        dense = lambda name, init=self.kernel_init: nn.DenseGeneral(  # noqa: E731
            head, use_bias=self.use_bias, kernel_init=logical(init, "embed", "heads", "kv"),
            bias_init=logical(nn.initializers.zeros, "heads", "kv"), name=name,
            **layer_dtypes(self))
        # Projections on (tokens, dim) rows, as in MlpBlock: the same maths and parameters,
        # but XLA:CPU computes their weight gradients without transposing fusions.
        rows = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731
        q = dense("query")(rows(q_in)).reshape(*q_in.shape[:-1], *head)  # (b, q_len, h, d)
        k = dense("key")(rows(kv_in)).reshape(*kv_in.shape[:-1], *head)  # (b, k_len, h, d)
        v = dense("value")(rows(kv_in)).reshape(*kv_in.shape[:-1], *head)
        if decode:
            k, v, mask = self._cached(k, v, causal)
            causal = False  # the cache's mask is causal already
        if (train and self.dropout > 0) or self.is_mutable_collection("intermediates"):
            if causal:
                mask = causal_mask(q.shape[1]) if mask is None else mask & causal_mask(q.shape[1])
            out = self._explicit(q, k, v, mask, train=train)
        else:
            out = attend(q, k, v, mask, causal=causal, implementation=self.attention_impl)
        return nn.DenseGeneral(dim, axis=(-2, -1), use_bias=self.use_bias,
                               kernel_init=logical(self.out_init or self.kernel_init, "heads",
                                                   "kv", "embed"),
                               bias_init=logical(nn.initializers.zeros, "embed"), name="out",
                               **layer_dtypes(self))(out.reshape(-1, *head)).reshape(q_in.shape)

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


def layer_norm(use_bias: bool, name: str, dtypes: dict) -> nn.LayerNorm:
    """PyTorch's LayerNorm (eps 1e-5), its scale and bias named along `norm`."""
    return nn.LayerNorm(LN_EPS, use_bias=use_bias, name=name,
                        scale_init=logical(nn.initializers.ones, "norm"),
                        bias_init=logical(nn.initializers.zeros, "norm"), **dtypes)


class MlpBlock(nn.Module):
    hidden: int
    dropout: float = 0.0
    use_bias: bool = True
    kernel_init: Callable = nn.initializers.xavier_uniform()
    out_init: Callable | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        # On (tokens, dim) rather than (batch, time, dim): the same maths, but XLA:CPU then
        # computes the weight gradients without a slow transposing fusion (the decoder LM's
        # CPU train step is about 1.4x faster; benchmarks/).
        y = x.reshape(-1, x.shape[-1])
        y = nn.gelu(nn.Dense(self.hidden, use_bias=self.use_bias,
                             kernel_init=logical(self.kernel_init, "embed", "mlp"),
                             bias_init=logical(nn.initializers.zeros, "mlp"),
                             name="fc", **layer_dtypes(self))(y),
                    approximate=False)  # exact, as torch's nn.GELU
        y = nn.Dense(x.shape[-1], use_bias=self.use_bias,
                     kernel_init=logical(self.out_init or self.kernel_init, "mlp", "embed"),
                     bias_init=logical(nn.initializers.zeros, "embed"), name="proj",
                     **layer_dtypes(self))(y)
        return nn.Dropout(self.dropout)(y.reshape(x.shape), deterministic=not train)


class Block(nn.Module):
    """Pre-norm block: self-attention, optional cross-attention, MLP; each a residual branch."""

    num_heads: int
    mlp_dim: int
    dropout: float = 0.0
    attention_dropout: float = 0.0
    cross_attention: bool = False
    use_bias: bool = True
    kernel_init: Callable = nn.initializers.xavier_uniform()
    out_init: Callable | None = None
    causal: bool = False  # self-attention hides future positions
    attention_impl: str = "auto"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask=None, encoded=None, cross_mask=None, train: bool = False,
                 decode: bool = False):
        dt = layer_dtypes(self)
        kw = dict(use_bias=self.use_bias, kernel_init=self.kernel_init, out_init=self.out_init,
                  **dt)
        att = dict(attention_impl=self.attention_impl, **kw)
        drop = nn.Dropout(self.dropout)
        ln = lambda name: layer_norm(self.use_bias, name, dt)  # noqa: E731
        y = ln("ln_self")(x)
        y = MultiHeadAttention(self.num_heads, self.attention_dropout, name="self_attn", **att)(
            y, y, mask, train=train, decode=decode, causal=self.causal)
        x = x + drop(y, deterministic=not train)
        if self.cross_attention:
            y = MultiHeadAttention(self.num_heads, self.attention_dropout, name="cross_attn",
                                   **att)(ln("ln_cross")(x), encoded, cross_mask, train=train)
            x = x + drop(y, deterministic=not train)
        return x + MlpBlock(self.mlp_dim, self.dropout, name="mlp", **kw)(ln("ln_mlp")(x),
                                                                          train=train)


class _Stack(nn.Module):
    """Shared fields of the encoder and decoder stacks."""

    vocab_size: int
    num_layers: int = 4
    num_heads: int = 4
    dim: int = 128
    mlp_dim: int = 0  # 0: 4 * dim
    max_len: int = 64
    dropout: float = 0.0
    attention_dropout: float | None = None  # None: same as dropout
    positional: str = "learned"
    use_bias: bool = True
    remat: str = "none"  # none | block | full (jaxdl.nn.remat), in training; never when decoding
    attention_impl: str = "auto"  # auto | xla | cudnn (jaxdl.nn.attention)
    dtype: Any = jnp.float32  # compute dtype (jaxdl.nn.precision)
    param_dtype: Any = jnp.float32

    def _check_tokens(self, tokens):
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            fix = ("add a batch axis with tokens[None]" if tokens.ndim == 1 else
                   "encode text to integer ids with a vocabulary (jaxdl.data.text)"
                   if not jnp.issubdtype(tokens.dtype, jnp.integer) else
                   "reshape them to (batch, time)")
            raise UserError(f"{type(self).__name__} takes integer token ids (batch, time), got "
                            f"{tokens.dtype} {tuple(tokens.shape)}; {fix}")

    def _embed(self, tokens, offset=0, *, train: bool):
        self._check_tokens(tokens)
        embed = nn.Embed(self.vocab_size, self.dim,
                         embedding_init=logical(nn.initializers.normal(0.02), "vocab", "embed"),
                         name="embed", **layer_dtypes(self))
        x = PositionalEncoding(self.max_len, self.positional, self.param_dtype, name="pos")(
            embed(tokens), offset)
        return embed, nn.Dropout(self.dropout)(x, deterministic=not train)

    def _check_length(self, length: int):
        if length > self.max_len:
            raise UserError(f"sequence of {length} tokens is longer than the model's context of "
                            f"{self.max_len}; crop it or build the model with max_len >= {length}")

    def _blocks(self, x, mask, *, cross: bool, train: bool, decode: bool = False,
                causal: bool = False, **kw):
        init = nn.initializers.normal(0.02)  # GPT-2's init; residual outputs scaled by depth
        out_init = nn.initializers.normal(0.02 / np.sqrt(2 * self.num_layers))
        att_drop = self.dropout if self.attention_dropout is None else self.attention_dropout
        # remat needs positional arguments: (x, mask, encoded, cross_mask, train, decode)
        block_cls = remat_block(Block, "none" if decode else self.remat, static_argnums=(5, 6))
        for i in range(self.num_layers):
            x = block_cls(self.num_heads, self.mlp_dim or 4 * self.dim, self.dropout, att_drop,
                          cross_attention=cross, use_bias=self.use_bias, kernel_init=init,
                          out_init=out_init, causal=causal, attention_impl=self.attention_impl,
                          **layer_dtypes(self), name=f"block{i}")(
                x, mask, kw.get("encoded"), kw.get("cross_mask"), train, decode)
        return layer_norm(self.use_bias, "ln_final", layer_dtypes(self))(x)


class Encoder(_Stack):
    """src (batch, src_len) -> encoded (batch, src_len, dim); padding (== pad_id) masked out."""

    pad_id: int = 0

    @nn.compact
    def __call__(self, src, *, train: bool = False):
        self._check_tokens(src)
        self._check_length(src.shape[1])
        _, x = self._embed(src, train=train)
        mask = padding_mask(None, src != self.pad_id)
        return self._blocks(x, mask, cross=False, train=train)


class DecoderLM(_Stack):
    """GPT-style decoder: tokens (batch, time) -> next-token logits (batch, time, vocab).

    Causal self-attention only; the output layer shares the token embedding when
    `tie_embeddings` (as GPT-2 and nanoGPT do). With `decode=True` each call appends its
    tokens to the KV cache (initialise with `init_cache`) and positions continue from it.
    """

    tie_embeddings: bool = True
    cross_attention: bool = False

    @nn.compact
    def __call__(self, tokens, encoded=None, cross_mask=None, *, train: bool = False,
                 decode: bool = False):
        self._check_tokens(tokens)
        length = tokens.shape[1]
        offset = 0
        if decode:
            started = self.has_variable("cache", "position")
            position = self.variable("cache", "position", lambda: jnp.zeros((), jnp.int32))
            offset = position.value
            if started:
                position.value = offset + length
        else:
            self._check_length(length)
        embed, x = self._embed(tokens, offset, train=train)
        x = self._blocks(x, None, cross=self.cross_attention, train=train, decode=decode,
                         causal=True, encoded=encoded, cross_mask=cross_mask)
        if self.tie_embeddings:
            return embed.attend(x)
        return nn.Dense(self.vocab_size, use_bias=False, name="head",
                        kernel_init=logical(nn.initializers.lecun_normal(), "embed", "vocab"),
                        **layer_dtypes(self))(x)


class EncoderDecoder(nn.Module):
    """Encoder self-attention; decoder causal self-attention and cross-attention to the source.

    `__call__(src, tgt_in)` -> logits (batch, tgt_len, tgt_vocab) for teacher forcing;
    `encode` and `decode` are exposed for step-by-step generation and beam search.
    """

    src_vocab: int
    tgt_vocab: int
    num_layers: int = 3
    num_heads: int = 4
    dim: int = 128
    mlp_dim: int = 0
    max_src_len: int = 64
    max_tgt_len: int = 32
    dropout: float = 0.1
    positional: str = "sinusoidal"
    pad_id: int = 0
    remat: str = "none"  # none | block | full (jaxdl.nn.remat), both stacks
    attention_impl: str = "auto"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self):
        common = dict(num_layers=self.num_layers, num_heads=self.num_heads, dim=self.dim,
                      mlp_dim=self.mlp_dim, dropout=self.dropout, positional=self.positional,
                      remat=self.remat, attention_impl=self.attention_impl,
                      **layer_dtypes(self))
        self.encoder = Encoder(self.src_vocab, max_len=self.max_src_len, pad_id=self.pad_id,
                               **common)
        self.decoder = DecoderLM(self.tgt_vocab, max_len=self.max_tgt_len, cross_attention=True,
                                 tie_embeddings=False, **common)

    def encode(self, src, *, train: bool = False):
        return self.encoder(src, train=train)

    def decode(self, tgt, encoded, src, *, train: bool = False, decode: bool = False):
        return self.decoder(tgt, encoded, padding_mask(None, src != self.pad_id), train=train,
                            decode=decode)

    def __call__(self, src, tgt, *, train: bool = False, decode: bool = False):
        return self.decode(tgt, self.encode(src, train=train), src, train=train, decode=decode)


def init_cache(model: nn.Module, params, batch_size: int, **inputs):
    """Zeroed KV cache for `decode=True`, sized for the model's whole context.

    DecoderLM: `init_cache(model, params, B)`; EncoderDecoder: also pass `src=` and
    `encoded=` (the cache then covers the target length).
    """
    if isinstance(model, EncoderDecoder):
        tgt = jnp.zeros((batch_size, model.max_tgt_len), jnp.int32)
        variables = model.init(jax.random.PRNGKey(0), inputs["src"], tgt, decode=True,
                               method=lambda m, s, t, decode: m.decode(
                                   t, inputs["encoded"], s, decode=decode))
    else:
        tokens = jnp.zeros((batch_size, model.max_len), jnp.int32)
        variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), tokens,
                                                      decode=True))
        variables = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), variables)
    del params  # the cache depends only on shapes; params are taken for a uniform call
    return variables["cache"]
