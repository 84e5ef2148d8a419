"""The LM task: next-token loss and its masks, LM units, sampling, carried-state generation."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.errors import UserError
from jaxdl.nn.recurrent import CELLS, RecurrentLM
from jaxdl.tasks import language
from jaxdl.train import reduce_metrics

KEY = jax.random.PRNGKey(0)


class Bigram(nn.Module):
    """Logits depend on the current token only: a table the test can read."""
    vocab: int = 5

    @nn.compact
    def __call__(self, tokens, train=False):
        return nn.Embed(self.vocab, self.vocab)(tokens)


def _bigram():
    model = Bigram()
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2), jnp.int32))["params"]
    return model, params, np.asarray(params["Embed_0"]["embedding"])


def _manual_nll(table, inputs, targets):
    logits = table[inputs]  # (batch, time, vocab)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, targets[..., None], -1)[..., 0]


def test_next_token_loss_is_summed_cross_entropy_over_tokens():
    model, params, table = _bigram()
    tokens = np.array([[0, 1, 2, 3], [4, 4, 1, 0]], np.int32)
    nll = _manual_nll(table, tokens[:, :-1], tokens[:, 1:])
    loss, m = language.next_token_loss(params, {"tokens": tokens}, KEY, model, False)
    assert float(m["count"]) == 6
    np.testing.assert_allclose(float(m["loss_sum"]), nll.sum(), rtol=1e-5)
    np.testing.assert_allclose(float(loss), nll.mean(), rtol=1e-5)
    # The same batch as inputs / targets, and with masks per example and per token.
    same = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
    _, m2 = language.next_token_loss(params, same, KEY, model, False)
    np.testing.assert_allclose(float(m2["loss_sum"]), float(m["loss_sum"]), rtol=1e-6)
    _, m3 = language.next_token_loss(params, {"tokens": tokens, "mask": np.array([1.0, 0.0])},
                                     KEY, model, False)
    assert float(m3["count"]) == 3
    np.testing.assert_allclose(float(m3["loss_sum"]), nll[0].sum(), rtol=1e-5)
    token_mask = np.array([[1, 1, 0], [0, 1, 1]], np.float32)
    _, m4 = language.next_token_loss(params, {"tokens": tokens, "mask": token_mask}, KEY,
                                     model, False)
    assert float(m4["count"]) == 4
    np.testing.assert_allclose(float(m4["loss_sum"]), (nll * token_mask).sum(), rtol=1e-5)
    reduced = language.lm_metrics(reduce_metrics(jax.device_get(m)))
    assert reduced["loss"] == pytest.approx(nll.mean(), rel=1e-5)
    assert reduced["perplexity"] == pytest.approx(math.exp(nll.mean()), rel=1e-5)
    assert reduced["bits_per_token"] == pytest.approx(nll.mean() / math.log(2), rel=1e-5)


def test_bad_batches_are_user_errors():
    model, params, _ = _bigram()
    tokens = np.zeros((2, 4), np.int32)
    with pytest.raises(UserError, match="'tokens' or 'inputs' and 'targets'"):
        language.next_token_loss(params, {"image": tokens}, KEY, model, False)
    with pytest.raises(UserError, match="must be integers"):
        language.next_token_loss(params, {"tokens": tokens.astype(np.float32)}, None, model,
                                 False)
    with pytest.raises(UserError, match=r"mask \(3,\) must be"):
        language.next_token_loss(params, {"tokens": tokens, "mask": np.ones(3)}, None, model,
                                 False)
    with pytest.raises(UserError, match="time >= 1"):
        language.next_token_loss(params, {"tokens": tokens[:, :1]}, KEY, model, False)


def test_sampling_greedy_temperature_and_top_k():
    logits = jnp.array([[0.0, 2.0, 1.0, -1.0], [3.0, 0.0, 0.0, 2.9]])
    rng = jax.random.PRNGKey(0)
    assert language.sample_logits(rng, logits, greedy=True).tolist() == [1, 0]
    assert language.sample_logits(rng, logits, temperature=0.0).tolist() == [1, 0]
    keys = jax.random.split(rng, 4000)
    draw = jax.vmap(lambda k, **kw: language.sample_logits(k, logits[:1], **kw)[0])
    counts = np.bincount(np.asarray(draw(keys)), minlength=4) / 4000
    np.testing.assert_allclose(counts, jax.nn.softmax(logits[0]), atol=0.03)
    top2 = np.asarray(jax.vmap(lambda k: language.sample_logits(k, logits[:1], top_k=2)[0])(
        keys))
    assert set(top2.tolist()) == {1, 2}  # only the two largest logits
    np.testing.assert_allclose(np.mean(top2 == 1), 1 / (1 + math.exp(-1.0)), atol=0.03)
    cold = np.asarray(jax.vmap(lambda k: language.sample_logits(
        k, logits[1:], temperature=0.02)[0])(keys[:500]))
    assert np.mean(cold == 0) > 0.99  # low temperature approaches argmax
    hot = np.asarray(jax.vmap(lambda k: language.sample_logits(
        k, logits[1:], temperature=100.0)[0])(keys))
    assert np.bincount(hot, minlength=4).min() > 800  # high temperature approaches uniform


@pytest.mark.parametrize("cell", CELLS)
def test_generation_from_carried_state_equals_rerunning_the_prefix(cell):
    model = RecurrentLM(cell=cell, vocab_size=13, embed_dim=8, hidden_dim=16, num_layers=2)
    prompt = jnp.array([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]], jnp.int32)
    params = model.init(jax.random.PRNGKey(0), prompt)["params"]
    tokens, logits = language.generate(model, params, prompt, 7, jax.random.PRNGKey(1),
                                       temperature=1.5, return_logits=True)
    assert tokens.shape == (2, 7) and logits.shape == (2, 7, 13)
    full = model.apply({"params": params}, jnp.concatenate([prompt, tokens[:, :-1]], 1))
    np.testing.assert_allclose(logits, full[:, prompt.shape[1] - 1:], atol=1e-5, rtol=1e-5)
    # An unbatched prompt gives unbatched ids; greedy decoding is reproducible.
    one = language.generate(model, params, np.asarray(prompt[0]), 4, greedy=True)
    assert one.shape == (4,)
    np.testing.assert_array_equal(one, language.generate(model, params, prompt[:1], 4,
                                                         jax.random.PRNGKey(9), greedy=True)[0])


def test_generate_rejects_an_empty_prompt():
    model = RecurrentLM(cell="rnn", vocab_size=5, embed_dim=4, hidden_dim=4)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32))["params"]
    with pytest.raises(UserError, match="at least one token"):
        language.generate(model, params, np.zeros((0,), np.int32), 3)
