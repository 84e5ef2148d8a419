"""A small UNet for denoising diffusion, conditioned on time and on text tokens.

    x (B, H, W, C), t (B,) int, context (B, L, D), context_mask (B, L) -> (B, H, W, C)

- **Time**: the sinusoidal table of `jaxdl.nn.transformer` (PE[t, 2i] = sin(t / 10000^(2i/d)),
  PE[t, 2i+1] = cos(...)) looked up at the integer step t, then a 2-layer MLP (swish) to
  `4 * channels[0]`; every residual block adds a linear map of it to its features. An
  optional `pooled` text vector (B, D) is projected and added to it, as GLIDE adds its
  final token's embedding, so every block sees the prompt.
- **Residual blocks**: GroupNorm -> swish -> conv3x3 -> + time -> GroupNorm -> swish ->
  dropout -> conv3x3 (zero-initialised, so each block starts as its skip path), plus a 1x1
  conv on the skip path when the width changes.
- **Down and up paths**: level i runs at resolution H / 2^i with `channels[i]` features;
  `num_res_blocks` blocks per level on the way down (each output kept as a skip), a strided
  conv between levels; on the way up `num_res_blocks + 1` blocks per level, each taking
  the matching skip concatenated on channels, nearest-neighbour upsampling + conv (to the
  next level's width) between levels. The middle (lowest resolution) is res ->
  self-attention -> cross-attention -> res.
- **Attention**: self-attention over the H*W positions at `attention_levels` (the lowest,
  8x8 for 32x32 inputs, by default) and cross-attention from image positions (queries) to
  the text tokens (keys and values, padding masked) at `cross_attention_levels`; both reuse
  `jaxdl.nn.multihead.MultiHeadAttention`, with a zero-initialised output map.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import UserError
from jaxdl.nn.multihead import MultiHeadAttention, padding_mask
from jaxdl.nn.precision import layer_dtypes
from jaxdl.nn.remat import remat_block
from jaxdl.nn.sharding import conv, dense
from jaxdl.nn.transformer import sinusoidal_table

zeros = nn.initializers.zeros


def time_embedding(t: jax.Array, dim: int, num_timesteps: int) -> jax.Array:
    """(B,) integer steps in [0, num_timesteps) -> (B, dim) sinusoids (the Transformer's table)."""
    table = jnp.asarray(sinusoidal_table(num_timesteps, dim))
    return table[jnp.clip(t.astype(jnp.int32), 0, num_timesteps - 1)]


class ResBlock(nn.Module):
    features: int
    groups: int = 8
    dropout: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, temb, train: bool = False):
        dt = layer_dtypes(self)
        h = conv(self.features, (3, 3), name="conv1", **dt)(
            nn.swish(nn.GroupNorm(self.groups, name="norm1", **dt)(x)))
        h = h + dense(self.features, name="time", **dt)(nn.swish(temb))[:, None, None, :]
        h = nn.swish(nn.GroupNorm(self.groups, name="norm2", **dt)(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = conv(self.features, (3, 3), kernel_init=zeros, name="conv2", **dt)(h)
        if x.shape[-1] != self.features:
            x = conv(self.features, (1, 1), name="skip", **dt)(x)
        return x + h


class AttentionBlock(nn.Module):
    """Residual attention over the H*W positions: self (context None) or cross to `context`."""

    num_heads: int = 4
    groups: int = 8
    attention_impl: str = "auto"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, context=None, context_mask=None):
        b, h, w, c = x.shape
        dt = layer_dtypes(self)
        if context is None:
            y = nn.GroupNorm(self.groups, name="norm", **dt)(x).reshape(b, h * w, c)
            kv, mask = y, None
        else:
            y = nn.LayerNorm(name="norm", **dt)(x).reshape(b, h * w, c)
            kv = context
            mask = None if context_mask is None else padding_mask(None, context_mask)
        y = MultiHeadAttention(self.num_heads, out_init=zeros, attention_impl=self.attention_impl,
                               name="attn", **dt)(y, kv, mask)
        return x + y.reshape(b, h, w, c)


class UNet(nn.Module):
    channels: Sequence[int] = (32, 64, 64)
    num_res_blocks: int = 1
    attention_levels: Sequence[int] = (2,)
    cross_attention_levels: Sequence[int] = (1, 2)
    num_heads: int = 4
    groups: int = 8
    dropout: float = 0.0
    num_timesteps: int = 1000
    remat: str = "none"  # none | block | full (jaxdl.nn.remat): res and attention blocks
    attention_impl: str = "auto"  # auto | xla | cudnn (jaxdl.nn.attention)
    dtype: Any = jnp.float32  # compute dtype (jaxdl.nn.precision)
    param_dtype: Any = jnp.float32

    def _check(self, x, context):
        levels = len(self.channels)
        factor = 2 ** (levels - 1)
        if x.ndim != 4 or x.shape[1] % factor or x.shape[2] % factor:
            raise UserError(f"UNet with {levels} levels needs images (batch, H, W, C) with H and "
                            f"W divisible by {factor}, got {tuple(x.shape)}; pad the images "
                            f"(28x28 -> 32x32) or use fewer channels levels")
        bad = [c for c in self.channels if c % self.groups]
        if bad:
            raise UserError(f"UNet channels {tuple(self.channels)} must be divisible by "
                            f"groups={self.groups}; change --config.channels or groups")
        if context is None and self.cross_attention_levels:
            raise UserError("this UNet cross-attends to text: pass context (B, L, D) tokens")

    @nn.compact
    def __call__(self, x, t, context=None, context_mask=None, pooled=None, *,
                 train: bool = False):
        self._check(x, context)
        ch0 = self.channels[0]
        dt = layer_dtypes(self)
        temb = time_embedding(t, ch0, self.num_timesteps)
        temb = dense(4 * ch0, name="time_mlp2", **dt)(
            nn.swish(dense(4 * ch0, name="time_mlp1", **dt)(temb)))
        if pooled is not None:  # a global text vector joins the time embedding (GLIDE)
            temb = temb + dense(4 * ch0, name="pooled_proj", **dt)(pooled)
        res_cls = remat_block(ResBlock, self.remat, static_argnums=(3,))  # (x, temb, train)
        attn_cls = remat_block(AttentionBlock, self.remat)
        res = lambda f, name: (lambda h, temb, train: res_cls(  # noqa: E731
            f, self.groups, self.dropout, name=name, **dt)(h, temb, train))
        attn = lambda name: attn_cls(self.num_heads, self.groups,  # noqa: E731
                                     self.attention_impl, name=name, **dt)

        def attend(h, level, prefix):
            if level in self.attention_levels:
                h = attn(f"{prefix}_attn")(h)
            if level in self.cross_attention_levels:
                h = attn(f"{prefix}_cross")(h, context, context_mask)
            return h

        h = conv(ch0, (3, 3), name="conv_in", **dt)(x)
        skips = [h]
        last = len(self.channels) - 1
        for i, ch in enumerate(self.channels):
            for j in range(self.num_res_blocks):
                h = attend(res(ch, f"down{i}_res{j}")(h, temb, train=train), i, f"down{i}_{j}")
                skips.append(h)
            if i != last:
                h = conv(ch, (3, 3), strides=(2, 2), name=f"down{i}_pool", **dt)(h)
                skips.append(h)
        h = res(self.channels[-1], "mid_res1")(h, temb, train=train)
        h = attn("mid_attn")(h)
        if self.cross_attention_levels:
            h = attn("mid_cross")(h, context, context_mask)
        h = res(self.channels[-1], "mid_res2")(h, temb, train=train)
        for i in reversed(range(len(self.channels))):
            ch = self.channels[i]
            for j in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, skips.pop()], axis=-1)
                h = attend(res(ch, f"up{i}_res{j}")(h, temb, train=train), i, f"up{i}_{j}")
            if i != 0:
                b, hh, ww, c = h.shape
                h = jax.image.resize(h, (b, 2 * hh, 2 * ww, c), method="nearest")
                h = conv(self.channels[i - 1], (3, 3), name=f"up{i}_upsample", **dt)(h)
        h = nn.swish(nn.GroupNorm(self.groups, name="norm_out", **dt)(h))
        return conv(x.shape[-1], (3, 3), kernel_init=zeros, name="conv_out", **dt)(h)
