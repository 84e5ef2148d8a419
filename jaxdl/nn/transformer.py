"""Transformers: positional encodings, pre-norm encoder and decoder blocks, an
`EncoderDecoder` and a GPT-style `DecoderLM` (multi-head attention and its KV cache are
`jaxdl.nn.multihead`, the attention kernel `jaxdl.nn.attention`).

Positional encoding: attention is order-blind, so position is added to the token
embeddings, either the fixed sinusoids PE[p, 2i] = sin(p / 10000^(2i/d)),
PE[p, 2i+1] = cos(p / 10000^(2i/d)) or a learned table.

Blocks are pre-norm (x + f(LayerNorm(x))), as GPT-2 and most modern models are: more
stable to train than the original post-norm. Decoding with `decode=True` keeps each
self-attention layer's keys and values in the flax `cache` collection, so generating N
tokens costs N one-position steps instead of N passes over the growing prefix.
Attention weights are sown into the `intermediates` collection for inspection
(`apply(..., mutable=['intermediates'])`).

The stacks' options, GPT-2's choice first: `positional` learned | sinusoidal | rotary
(jaxdl.nn.rotary, applied inside self-attention); `norm` layernorm | rmsnorm; `qk_norm`;
`mlp` gelu | gelu_tanh (GPT-2's tanh approximation) | relu2 (ReLU squared, So et al.
2021) | swiglu (Shazeer 2020: silu(x W_g) * (x W_u)); `tie_embeddings`; `zero_init_out`
(each residual branch's output projection starts at zero, so every block starts as the
identity; modded-nanogpt); `logit_softcap`
(logits = c * tanh(logits / c), Gemma 2's bound on the output layer).
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.errors import UserError
from jaxdl.nn.feedforward import LN_EPS, MLPS, NORMS, MlpBlock, layer_norm  # noqa: F401
from jaxdl.nn.lm_head import HeadKernel, LMHead
from jaxdl.nn.multihead import (  # noqa: F401  (MultiHeadAttention and the masks live there)
    NEG_INF,
    MultiHeadAttention,
    causal_mask,
    padding_mask,
)
from jaxdl.nn.precision import layer_dtypes
from jaxdl.nn.remat import remat_block
from jaxdl.nn.sharding import constrain, logical, residual

POSITIONAL = ("learned", "sinusoidal", "rotary")


def sinusoidal_table(length: int, dim: int) -> np.ndarray:
    """(length, dim) sinusoids: PE[p, 2i] = sin(p / 10000^(2i/dim)), PE[p, 2i+1] = cos(...)."""
    pos = np.arange(length, dtype=np.float64)[:, None]
    rates = 1.0 / (10000.0 ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    table = np.zeros((length, dim), np.float64)
    table[:, 0::2] = np.sin(pos * rates)
    table[:, 1::2] = np.cos(pos * rates[: dim // 2])
    return table.astype(np.float32)


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
        if self.kind == "rotary":  # positions enter inside attention (MultiHeadAttention)
            return x
        if self.kind == "sinusoidal":
            table = jnp.asarray(sinusoidal_table(self.max_len, dim))
        elif self.kind == "learned":
            table = self.param("table", logical(nn.initializers.normal(0.02), "position",
                                                "embed"), (self.max_len, dim), self.param_dtype)
        else:
            raise UserError(f"unknown positional encoding {self.kind!r}; use one of "
                            f"{', '.join(POSITIONAL)}")
        return x + jax.lax.dynamic_slice_in_dim(table, offset, length)[None].astype(x.dtype)


class Embed(nn.Embed):
    """`nn.Embed` (the same parameter) whose table is gathered whole for the lookup, as
    FSDP gathers every weight for its use: the looked-up rows then come out split by
    batch, where a lookup into a table split by width would leave them split by width for
    XLA to undo (jaxdl.nn.sharding). Off the mesh this is `nn.Embed`'s lookup."""

    def __call__(self, inputs: jax.Array) -> jax.Array:
        (table,) = self.promote_dtype(self.embedding, dtype=self.dtype, inexact=False)
        return jnp.take(constrain(table, None, None), inputs, axis=0)


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
    norm: str = "layernorm"  # layernorm | rmsnorm
    mlp: str = "gelu"  # gelu | gelu_tanh | relu2 | swiglu
    rotary: bool = False  # rotary positions in self-attention
    qk_norm: bool = False
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
        ln = lambda name: layer_norm(self.use_bias, name, dt, self.norm)  # noqa: E731
        y = ln("ln_self")(x)
        y = MultiHeadAttention(self.num_heads, self.attention_dropout, name="self_attn",
                               rotary=self.rotary, qk_norm=self.qk_norm, **att)(
            y, y, mask, train=train, decode=decode, causal=self.causal)
        x = x + drop(y, deterministic=not train)
        if self.cross_attention:
            y = MultiHeadAttention(self.num_heads, self.attention_dropout, name="cross_attn",
                                   **att)(ln("ln_cross")(x), encoded, cross_mask, train=train)
            x = x + drop(y, deterministic=not train)
        return x + MlpBlock(self.mlp_dim, self.dropout, activation=self.mlp, name="mlp",
                            **kw)(ln("ln_mlp")(x), train=train)


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
    norm: str = "layernorm"  # layernorm | rmsnorm
    mlp: str = "gelu"  # gelu | gelu_tanh | relu2 | swiglu
    qk_norm: bool = False
    zero_init_out: bool = False  # residual branches' output projections start at zero
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
        embed = Embed(self.vocab_size, self.dim,
                         embedding_init=logical(nn.initializers.normal(0.02), "vocab", "embed"),
                         name="embed", **layer_dtypes(self))
        x = PositionalEncoding(self.max_len, self.positional, self.param_dtype, name="pos")(
            embed(tokens), offset)
        return embed, residual(nn.Dropout(self.dropout)(x, deterministic=not train))

    def _check_length(self, length: int):
        if length > self.max_len:
            raise UserError(f"sequence of {length} tokens is longer than the model's context of "
                            f"{self.max_len}; crop it or build the model with max_len >= {length}")

    def _blocks(self, x, mask, *, cross: bool, train: bool, decode: bool = False,
                causal: bool = False, **kw):
        init = nn.initializers.normal(0.02)  # GPT-2's init; residual outputs scaled by depth
        out_init = (nn.initializers.zeros if self.zero_init_out else
                    nn.initializers.normal(0.02 / np.sqrt(2 * max(self.num_layers, 1))))
        att_drop = self.dropout if self.attention_dropout is None else self.attention_dropout
        # remat needs positional arguments: (x, mask, encoded, cross_mask, train, decode)
        block_cls = remat_block(Block, "none" if decode else self.remat, static_argnums=(5, 6))
        for i in range(self.num_layers):
            x = block_cls(self.num_heads, self.mlp_dim or 4 * self.dim, self.dropout, att_drop,
                          cross_attention=cross, use_bias=self.use_bias, kernel_init=init,
                          out_init=out_init, causal=causal, attention_impl=self.attention_impl,
                          norm=self.norm, mlp=self.mlp, rotary=self.positional == "rotary",
                          qk_norm=self.qk_norm, **layer_dtypes(self), name=f"block{i}")(
                x, mask, kw.get("encoded"), kw.get("cross_mask"), train, decode)
        return layer_norm(self.use_bias, "ln_final", layer_dtypes(self), self.norm)(x)


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
    `features=True` returns `(hidden (batch, time, dim), LMHead)` instead of the logits,
    for a loss that applies the output layer itself (jaxdl.nn.lm_head).
    """

    tie_embeddings: bool = True
    cross_attention: bool = False
    logit_softcap: float = 0.0  # > 0: logits = c * tanh(logits / c)

    @nn.compact
    def __call__(self, tokens, encoded=None, cross_mask=None, *, train: bool = False,
                 decode: bool = False, features: bool = False):
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
        kernel = (embed.embedding.T if self.tie_embeddings else
                  HeadKernel(self.vocab_size, self.param_dtype, name="head")(self.dim))
        head = LMHead(kernel, self.dtype, self.logit_softcap)
        if features:  # the loss applies the head (jaxdl.tasks.chunked_loss)
            return x, head
        return head(x)


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

    def decode(self, tgt, encoded, src, *, train: bool = False, decode: bool = False,
               features: bool = False):
        return self.decoder(tgt, encoded, padding_mask(None, src != self.pad_id), train=train,
                            decode=decode, features=features)

    def __call__(self, src, tgt, *, train: bool = False, decode: bool = False,
                 features: bool = False):
        """Logits (batch, tgt_len, tgt_vocab); `features=True`: (hidden, LMHead) as
        `DecoderLM`'s."""
        return self.decode(tgt, self.encode(src, train=train), src, train=train, decode=decode,
                           features=features)


def init_cache(model: nn.Module, params, batch_size: int, length: int | None = None,
               **inputs):
    """Zeroed KV cache for `decode=True`, sized for `length` positions (default: the
    model's whole context; a generation that never fills it needs only prompt + new).

    DecoderLM: `init_cache(model, params, B)`; EncoderDecoder: also pass `src=` and
    `encoded=` (the cache then covers the target length).
    """
    if isinstance(model, EncoderDecoder):
        tgt = jnp.zeros((batch_size, model.max_tgt_len), jnp.int32)
        variables = model.init(jax.random.PRNGKey(0), inputs["src"], tgt, decode=True,
                               method=lambda m, s, t, decode: m.decode(
                                   t, inputs["encoded"], s, decode=decode))
    else:
        tokens = jnp.zeros((batch_size, length or model.max_len), jnp.int32)
        variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), tokens,
                                                      decode=True))
        variables = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), variables)
    del params  # the cache depends only on shapes; params are taken for a uniform call
    return variables["cache"]
