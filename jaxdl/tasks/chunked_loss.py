"""Cross-entropy through the output layer, a chunk of positions at a time.

The plain path computes every position's logits (batch, time, vocab), casts them to
float32 and takes the softmax cross-entropy: at GPT-2-small batch 64 x 1024 those are
13 GB of float32, written and read several times per step. Here the head and the loss run
together over chunks of positions under a custom VJP, as Levanter's blockwise
cross-entropy and Liger's fused linear cross-entropy do. The loss is the last operation
and its incoming gradient is a scalar, so the forward pass of training computes each
chunk's logits, loss and both gradients (the hidden states' and the kernel's) at once;
the backward pass only scales them. No (tokens, vocab) array outlives its chunk, and the
matmuls are the plain path's three (logits, d hidden, d kernel), none recomputed.

Chunks run along time, so every chunk keeps the whole batch and its sharding over the
mesh's batch axes. Logits, softmax and the kernel's gradient accumulate in float32; the
matmuls take the head's compute dtype.

`loss_impl`: `plain` (the logits, then optax's cross-entropy), `chunked` (this), `auto`
(chunked where the batch's float32 logits would reach `AUTO_MIN_BYTES`; docs/accelerators.md, Mixed
precision and accelerators, has the measurements behind it).
"""

import functools

import jax
import jax.numpy as jnp

from jaxdl.errors import UserError
from jaxdl.nn.lm_head import LMHead

IMPLEMENTATIONS = ("auto", "plain", "chunked")
# Positions per chunk (a batch x time slice): 824 MB of float32 logits at GPT-2's 50,304
# tokens. On XLA:CPU chunks of 1,024 and 4,096 positions ran alike.
CHUNK_TOKENS = 4096
# `auto` chunks from this size of float32 logits per step. Measured on XLA:CPU
# (`python -m benchmarks.memory --loss --batch 16 --seq 512`: nanoGPT's architecture,
# 4 x 128, 8,192 tokens a step; 2-core AMD EPYC, 2026-12-04): the whole train step 1.12x
# faster at a 50,304 vocabulary (temporary memory 4,596 -> 2,980 MB), 1.09x at 8,192
# (1,815 -> 1,557 MB), level at 1,024 (34 MB of logits), 2% slower at 65 characters
# (2 MB). Below this size (the character models) the plain path stays.
AUTO_MIN_BYTES = 8 << 20


def resolve(loss_impl: str, num_tokens: int, vocab: int) -> str:
    """`plain` or `chunked`: what `auto` stands for at this batch (others: themselves)."""
    if loss_impl not in IMPLEMENTATIONS:
        raise UserError(f"unknown loss_impl {loss_impl!r}; choose one of "
                        f"{', '.join(IMPLEMENTATIONS)} (--config.loss_impl)")
    if loss_impl != "auto":
        return loss_impl
    return "chunked" if 4 * num_tokens * vocab >= AUTO_MIN_BYTES else "plain"


def cross_entropy(hidden, head, targets, weights, *, chunk_tokens: int | None = None):
    """(sum over tokens of weights * cross-entropy, hits (batch, time): argmax == target).

    hidden (batch, time, dim), targets (batch, time) int, weights (batch, time) float;
    `head` a `jaxdl.nn.lm_head.LMHead`. Differentiable in `hidden` and `head.kernel`.
    `chunk_tokens` (default `CHUNK_TOKENS`): at most this many positions a chunk.
    """
    b, t = targets.shape
    span = _span(t, max(1, (chunk_tokens or CHUNK_TOKENS) // max(b, 1)))
    return _chunked(hidden, head.kernel, targets, weights.astype(jnp.float32), head.dtype,
                    float(head.softcap), span)


def _span(length: int, most: int) -> int:
    """The largest divisor of `length` that is at most `most`: positions per chunk."""
    return max(d for d in range(1, min(length, most) + 1) if length % d == 0)


def _chunks(x, span):
    """(batch, time, ...) -> (time // span, batch, span, ...): scanned along time."""
    b, t = x.shape[:2]
    return jnp.moveaxis(x.reshape(b, t // span, span, *x.shape[2:]), 1, 0)


def _unchunk(x):
    n, b, span = x.shape[:3]
    return jnp.moveaxis(x, 0, 1).reshape(b, n * span, *x.shape[3:])


def _scan(hidden, kernel, targets, weights, dtype, softcap, span, *, grads: bool):
    k = kernel.astype(dtype)  # cast once, not in every chunk
    head = LMHead(k, dtype, softcap)  # the plain path's head, applied to a chunk
    vocab = kernel.shape[1]

    def body(dk, chunk):
        h, y, w = chunk  # (batch, span, dim), (batch, span), (batch, span)
        # logits in the compute dtype as the plain path's (half the bytes of float32 in
        # bfloat16), soft-capped; float32 for the softmax
        z = head(h).astype(jnp.float32)
        lse = jax.nn.logsumexp(z, axis=-1)
        z_y = jnp.take_along_axis(z, y[..., None], axis=-1)[..., 0]
        loss = jnp.sum((lse - z_y) * w)
        hit = jnp.argmax(z, -1) == y
        if not grads:
            return dk, (loss, hit)
        dz = (jnp.exp(z - lse[..., None]) - jax.nn.one_hot(y, vocab, dtype=jnp.float32))
        dz = dz * w[..., None]
        if softcap > 0:
            dz = dz * (1.0 - jnp.square(z / softcap))
        dz = dz.astype(dtype)
        dh = jnp.einsum("bsv,dv->bsd", dz, k, preferred_element_type=jnp.float32)
        dk = dk + jnp.einsum("bsd,bsv->dv", h.astype(dtype), dz,
                             preferred_element_type=jnp.float32)
        return dk, (loss, hit, dh)

    xs = (_chunks(hidden, span), _chunks(targets, span), _chunks(weights, span))
    dk0 = jnp.zeros(kernel.shape, jnp.float32) if grads else None
    dk, out = jax.lax.scan(body, dk0, xs)
    totals = (jnp.sum(out[0]), _unchunk(out[1]))
    return (*totals, _unchunk(out[2]), dk) if grads else totals


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _chunked(hidden, kernel, targets, weights, dtype, softcap, span):
    return _scan(hidden, kernel, targets, weights, dtype, softcap, span, grads=False)


def _chunked_fwd(hidden, kernel, targets, weights, dtype, softcap, span):
    loss, hit, dh, dk = _scan(hidden, kernel, targets, weights, dtype, softcap, span,
                                  grads=True)
    like = (jnp.zeros((), hidden.dtype), jnp.zeros((), kernel.dtype))  # the primals' dtypes
    return (loss, hit), (dh, dk, like, targets, weights)


def _chunked_bwd(dtype, softcap, span, residuals, cotangents):
    dh, dk, (h_like, k_like), targets, weights = residuals
    g = cotangents[0]  # the loss sum's; the hits have no gradient
    return ((g * dh).astype(h_like.dtype), (g * dk).astype(k_like.dtype),
            jnp.zeros(targets.shape, jax.dtypes.float0), jnp.zeros_like(weights))


_chunked.defvjp(_chunked_fwd, _chunked_bwd)
