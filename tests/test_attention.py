"""The fused attention path (jax.nn.dot_product_attention) against the explicit einsum one.

(The KV cache on the fused path: test_transformer's cached-decoding test.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.errors import UserError
from jaxdl.nn import attention
from jaxdl.nn.transformer import (
    NEG_INF,
    DecoderLM,
    EncoderDecoder,
    causal_mask,
    padding_mask,
)

B, T, S, H, D = 2, 7, 9, 3, 8


def einsum_attention(q, k, v, mask):
    """The textbook formula, as jaxdl computed it before the fused path."""
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    if mask is not None:
        logits = jnp.where(mask, logits, NEG_INF)
    return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, -1), v)


def _qkv(t=T, s=S):
    kq, kk, kv = jax.random.split(jax.random.PRNGKey(0), 3)
    return (jax.random.normal(kq, (B, t, H, D)), jax.random.normal(kk, (B, s, H, D)),
            jax.random.normal(kv, (B, s, H, D)))


def _padding():
    key_valid = jnp.array([[True] * S, [True] * 5 + [False] * (S - 5)])
    query_valid = jnp.array([[True] * T, [True] * 4 + [False] * (T - 4)])
    return key_valid, query_valid


@pytest.mark.parametrize("case", ["none", "causal", "keys", "keys_and_queries", "cache"])
def test_fused_attention_equals_the_einsum_formula_in_float32(case):
    t, s = (T, T) if case == "causal" else (T, S)
    q, k, v = _qkv(t, s)
    key_valid, query_valid = _padding()
    mask, causal = None, False
    if case == "causal":
        causal, want_mask = True, causal_mask(T)
    elif case == "keys":
        mask = want_mask = padding_mask(None, key_valid)
    elif case == "keys_and_queries":  # fully masked query rows too (uniform in both)
        mask = want_mask = padding_mask(query_valid, key_valid)
    elif case == "cache":  # the KV cache's mask: (1, 1, q, k), positions up to the index
        mask = want_mask = (jnp.arange(S)[None, :] <= 1 + jnp.arange(T)[:, None])[None, None]
    else:
        want_mask = None
    got = attention.attend(q, k, v, mask, causal=causal, implementation="xla")
    np.testing.assert_allclose(got, einsum_attention(q, k, v, want_mask), atol=1e-5, rtol=1e-5)


def test_the_model_gives_the_same_logits_with_weights_asked_for_or_not():
    """`mutable=['intermediates']` takes the explicit path (and sows the weights)."""
    model = DecoderLM(50, num_layers=2, num_heads=4, dim=32, max_len=16)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 16), 0, 50)
    params = model.init(jax.random.PRNGKey(0), tokens)["params"]
    fused = model.apply({"params": params}, tokens)
    explicit, inter = model.apply({"params": params}, tokens, mutable=["intermediates"])
    np.testing.assert_allclose(fused, explicit, atol=1e-5, rtol=1e-5)
    weights = inter["intermediates"]["block0"]["self_attn"]["attention"][0]
    assert weights.shape == (2, 4, 16, 16)
    np.testing.assert_allclose(jnp.triu(weights[0, 0], 1), 0.0, atol=1e-7)  # causal


def test_encoder_decoder_with_padding_is_the_same_on_both_paths():
    model = EncoderDecoder(30, 20, num_layers=2, num_heads=2, dim=16, max_src_len=9,
                           max_tgt_len=7, dropout=0.0)
    src = jnp.array([[5, 6, 7, 8, 9, 3, 4, 2, 1], [5, 6, 7, 0, 0, 0, 0, 0, 0]])
    tgt = jnp.array([[1, 4, 5, 6, 0, 0, 0], [1, 7, 8, 9, 10, 11, 12]])
    params = model.init(jax.random.PRNGKey(0), src, tgt)["params"]
    fused = model.apply({"params": params}, src, tgt)
    explicit, _ = model.apply({"params": params}, src, tgt, mutable=["intermediates"])
    np.testing.assert_allclose(fused, explicit, atol=1e-5, rtol=1e-5)


def test_auto_picks_cudnn_only_where_it_applies(monkeypatch):
    q32 = jnp.zeros((1, 4, 2, 64), jnp.float32)
    q16 = q32.astype(jnp.bfloat16)
    assert attention.resolve("auto", q16, None) == "xla"  # this is a CPU
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert attention.resolve("auto", q16, None) == "cudnn"
    assert attention.resolve("auto", q32, None) == "xla"  # cuDNN's kernel is 16-bit only
    assert attention.resolve("auto", q16, jnp.ones((1, 1, 4, 4), bool)) == "xla"
    assert attention.resolve("auto", jnp.zeros((1, 4, 2, 12), jnp.bfloat16), None) == "xla"
    assert attention.resolve("xla", q16, None) == "xla"
    with pytest.raises(UserError, match="unknown attention_impl 'flash'.*auto, xla, cudnn"):
        attention.resolve("flash", q16, None)
