"""KV-cache generation as one compiled program (jaxdl.tasks.language.generate_cached): the
sliding window across many refills, batches of prompts, weights cast once to the compute
dtype, and a cache updated in place (no copy of it in the compiled loop)."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.nn.transformer import DecoderLM
from jaxdl.tasks import language

KEY = jax.random.PRNGKey(0)


def _lm(dtype=jnp.float32, max_len=16):
    model = DecoderLM(65, num_layers=2, num_heads=2, dim=32, max_len=max_len, dtype=dtype)
    params = nn.unbox(model.init(KEY, jnp.zeros((1, max_len), jnp.int32))["params"])
    return model, params


def _windows(prompt_len: int, num_tokens: int, context: int) -> list[tuple[int, int]]:
    """(first, last) positions of the context each new token was predicted from."""
    out, start, length = [], 0, prompt_len
    for refill, n in language.segments(prompt_len, num_tokens, context):
        if refill:
            start = start + length - context // 2
            length = context // 2
        for _ in range(n):
            out.append((start, start + length))
            length += 1
    return out


def test_many_refills_in_one_program_match_recomputing_each_window():
    """Context 16, prompt 5, 45 tokens: a stretch of 11, then five refills of the newest 8
    (four alike, run as one scan), then 2. Every token's logits equal a full pass over the
    window it saw (measured 1e-6)."""
    model, params = _lm()
    prompt = jax.random.randint(KEY, (2, 5), 0, 65)
    assert language.segments(5, 45, 16) == [(False, 11)] + [(True, 8)] * 4 + [(True, 2)]
    out, logits = language.generate_cached(model, params, prompt, 45, greedy=True,
                                           return_logits=True)
    assert out.shape == (2, 45) and logits.shape == (2, 45, 65)
    seq = jnp.concatenate([prompt, out], 1)
    last = jax.jit(lambda window: model.apply({"params": params}, window)[:, -1])
    for t, (lo, hi) in enumerate(_windows(5, 45, 16)):
        want = last(seq[:, lo:hi])
        np.testing.assert_allclose(logits[:, t], want, atol=1e-5, err_msg=f"token {t}")
    np.testing.assert_array_equal(out, jnp.argmax(logits, -1))


def test_a_batch_of_prompts_equals_each_prompt_alone():
    model, params = _lm()
    prompts = np.asarray(jax.random.randint(KEY, (4, 6), 0, 65))
    together = language.generate_cached(model, params, prompts, 20, greedy=True)
    for i in range(4):
        alone = language.generate_cached(model, params, prompts[i], 20, greedy=True)
        np.testing.assert_array_equal(together[i], alone)


def test_sampling_is_reproducible_and_uses_the_key():
    model, params = _lm()
    prompt = np.arange(5)
    a = language.generate_cached(model, params, prompt, 30, jax.random.PRNGKey(1))
    b = language.generate_cached(model, params, prompt, 30, jax.random.PRNGKey(1))
    c = language.generate_cached(model, params, prompt, 30, jax.random.PRNGKey(2))
    np.testing.assert_array_equal(a, b)
    assert np.any(np.asarray(a) != np.asarray(c))


def test_compute_params_are_the_numbers_the_layers_use():
    """bfloat16 model: weights cast once before the loop give the logits of casting them
    at every call (the layers' own cast), bitwise; gains and biases stay float32."""
    model, params = _lm(jnp.bfloat16)
    cast = language.compute_params(params, jnp.bfloat16)
    assert cast["embed"]["embedding"].dtype == jnp.bfloat16
    assert cast["block0"]["ln_self"]["scale"].dtype == jnp.float32
    tokens = jax.random.randint(KEY, (2, 16), 0, 65)
    np.testing.assert_array_equal(model.apply({"params": params}, tokens),
                                  model.apply({"params": cast}, tokens))


def test_the_compiled_loop_updates_the_cache_in_place():
    """The optimised HLO of a bfloat16 generation holds the cache's dynamic-update-slice
    and no copy of a cache-shaped buffer: each token writes one position in place. (A
    program that keeps the old cache alive beside the new one shows such copies.)"""
    model, params = _lm(jnp.bfloat16)
    prompt = jnp.zeros((2, 5), jnp.int32)
    compiled = language.generation_program().lower(
        model, params, prompt, KEY, jnp.float32(1.0), num_tokens=41, top_k=0, greedy=False,
        keep_logits=False).compile()
    cache = "bf16[2,16,2,16]"  # (batch, positions, heads, head width)
    text = compiled.as_text()
    assert re.search(re.escape(cache) + r"\{[0-9,]*\} dynamic-update-slice\(", text)
    copies = re.findall(re.escape(cache) + r"\{[0-9,]*\} copy\(", text)
    assert copies == [], f"{len(copies)} copies of the cache"
