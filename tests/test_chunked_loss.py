"""The chunked LM loss (jaxdl.tasks.chunked_loss) against the plain path: the same loss,
metrics and gradients through DecoderLM and the seq2seq model, tied and untied heads,
soft-capped logits, masks, bfloat16; less temporary memory; `auto` and its errors."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.errors import UserError
from jaxdl.nn.lm_head import LMHead
from jaxdl.nn.recurrent import RecurrentLM
from jaxdl.nn.transformer import DecoderLM, EncoderDecoder
from jaxdl.tasks import chunked_loss, language, seq2seq

KEY = jax.random.PRNGKey(0)


def _grads(loss_fn, params, batch, model):
    def f(p):
        loss, metrics = loss_fn(p, batch, KEY, model, True)
        return loss, metrics
    return jax.jit(jax.value_and_grad(f, has_aux=True))(params)  # compiled: faster than eager


def _max_diff(a, b) -> float:
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(
        jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


@pytest.mark.parametrize("options", [dict(), dict(tie_embeddings=False, logit_softcap=3.0)],
                         ids=["tied", "untied_softcap"])
def test_decoder_lm_chunked_equals_plain(options):
    model = DecoderLM(97, num_layers=2, num_heads=2, dim=32, max_len=24, **options)
    tokens = jax.random.randint(KEY, (3, 25), 0, 97)
    params = nn.unbox(model.init(KEY, tokens[:, :-1])["params"])
    mask = (jax.random.uniform(jax.random.PRNGKey(1), (3, 24)) > 0.2).astype(jnp.float32)
    batch = {"tokens": tokens, "mask": mask}
    (lp, mp), gp = _grads(functools.partial(language.next_token_loss, loss_impl="plain"),
                          params, batch, model)
    # 8 positions a chunk over a batch of 3: spans of 2 positions, 12 chunks
    chunked = functools.partial(language.next_token_loss, loss_impl="chunked")
    with _chunk_tokens(8):
        (lc, mc), gc = _grads(chunked, params, batch, model)
    assert abs(float(lp - lc)) < 1e-5  # measured 0 to 5e-7
    assert mp.keys() == mc.keys() and float(mp["correct"]) == float(mc["correct"])
    assert _max_diff(gp, gc) < 1e-5  # measured 2e-7 to 6e-7
    assert _max_diff(gp, jax.tree.map(jnp.zeros_like, gp)) > 1e-3  # gradients are not zero


def test_seq2seq_chunked_equals_plain():
    model = EncoderDecoder(40, 30, num_layers=1, num_heads=2, dim=32, max_src_len=12,
                           max_tgt_len=10, dropout=0.0)
    src = jax.random.randint(KEY, (4, 12), 1, 40)
    tgt = jax.random.randint(jax.random.PRNGKey(3), (4, 11), 1, 30).at[:, 8:].set(0)
    params = nn.unbox(model.init(KEY, src, tgt[:, :-1])["params"])
    batch = {"src": src, "tgt": tgt}
    (lp, mp), gp = _grads(functools.partial(seq2seq.teacher_forcing_loss, loss_impl="plain"),
                          params, batch, model)
    (lc, mc), gc = _grads(functools.partial(seq2seq.teacher_forcing_loss,
                                            loss_impl="chunked"), params, batch, model)
    assert abs(float(lp - lc)) < 1e-5
    assert {k: float(v) for k, v in mp.items()} == pytest.approx(
        {k: float(v) for k, v in mc.items()}, abs=1e-4)
    assert _max_diff(gp, gc) < 1e-5


def test_bfloat16_chunked_close_to_float32():
    """bfloat16 matmuls, float32 softmax and accumulation: within bfloat16's rounding of the
    float32 plain loss (measured 1e-3 relative; bound 1e-2)."""
    model = DecoderLM(300, num_layers=1, num_heads=2, dim=64, max_len=32)
    tokens = jax.random.randint(KEY, (4, 33), 0, 300)
    params = nn.unbox(model.init(KEY, tokens[:, :-1])["params"])
    plain = language.next_token_loss(params, {"tokens": tokens}, KEY, model, False,
                                     loss_impl="plain")[0]
    low = model.clone(dtype=jnp.bfloat16)
    (loss, _), grads = _grads(functools.partial(language.next_token_loss,
                                                loss_impl="chunked"), params,
                              {"tokens": tokens}, low)
    assert abs(float(loss) / float(plain) - 1) < 1e-2
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))


def test_chunked_head_gradient_with_uneven_spans():
    """Time 7 (prime) over chunks of at most 2 positions: spans of 1, every position once."""
    r = np.random.default_rng(0)
    h = jnp.asarray(r.standard_normal((2, 7, 8)), jnp.float32)
    k = jnp.asarray(r.standard_normal((8, 11)), jnp.float32)
    y = jnp.asarray(r.integers(0, 11, (2, 7)), jnp.int32)
    w = jnp.ones((2, 7), jnp.float32)

    def plain(h, k):
        logits = LMHead(k)(h)
        return jnp.sum(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(
            logits, y[..., None], -1)[..., 0])

    def chunked(h, k):
        return chunked_loss.cross_entropy(h, LMHead(k), y, w, chunk_tokens=4)[0]

    np.testing.assert_allclose(chunked(h, k), plain(h, k), rtol=1e-6)
    for a, b in zip(jax.grad(plain, (0, 1))(h, k), jax.grad(chunked, (0, 1))(h, k),
                    strict=True):
        np.testing.assert_allclose(b, a, atol=1e-5)


def test_chunked_loss_needs_less_temporary_memory():
    """The compiled gradient's temporary memory (XLA:CPU): 2,048 tokens x 8,192 vocabulary,
    chunks of 512 tokens. Measured 161.6 MB plain, 65.8 MB chunked (0.41): a chunk's
    logits, probabilities and gradient (17 MB each) against the whole batch's."""
    model = DecoderLM(8192, num_layers=1, num_heads=2, dim=64, max_len=256)
    tokens = jnp.zeros((8, 257), jnp.int32)
    params = nn.unbox(jax.eval_shape(lambda: model.init(KEY, tokens[:, :-1]))["params"])

    def temp(impl):
        fn = jax.grad(lambda p: language.next_token_loss(p, {"tokens": tokens}, KEY, model, True,
                                                         loss_impl=impl)[0])
        return jax.jit(fn).lower(params).compile().memory_analysis().temp_size_in_bytes

    plain = temp("plain")
    with _chunk_tokens(512):
        chunked = temp("chunked")
    assert chunked < 0.5 * plain, (chunked, plain)


