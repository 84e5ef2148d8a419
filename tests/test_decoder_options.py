"""The decoder's modern options (rotary, RMSNorm, QK-norm, ReLU^2 / SwiGLU, untied head,
zero-initialised output projections, logit soft-capping), Muon with AdamW, and the
schedules that decay to zero: shapes, causality, KV-cache equality, what each one means."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax.contrib import MuonDimensionNumbers

from jaxdl.nn.rotary import rotate
from jaxdl.nn.transformer import DecoderLM, init_cache
from jaxdl.recipes import decoder_lm
from jaxdl.train import make_schedule, muon_adamw

OPTIONS = {
    "rotary": dict(positional="rotary"),
    "rmsnorm": dict(norm="rmsnorm"),
    "qk_norm": dict(qk_norm=True),
    "relu2": dict(mlp="relu2"),
    "swiglu": dict(mlp="swiglu", mlp_dim=48),
    "untied": dict(tie_embeddings=False),
    "zero_init_out": dict(zero_init_out=True),
    "softcap": dict(logit_softcap=2.0),
    "all": dict(positional="rotary", norm="rmsnorm", qk_norm=True, mlp="relu2",
                tie_embeddings=False, logit_softcap=15.0),
}


def _lm(**kw):
    model = DecoderLM(65, **(dict(num_layers=2, num_heads=4, dim=32, max_len=16) | kw))
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 16), 0, 65)
    params = nn.unbox(model.init(jax.random.PRNGKey(0), tokens)["params"])
    if kw.get("zero_init_out"):  # a trained-looking model: the zeros moved away
        params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(
            jax.random.PRNGKey(2), p.shape), params)
    return model, params, tokens


@pytest.mark.parametrize("option", OPTIONS)
def test_shapes_causality_and_kv_cache(option):
    model, params, tokens = _lm(**OPTIONS[option])
    full = model.apply({"params": params}, tokens)
    assert full.shape == (2, 16, 65) and full.dtype == jnp.float32
    changed = model.apply({"params": params}, tokens.at[:, 9].set((tokens[:, 9] + 1) % 65))
    np.testing.assert_array_equal(full[:, :9], changed[:, :9])
    assert np.abs(np.asarray(full[:, 9:] - changed[:, 9:])).max() > 1e-4
    # A prompt of 5 in one pass, then one token at a time: the full pass's logits.
    decode = jax.jit(lambda cache, x: model.apply({"params": params, "cache": cache}, x,
                                                  decode=True, mutable=["cache"]))
    out, mutated = decode(init_cache(model, params, 2), tokens[:, :5])
    outs = [out]
    for t in range(5, 16):
        out, mutated = decode(mutated["cache"], tokens[:, t:t + 1])
        outs.append(out)
    np.testing.assert_allclose(jnp.concatenate(outs, 1), full, atol=1e-5)


def test_rotary_scores_depend_only_on_the_distance():
    q = jax.random.normal(jax.random.PRNGKey(0), (1, 1, 1, 8))
    k = jax.random.normal(jax.random.PRNGKey(1), (1, 1, 1, 8))
    score = lambda i, j: float(jnp.sum(rotate(q, jnp.array([i])) *  # noqa: E731
                                       rotate(k, jnp.array([j]))))
    assert score(7, 3) == pytest.approx(score(104, 100), abs=1e-4)
    assert score(7, 3) != pytest.approx(score(7, 4), abs=1e-3)
    np.testing.assert_allclose(rotate(q, jnp.array([0])), q, atol=1e-7)  # position 0: unchanged
    np.testing.assert_allclose(jnp.linalg.norm(rotate(q, jnp.array([9]))), jnp.linalg.norm(q),
                               rtol=1e-6)  # a rotation keeps lengths


def test_what_each_option_puts_in_the_parameters():
    base = _lm()[1]
    assert "table" in base["pos"] and "bias" in base["block0"]["ln_self"]
    assert "head" not in base
    p = _lm(**OPTIONS["all"])[1]
    assert "pos" not in p  # rotary: nothing learned
    assert set(p["block0"]["ln_self"]) == {"scale"}  # RMSNorm: a gain, no bias
    assert p["block0"]["self_attn"]["query_norm"]["scale"].shape == (8,)  # per head width
    assert p["head"]["kernel"].shape == (32, 65)  # untied
    sw = _lm(**OPTIONS["swiglu"])[1]["block0"]["mlp"]
    assert {k: v["kernel"].shape for k, v in sw.items()} == {
        "gate": (32, 48), "fc": (32, 48), "proj": (48, 32)}


def test_zero_init_blocks_start_as_the_identity():
    model = DecoderLM(65, num_layers=2, num_heads=4, dim=32, max_len=16, zero_init_out=True)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 16), 0, 65)
    params = nn.unbox(model.init(jax.random.PRNGKey(0), tokens)["params"])
    for b in ("block0", "block1"):
        assert not np.any(params[b]["self_attn"]["out"]["kernel"])
        assert not np.any(params[b]["mlp"]["proj"]["kernel"])
    one = DecoderLM(65, num_layers=0, num_heads=4, dim=32, max_len=16)
    kept = {k: params[k] for k in ("embed", "pos", "ln_final")}
    np.testing.assert_allclose(model.apply({"params": params}, tokens),
                               one.apply({"params": kept}, tokens), atol=1e-6)


def test_softcap_bounds_the_logits():
    model, params, tokens = _lm(logit_softcap=2.0)
    params["embed"]["embedding"] = params["embed"]["embedding"] * 100  # huge raw logits
    logits = model.apply({"params": params}, tokens)
    assert float(jnp.abs(logits).max()) <= 2.0 and float(jnp.abs(logits).max()) > 1.9


def test_unknown_options_are_one_line_errors():
    from jaxdl.errors import UserError

    for kw, needle in ((dict(norm="batchnorm"), "unknown norm 'batchnorm'"),
                       (dict(mlp="tanh"), "unknown mlp 'tanh'"),
                       (dict(positional="alibi"), "unknown positional encoding 'alibi'")):
        with pytest.raises(UserError, match=needle):
            _lm(**kw)


# ------------------------------------------------------------------ optimizer, schedules


def _default_params():
    config = decoder_lm.DecoderLanguageModel().get_config()
    config.update(num_layers=2, dim=32, num_heads=4, seq_len=16)
    model = decoder_lm.build_model(config, 65)
    return config, nn.unbox(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16), jnp.int32))[
        "params"])


def test_muon_labels_the_hidden_matrices_and_leaves_the_rest_to_adamw():
    _, params = _default_params()
    labels = decoder_lm.muon_dimensions(params)
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): v for path, v in
            jax.tree_util.tree_flatten_with_path(labels, is_leaf=lambda x: x is None or isinstance(
                x, MuonDimensionNumbers))[0]}
    muon = sorted(k for k, v in flat.items() if v is not None)
    assert muon == sorted(f"block{i}/{m}/kernel" for i in (0, 1) for m in (
        "self_attn/query", "self_attn/key", "self_attn/value", "self_attn/out", "mlp/fc",
        "mlp/proj"))
    adam = {k for k, v in flat.items() if v is None}
    assert {"embed/embedding", "head/kernel", "ln_final/scale",
            "block0/self_attn/query_norm/scale"} <= adam
    assert flat["block0/self_attn/out/kernel"].reduction_axis == (0, 1)


def test_muon_updates_are_orthogonal_adamw_updates_are_lr_sized():
    config, params = _default_params()
    tx = muon_adamw(0.02, 1e-3, decoder_lm.muon_dimensions, beta=0.0)
    grads = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(3), p.shape), params)
    updates, _ = tx.update(grads, tx.init(params), params)
    fc = np.asarray(updates["block0"]["mlp"]["fc"]["kernel"]) / -0.02  # (32, 128)
    s = np.linalg.svd(fc / np.sqrt(128 / 32), compute_uv=False)  # optax's width scaling
    assert 0.5 < s.min() and s.max() < 1.3, s  # Newton-Schulz: singular values near 1
    q = np.asarray(updates["block0"]["self_attn"]["query"]["kernel"]).reshape(32, 32) / -0.02
    s = np.linalg.svd(q, compute_uv=False)
    assert 0.5 < s.min() and s.max() < 1.3, s  # the whole (embed, heads x kv) matrix
    # (N)Adam's first step: about lr per entry against the gradient's sign, whatever its size
    emb, g = np.asarray(updates["embed"]["embedding"]), np.asarray(grads["embed"]["embedding"])
    assert np.all(np.sign(emb) == -np.sign(g))
    assert 0.8e-3 < np.median(np.abs(emb)) < 2e-3


def test_the_recipe_trains_both_optimizers():
    """A few steps of each on the same batch lower the loss (Muon and AdamW through the
    recipe's own optimizer builder)."""
    from jaxdl.tasks import language
    from jaxdl.train import create_train_state, make_train_step

    tokens = jax.random.randint(jax.random.PRNGKey(5), (4, 17), 0, 65)
    for optimizer in ("muon", "adamw"):
        config = decoder_lm.DecoderLanguageModel().get_config()
        config.update(num_layers=2, dim=32, num_heads=4, seq_len=16, num_steps=20,
                      warmup_steps=2, optimizer=optimizer)
        model, tx, _ = decoder_lm.build_model_and_optimizer(config, 65)
        state = create_train_state(model, tx, jax.random.PRNGKey(0), tokens[:, :16])
        step = jax.jit(make_train_step(language.next_token_loss, model))
        losses = []
        for _ in range(8):
            state, m = step(state, {"tokens": tokens})
            losses.append(float(m["loss_sum"] / m["count"]))
        assert losses[-1] < losses[0] - 0.5, (optimizer, losses)


def test_warmup_then_linear_or_cosine_decay_to_zero():
    lin = make_schedule(1.0, "warmup_linear", total_steps=100, warmup_steps=10)
    cos = make_schedule(1.0, "warmup_cosine", total_steps=100, warmup_steps=10)
    for s in (lin, cos):
        assert float(s(0)) == pytest.approx(1 / 11) and float(s(10)) == pytest.approx(1.0)
        assert float(s(100)) == pytest.approx(0.0, abs=1e-7)
    assert float(lin(55)) == pytest.approx(0.5)
    assert float(cos(55)) == pytest.approx(0.5, abs=1e-6)
    floor = make_schedule(1.0, "warmup_linear", total_steps=100, warmup_steps=10,
                          min_learning_rate=0.1)
    assert float(floor(100)) == pytest.approx(0.1)


def test_nanogpt_config_and_older_workdirs_mean_nanogpts_model():
    recipe = decoder_lm.DecoderLanguageModel()
    nano = recipe.nanogpt_config()
    assert (nano.positional, nano.norm, nano.mlp, nano.optimizer, nano.tie_embeddings) == (
        "learned", "layernorm", "gelu", "adamw", True)
    old = recipe.nanogpt_config()
    for key in ("norm", "qk_norm", "mlp", "tie_embeddings", "zero_init_out", "logit_softcap",
                "optimizer", "schedule"):
        del old[key]  # a config.json written before these keys existed
    model = decoder_lm.build_model(old, 65)
    assert (model.norm, model.mlp, model.tie_embeddings, model.logit_softcap) == (
        "layernorm", "gelu", True, 0.0)
    tx = decoder_lm.build_model_and_optimizer(old, 65)[1]
    assert isinstance(tx, optax.GradientTransformation)
