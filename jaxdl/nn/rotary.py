"""Rotary position embeddings (RoPE; Su et al. 2021), as LLaMA and modded-nanogpt use them.

Instead of adding a position vector to the token embedding, each attention head's query
and key are rotated by an angle proportional to their position: pair i of a head's
features (here the two halves, GPT-NeoX's layout) turns by `position * base^(-2i/d)`.
A query-key dot product then depends only on the distance between the two positions,
every layer sees position afresh, and nothing is learned or limited to a table's length.
"""

import jax
import jax.numpy as jnp

from jaxdl.errors import UserError


def rotate(x: jax.Array, positions: jax.Array, base: float = 10000.0) -> jax.Array:
    """x (batch, length, heads, d) rotated at `positions` (length,); in x's dtype, the
    angles computed in float32."""
    d = x.shape[-1]
    if d % 2:
        raise UserError(f"rotary embeddings need an even head width, got {d}; pick dim and "
                        "num_heads with dim / num_heads even")
    inv_freq = base ** (-jnp.arange(0, d, 2, dtype=jnp.float32) / d)
    angles = positions.astype(jnp.float32)[:, None] * inv_freq[None, :]  # (length, d/2)
    cos, sin = jnp.cos(angles)[None, :, None], jnp.sin(angles)[None, :, None]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)