def test_auto_and_errors():
    assert chunked_loss.resolve("auto", 64 * 1024, 50304) == "chunked"  # GPT-2: 13 GB
    assert chunked_loss.resolve("auto", 32 * 64, 65) == "plain"  # characters: 0.5 MB
    assert chunked_loss.resolve("plain", 64 * 1024, 50304) == "plain"
    with pytest.raises(UserError, match="unknown loss_impl 'fused'.*auto, plain, chunked"):
        chunked_loss.resolve("fused", 1, 1)
    rnn = RecurrentLM("gru", 20, embed_dim=8, hidden_dim=8)
    tokens = jnp.zeros((2, 9), jnp.int32)
    params = rnn.init(KEY, tokens[:, :-1])["params"]
    with pytest.raises(UserError, match="RecurrentLM does not: use --config.loss_impl=plain"):
        language.next_token_loss(params, {"tokens": tokens}, KEY, rnn, False,
                                 loss_impl="chunked")
    loss, _ = language.next_token_loss(params, {"tokens": tokens}, KEY, rnn, False)  # auto
    assert np.isfinite(float(loss))


class _chunk_tokens:
    """Within: chunks of `n` tokens (the default is sized for GPUs and GPT-2 batches)."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.saved = chunked_loss.CHUNK_TOKENS
        chunked_loss.CHUNK_TOKENS = self.n

    def __exit__(self, *exc):
        chunked_loss.CHUNK_TOKENS = self.saved
