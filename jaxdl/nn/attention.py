"""The attention kernel: softmax(Q K^T / sqrt(d) + mask) V through `jax.nn.dot_product_attention`.

`implementation` picks the kernel:

    xla    XLA's fused softmax attention: every backend, float32 or lower precision
    cudnn  cuDNN's flash attention on NVIDIA GPUs: bfloat16/float16 only, and it never
           materialises the (q, k) logits, so long contexts fit
    auto   cudnn where it applies (a GPU, bfloat16/float16, head width a multiple of 8 up
           to 128, and the mask only causal), else xla

Logits and softmax are float32 whatever the inputs' dtype (bfloat16 inputs use a float32
accumulator). Shapes: q (batch, q_len, heads, d), k and v (batch, k_len, heads, d);
`mask` a boolean broadcastable to (batch, heads, q_len, k_len), True where attention is
allowed; `causal` hides future positions without a mask array.
"""

import jax
import jax.numpy as jnp

from jaxdl.errors import UserError

IMPLEMENTATIONS = ("auto", "xla", "cudnn")


def resolve(implementation: str, q, mask) -> str:
    """The kernel `auto` stands for at these shapes on this backend (others: themselves)."""
    if implementation not in IMPLEMENTATIONS:
        raise UserError(f"unknown attention_impl {implementation!r}; choose one of "
                        f"{', '.join(IMPLEMENTATIONS)} (--config.attention_impl)")
    if implementation != "auto":
        return implementation
    d = q.shape[-1]
    fits = (jax.default_backend() == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16)
            and d % 8 == 0 and d <= 128 and mask is None)
    return "cudnn" if fits else "xla"


def attend(q, k, v, mask=None, *, causal: bool = False, implementation: str = "auto"):
    """(batch, q_len, heads, d) attention output, in q's dtype."""
    kernel = resolve(implementation, q, mask)
    if mask is not None:
        mask = jnp.broadcast_to(mask, (q.shape[0], 1, q.shape[1], k.shape[1]))
    return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=causal,
                                        implementation=kernel)
