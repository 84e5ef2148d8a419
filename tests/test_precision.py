"""Mixed precision: bfloat16 compute on float32 master weights, for every model and recipe."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl import recipes
from jaxdl.errors import UserError
from jaxdl.nn import MLP, ConvNet, MyNet, RecurrentLM, TextToImage, UNet
from jaxdl.nn.precision import with_dtype
from jaxdl.nn.transformer import DecoderLM, Encoder, EncoderDecoder
from jaxdl.tasks.common import apply_model
from jaxdl.train.optim import make_optimizer, with_state_dtype
from tests import precision_curves
from tests.processes import child_report, optimised_env

BF16 = jnp.bfloat16
TOKENS = jnp.ones((2, 8), jnp.int32)
IMAGES = jnp.ones((2, 16, 16, 3), jnp.float32)

MODELS = {  # name -> (model, positional inputs, keyword inputs)
    "MyNet": (MyNet(), (jnp.ones((2, 48, 48, 3)),), {}),
    "ConvNet+BatchNorm": (ConvNet(batch_norm=True), (IMAGES,), {}),
    "MLP": (MLP((16, 4)), (jnp.ones((2, 5)),), {}),
    "RecurrentLM": (RecurrentLM("lstm", 20, hidden_dim=16, embed_dim=8), (TOKENS,), {}),
    "DecoderLM": (DecoderLM(20, num_layers=1, num_heads=2, dim=16, max_len=8), (TOKENS,), {}),
    "EncoderDecoder": (EncoderDecoder(20, 20, num_layers=1, num_heads=2, dim=16, max_src_len=8,
                                      max_tgt_len=8), (TOKENS, TOKENS), {}),
    "TextToImage": (TextToImage(Encoder(20, num_layers=1, num_heads=2, dim=16, max_len=8),
                                UNet(channels=(8, 16), groups=4, attention_levels=(1,),
                                     cross_attention_levels=(1,), num_heads=2)),
                    (IMAGES, jnp.zeros((2,), jnp.int32), TOKENS), {}),
}


def _dot_dtypes(fn, *args):
    seen = set()

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
                seen.add(tuple(str(v.aval.dtype) for v in eqn.invars))
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return seen


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_computes_in_bfloat16_on_float32_parameters(name):
    model, args, kw = MODELS[name]
    model = with_dtype(model, BF16)  # traced only (shapes and dtypes), nothing computed
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), *args, **kw))
    # Master weights and BatchNorm statistics stay float32.
    assert {str(a.dtype) for a in jax.tree.leaves(variables)} == {"float32"}
    out = jax.eval_shape(lambda v: model.apply(v, *args, **kw, mutable=["batch_stats"])[0],
                         variables)
    assert out.dtype == BF16
    dots = _dot_dtypes(lambda v: model.apply(v, *args, **kw, mutable=["batch_stats"]),
                       variables)
    assert ("bfloat16", "bfloat16") in dots, dots  # the matmuls run in bfloat16
    if name != "RecurrentLM":  # its cells stay float32 (their state crosses every step)
        assert all(d == ("bfloat16", "bfloat16") for d in dots), dots


def test_losses_see_float32_outputs_and_gradients_are_float32():
    model = with_dtype(DecoderLM(20, num_layers=1, num_heads=2, dim=16, max_len=8), BF16)
    params = model.init(jax.random.PRNGKey(0), TOKENS)["params"]
    out, _ = apply_model(model, params, TOKENS, jax.random.PRNGKey(1), False)
    assert out.dtype == jnp.float32
    grads = jax.grad(lambda p: apply_model(model, p, TOKENS, jax.random.PRNGKey(1),
                                           False)[0].sum())(params)
    assert {str(g.dtype) for g in jax.tree.leaves(grads)} == {"float32"}


def test_bfloat16_optimizer_state_halves_the_moments_and_updates_alike():
    params = {"w": jax.random.normal(jax.random.PRNGKey(0), (64, 64))}
    grads = {"w": jax.random.normal(jax.random.PRNGKey(1), (64, 64))}
    f32 = make_optimizer("adamw", 1e-3, 0.1)
    b16 = with_state_dtype(f32, BF16)
    s32, s16 = f32.init(params), b16.init(params)
    floats = lambda s: [a for a in jax.tree.leaves(s) if jnp.issubdtype(a.dtype, jnp.floating)]
    assert {a.dtype for a in floats(s16)} == {jnp.dtype(BF16)}
    assert {a.dtype for a in jax.tree.leaves(s16) if not jnp.issubdtype(a.dtype, jnp.floating)
            } == {jnp.dtype(jnp.int32)}  # Adam's step count stays an integer
    for _ in range(3):
        u32, s32 = f32.update(grads, s32, params)
        u16, s16 = b16.update(grads, s16, params)
        assert u16["w"].dtype == jnp.float32  # the update is computed in float32
        # bfloat16 keeps 8 mantissa bits: the moments (and so the update) agree to ~2^-8.
        np.testing.assert_allclose(u16["w"], u32["w"], rtol=2e-2, atol=1e-6)
    assert sum(a.nbytes for a in floats(s16)) * 2 == sum(a.nbytes for a in floats(s32))
    assert isinstance(b16, optax.GradientTransformation)


def test_the_dtype_keys_reach_every_recipe_and_bad_values_are_named():
    for name in recipes.RECIPES:
        recipe = recipes.get(name)
        config = recipe.get_config()
        assert config.dtype == "float32" and config.opt_state_dtype == "float32", name
        config.dtype = "float16"
        with pytest.raises(UserError, match="'dtype' is 'float16'.*float32, bfloat16"):
            recipe.validate(config)


# 200 steps from the same initialisation and batches. Under jax 0.12.0.1 on a 2-core AMD
# EPYC with AVX-512 (2026-12-04; docs/accelerators.md has the curves): means over 20-step windows
# differ by at most 15.8% (CNN: its dropout 0.5 and augmentation draw the same numbers,
# but rounding sends the two runs down different paths, so single windows wander) and
# 0.35% (decoder LM, its default recipe at 2 layers of 64, batch 12); the means over the
# second 100 steps by 1.0% and 0.16%. (jax 0.10.2 on a Xeon: 8.6% and 0.06% per window.)
# The bounds are about twice to three times those: loose enough for another CPU's
# rounding, tight enough that a broken bfloat16 path (a softmax or loss in bfloat16, a
# lost update) fails: such a run stays near its first loss or diverges.
BOUNDS = {"image_classifier": (0.30, 0.03), "decoder_lm": (0.01, 0.005)}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(BOUNDS))
def test_200_bfloat16_steps_track_the_float32_loss_curve(recipe):
    """In a child at XLA's default optimisation: 400 steps run, two programs compile (the
    CNN's at the suite's optimisation level 0: 94 s, against 39 s)."""
    report = child_report(["-m", "tests.precision_curves", "--report", recipe],
                          env=optimised_env())
    f32, bf16 = np.array(report["float32"]), np.array(report["bfloat16"])
    assert abs(bf16[0] - f32[0]) < 2e-3 * f32[0]  # the same function at step 0
    w32, w16 = precision_curves.windows(f32), precision_curves.windows(bf16)
    rel = np.abs(w16 - w32) / w32
    any_window, second_half = BOUNDS[recipe]
    assert rel.max() < any_window, (w32, w16)
    assert precision_curves.second_half_gap(f32, bf16) < second_half, (w32, w16)
    assert w16[-1] < 0.7 * w16[0]  # and it learned


# ------------------------------------------------------------------ what each recipe traces

RECIPE_SMALL = {  # small enough to trace in a second or two each
    "mlp": {}, "image_classifier": {"dataset": "synthetic"}, "rnn_lm": {},
    "decoder_lm": {"num_layers": 2, "dim": 32, "num_heads": 2,
                   "optimizer": "adamw"},  # Muon's own matmuls are float32 by design
    "seq2seq": {"batch_size": 8},
    "text2img": {"channels": (8, 16), "attention_levels": (1,), "cross_attention_levels": (1,),
                 "text_layers": 1, "batch_size": 8, "groups": 4},
}


def _traced_step(name: str, **overrides):
    """The jaxpr of one train step of recipe `name`, on its first batch (nothing runs)."""
    from jaxdl.train import make_train_step

    recipe = recipes.get(name)
    config = recipe.get_config()
    config.update({**RECIPE_SMALL[name], **overrides})
    data = _data(name)  # dtype and remat do not change the data
    task = recipe.build(config, data)
    state = jax.eval_shape(lambda: task.init_state(config.seed))
    batch = next(iter(recipe.train_loader(config, data).epoch(0)))
    step = make_train_step(task.loss_fn, task.model, preprocess=task.preprocess)
    return jax.make_jaxpr(step)(state, batch).jaxpr


@functools.cache
def _data(name: str):
    recipe = recipes.get(name)
    config = recipe.get_config()
    config.update(RECIPE_SMALL[name])
    return recipe.load_data(config)


def _primitives(jaxpr, into=None) -> list:
    into = [] if into is None else into
    for eqn in jaxpr.eqns:
        into.append(eqn)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            _primitives(sub, into)
    return into


def _matmul_dtypes(jaxpr) -> list:
    return [tuple(str(v.aval.dtype) for v in e.invars) for e in _primitives(jaxpr)
            if e.primitive.name in ("dot_general", "conv_general_dilated")]


@pytest.mark.parametrize("name", sorted(RECIPE_SMALL))
def test_bfloat16_reaches_the_matmuls_of_every_recipes_train_step(name):
    """`--config.dtype=bfloat16` on the recipe, traced through the real train step: the
    forward matmuls and convolutions take bfloat16 inputs (float32 runs have none). Equal
    loss curves alone would pass a build that silently ignored the key."""
    bf16 = _matmul_dtypes(_traced_step(name, dtype="bfloat16"))
    f32 = _matmul_dtypes(_traced_step(name, dtype="float32"))
    assert ("bfloat16", "bfloat16") not in f32
    share = sum(d == ("bfloat16", "bfloat16") for d in bf16) / len(bf16)
    # Measured shares (2026-12-05): mlp 1.0, image_classifier 0.88, seq2seq 0.89, text2img
    # 0.92, decoder_lm 0.90; rnn_lm 0.33, its cells float32 by design (embedding and
    # head only). The rest take a float32 gradient against bfloat16 activations.
    assert share >= (0.25 if name == "rnn_lm" else 0.75), (name, share, sorted(set(bf16)))


REMAT = ["decoder_lm", "seq2seq", "text2img"]  # the recipes with a `remat` key


@pytest.mark.parametrize("name", REMAT)
def test_remat_puts_a_checkpoint_in_every_recipe_that_offers_it(name):
    """`--config.remat` block and full wrap the blocks in `jax.checkpoint` (the jaxpr's
    remat primitive), counted per layer; none has none."""
    def count(policy):
        jaxpr = _traced_step(name, remat=policy)
        return sum(e.primitive.name in ("remat2", "checkpoint") for e in _primitives(jaxpr))

    assert count("none") == 0
    assert count("block") >= 2 and count("full") >= 2, (count("block"), count("full"))
