"""Transformers: masks, positional encodings, the KV cache, parameter counts, seq2seq."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from golden_gpt import CONFIG as GPT_CONFIG
from golden_gpt import GOLDEN as GOLDEN_GPT
from golden_gpt import RECIPE as GPT_RECIPE

from jaxdl.errors import UserError
from jaxdl.nn import decoder_lm_params_from_nanogpt
from jaxdl.nn.transformer import (
    DecoderLM,
    EncoderDecoder,
    MultiHeadAttention,
    PositionalEncoding,
    init_cache,
    sinusoidal_table,
)
from jaxdl.recipes import decoder_lm
from jaxdl.tasks import language, seq2seq
from jaxdl.train import create_train_state, make_optimizer, make_train_step

NANOGPT_CPU = dict(num_layers=4, num_heads=4, dim=128, max_len=64, use_bias=False)


def _lm(**kw):
    cfg = dict(num_layers=2, num_heads=4, dim=32, max_len=16) | kw
    model = DecoderLM(65, **cfg)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, cfg["max_len"]), 0, 65)
    return model, model.init(jax.random.PRNGKey(0), tokens)["params"], tokens


def test_sinusoidal_table_matches_the_formula():
    table = sinusoidal_table(50, 16)
    p, i = 37, 3
    assert table[p, 2 * i] == pytest.approx(np.sin(p / 10000 ** (2 * i / 16)), abs=1e-6)
    assert table[p, 2 * i + 1] == pytest.approx(np.cos(p / 10000 ** (2 * i / 16)), abs=1e-6)
    assert table[0, 0::2].tolist() == [0.0] * 8 and table[0, 1::2].tolist() == [1.0] * 8
    x = jnp.zeros((1, 5, 16))
    out = PositionalEncoding(50, "sinusoidal").apply({}, x, 3)
    np.testing.assert_allclose(out[0], table[3:8], atol=1e-7)


def test_causal_mask_future_tokens_change_no_earlier_output():
    model, params, tokens = _lm()
    base = model.apply({"params": params}, tokens)
    changed = model.apply({"params": params}, tokens.at[:, 9].set((tokens[:, 9] + 1) % 65))
    np.testing.assert_array_equal(base[:, :9], changed[:, :9])
    assert np.abs(np.asarray(base[:, 9:] - changed[:, 9:])).max() > 1e-3


def test_padding_mask_hides_padded_source_tokens():
    model = EncoderDecoder(20, 20, num_layers=1, dim=32, max_src_len=10, max_tgt_len=6,
                           dropout=0.0)
    src = jnp.array([[5, 6, 7, 8, 0, 0, 0, 0, 0, 0]])
    tgt = jnp.array([[1, 4, 5, 6, 7, 8]])
    params = model.init(jax.random.PRNGKey(0), src, tgt)["params"]
    out = model.apply({"params": params}, src, tgt)
    other_padding = src.at[0, 6].set(0).at[0, 4:].set(0)  # same real tokens, same padding
    np.testing.assert_array_equal(out, model.apply({"params": params}, other_padding, tgt))
    # Changing a padded position's id to a real token would change the output; padding
    # positions are those equal to pad_id, so instead check the mask blocks attention:
    _, inter = model.apply({"params": params}, src, tgt, mutable=["intermediates"])
    att = inter["intermediates"]["decoder"]["block0"]["cross_attn"]["attention"][0]
    assert float(jnp.max(att[..., 4:])) < 1e-6
    enc_att = inter["intermediates"]["encoder"]["block0"]["self_attn"]["attention"][0]
    assert float(jnp.max(enc_att[..., 4:])) < 1e-6


@pytest.mark.parametrize("positional", ["learned", "sinusoidal"])
def test_cached_decoding_equals_full_sequence_logits(positional):
    model, params, tokens = _lm(positional=positional)
    full = model.apply({"params": params}, tokens)
    cache = init_cache(model, params, 2)
    outs = []
    prefix, mutated = model.apply({"params": params, "cache": cache}, tokens[:, :5], decode=True,
                                  mutable=["cache"])
    outs.append(prefix)
    for t in range(5, tokens.shape[1]):
        out, mutated = model.apply({"params": params, "cache": mutated["cache"]},
                                   tokens[:, t:t + 1], decode=True, mutable=["cache"])
        outs.append(out)
    np.testing.assert_allclose(jnp.concatenate(outs, 1), full, atol=1e-5)


def test_nanogpt_cpu_config_parameter_count():
    model = DecoderLM(65, **NANOGPT_CPU)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 64), jnp.int32))
    total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    # 4 x (4*128^2 attention + 2*128*512 MLP + 2*128 norms) + 65*128 tokens + 64*128
    # positions + 128 final norm; nanoGPT prints 0.80M (it leaves out the positions).
    assert total == 804_096
    assert total - 64 * 128 == 795_904


def test_sequence_longer_than_the_context_is_a_user_error():
    model, params, _ = _lm()
    with pytest.raises(UserError, match="longer than the model's context of 16"):
        model.apply({"params": params}, jnp.zeros((1, 17), jnp.int32))


def test_encoder_decoder_overfits_a_tiny_batch_and_beam_search_recovers_it():
    rng = np.random.default_rng(0)
    src = rng.integers(3, 12, (4, 8)).astype(np.int32)
    tgt = np.concatenate([np.ones((4, 1)), src[:, ::-1][:, :5], np.full((4, 1), 2)], 1)
    batch = {"src": src, "tgt": tgt.astype(np.int32)}  # reverse the first five tokens
    model = EncoderDecoder(12, 12, num_layers=1, num_heads=2, dim=32, max_src_len=8,
                           max_tgt_len=6, dropout=0.0)
    state = create_train_state(model, make_optimizer("adam", 3e-3), jax.random.PRNGKey(0),
                               (batch["src"], batch["tgt"][:, :-1]))
    step = jax.jit(make_train_step(seq2seq.teacher_forcing_loss, model))
    for _ in range(150):
        state, metrics = step(state, batch)
    assert float(metrics["loss_sum"] / metrics["count"]) < 0.05
    assert float(metrics["exact"]) == 4.0
    for beam in (1, 3):
        out, _ = seq2seq.beam_search(model, state.params, jnp.asarray(src), max_len=6,
                                     beam_size=beam)
        np.testing.assert_array_equal(out, batch["tgt"][:, 1:])


def test_generate_cached_equals_rerunning_the_full_prefix():
    from jaxdl.tasks import language

    model, params, tokens = _lm()  # context 16
    prompt = tokens[:, :5]
    out, logits = language.generate_cached(model, params, prompt, 25, greedy=True,
                                           return_logits=True)
    assert out.shape == (2, 25) and logits.shape == (2, 25, 65)
    seq = jnp.concatenate([prompt, out], 1)
    # Within the first context, causality makes one full pass give every prefix's logits.
    full = model.apply({"params": params}, seq[:, :16])
    np.testing.assert_allclose(logits[:, :11], full[:, 4:15], atol=1e-5)
    np.testing.assert_array_equal(out[:, :11], jnp.argmax(full[:, 4:15], -1))
    # the context is full after 16 tokens: the window slides to the newest 8 (+ k) tokens
    for t, lo in ((11, 8), (15, 8), (19, 16)):
        window = seq[:, lo: 5 + t]
        np.testing.assert_allclose(logits[:, t], model.apply({"params": params}, window)[:, -1],
                                   atol=1e-5)
    sampled = language.generate_cached(model, params, prompt[0], 10, jax.random.PRNGKey(3),
                                       temperature=1.0, top_k=5)
    assert sampled.shape == (10,)


def _nanogpt(prefix: str, golden) -> dict:
    return {k[len(prefix):]: golden[k] for k in golden.files if k.startswith(prefix)}


def test_nanogpt_weights_give_pytorch_logits():
    golden = np.load(GOLDEN_GPT)
    c = GPT_CONFIG
    model = DecoderLM(c["vocab"], num_layers=c["layers"], num_heads=c["heads"], dim=c["dim"],
                      max_len=c["block"], use_bias=True, positional="learned")
    params = decoder_lm_params_from_nanogpt(_nanogpt("bias/", golden), c["heads"])
    logits = model.apply({"params": params}, jnp.asarray(golden["batches"][0, :, :-1]))
    np.testing.assert_allclose(np.asarray(logits), golden["bias_logits"], atol=1e-5, rtol=0)


def test_training_follows_nanogpt_step_for_step():
    """jaxdl's decoder_lm recipe (optimizer, schedule, clipping, decay mask, shared
    train step) against nanoGPT's train.py in PyTorch, from the same weights on the same
    batches: every loss and the final weights agree."""
    golden = np.load(GOLDEN_GPT)
    c, r = GPT_CONFIG, GPT_RECIPE
    # configs/nanogpt_shakespeare_char.py, shrunk to the golden's shape
    config = decoder_lm.DecoderLanguageModel().nanogpt_config()
    config.update(num_layers=c["layers"], num_heads=c["heads"], dim=c["dim"],
                  seq_len=c["block"], learning_rate=r["lr"], min_learning_rate=r["min_lr"],
                  num_steps=r["decay_iters"], warmup_steps=r["warmup"])
    assert (config.beta2, config.weight_decay, config.grad_clip_norm, config.use_bias,
            config.dropout) == (r["b2"], r["wd"], r["clip"], False, 0.0)
    model, tx, _ = decoder_lm.build_model_and_optimizer(config, c["vocab"])
    params = decoder_lm_params_from_nanogpt(_nanogpt("init/", golden), c["heads"])
    state = create_train_state(model, tx, jax.random.PRNGKey(0),
                               jnp.zeros((1, c["block"]), jnp.int32))
    state = state.replace(params=params, opt_state=tx.init(params))
    step = jax.jit(make_train_step(language.next_token_loss, model))
    losses = []
    for window in golden["batches"]:
        state, m = step(state, {"tokens": jnp.asarray(window), "mask": jnp.ones(len(window))})
        losses.append(float(m["loss_sum"] / m["count"]))
    np.testing.assert_allclose(losses, golden["losses"], atol=2e-5, rtol=0)
    final = decoder_lm_params_from_nanogpt(_nanogpt("final/", golden), c["heads"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), b, atol=2e-5, rtol=0),
                 state.params, final)


def test_cross_attention_from_a_narrower_query_to_wider_keys_matches_the_einsum_form():
    """Queries of width 8 attend over 5 keys of width 12 (image features to text tokens);
    the projections on flattened rows equal per-position DenseGeneral maths."""
    attn = MultiHeadAttention(num_heads=2)
    q_in = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 8))
    kv_in = jax.random.normal(jax.random.PRNGKey(1), (3, 5, 12))
    params = nn.unbox(attn.init(jax.random.PRNGKey(2), q_in, kv_in)["params"])  # plain arrays
    out = attn.apply({"params": params}, q_in, kv_in)
    assert out.shape == (3, 4, 8)
    proj = lambda x, p: jnp.einsum("btd,dhk->bthk", x, p["kernel"]) + p["bias"]  # noqa: E731
    q, k, v = proj(q_in, params["query"]), proj(kv_in, params["key"]), proj(kv_in, params["value"])
    w = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(4.0), axis=-1)
    o = jnp.einsum("bhqk,bkhd->bqhd", w, v)
    expected = jnp.einsum("bqhd,hdo->bqo", o, params["out"]["kernel"]) + params["out"]["bias"]
    np.testing.assert_allclose(out, expected, atol=1e-5)


def _brute_force_best(model, params, src, vocab: int, length: int):
    """The best of all `vocab ** length` output sequences by total log-probability (what
    beam search maximises when no token ends a beam), each scored by one full decoder pass."""
    import itertools

    seqs = np.array(list(itertools.product(range(vocab), repeat=length)), np.int32)
    inputs = np.concatenate([np.ones((len(seqs), 1), np.int32), seqs[:, :-1]], 1)  # BOS 1
    logits = model.apply({"params": params}, np.repeat(src, len(seqs), 0), inputs)
    logp = np.asarray(jax.nn.log_softmax(logits.astype(jnp.float32)))
    scores = np.take_along_axis(logp, seqs[..., None], -1)[..., 0].sum(1)
    best = int(np.argmax(scores))
    return seqs[best], float(scores[best])


def test_beam_search_finds_the_brute_force_best_where_greedy_does_not():
    """A trap for greedy decoding, learned from data: 45% of the targets start with 3 and
    go on at random, 35% are 4 4 4 4, 20% 0 0 0 0 (vocabulary 5, no token ending a beam:
    `eos_id` outside it). Greedy takes the likelier 3 and ends with about 0.45 / 125; the
    best sequence is 4 4 4 4. A beam wide enough to keep every prefix (125) must return
    exactly the best of all 625 sequences, each scored by a full decoder pass, and its
    score. The best beam comes from the second beam after the first step, so the KV caches
    must be reordered with the beams: caches left in place score it against 3's history."""
    rng = np.random.default_rng(0)
    n = 256
    kind = rng.choice(3, n, p=[0.45, 0.35, 0.2])
    tgt = np.where(kind[:, None] == 0, np.concatenate([np.full((n, 1), 3), rng.integers(
        0, 5, (n, 3))], 1), np.where(kind[:, None] == 1, 4, 0)).astype(np.int32)
    batch = {"src": np.full((n, 2), 3, np.int32),
             "tgt": np.concatenate([np.ones((n, 1), np.int32), tgt], 1)}  # BOS 1 first
    model = EncoderDecoder(5, 5, num_layers=1, num_heads=2, dim=32, max_src_len=2,
                           max_tgt_len=4, dropout=0.0)
    state = create_train_state(model, make_optimizer("adam", 1e-2), jax.random.PRNGKey(0),
                               (batch["src"], batch["tgt"][:, :-1]))
    step = jax.jit(make_train_step(functools.partial(seq2seq.teacher_forcing_loss,
                                                     pad_id=-1), model))
    for _ in range(150):
        state, _ = step(state, batch)
    src = batch["src"][:1]
    search = lambda beam: seq2seq.beam_search(  # noqa: E731
        model, state.params, jnp.asarray(src), max_len=4, beam_size=beam, eos_id=99)
    (greedy, _), (wide, scores) = search(1), search(125)
    best, score = _brute_force_best(model, state.params, src, 5, 4)
    assert best.tolist() == [4, 4, 4, 4] and int(greedy[0, 0]) == 3, (best, greedy)
    np.testing.assert_array_equal(np.asarray(wide[0]), best)
    assert float(scores[0]) == pytest.approx(score, abs=1e-5)  # measured gap < 1e-6
