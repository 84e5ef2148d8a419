"""Rematerialisation (`--config.remat`): the same gradients. (Its memory saving is for
accelerators: XLA:CPU's compiled steps measured here keep slightly more temporary memory
with remat, 368 -> 402 MB for a 4-layer, 128-wide LM at batch 32 x 128; docs/recipes.md.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.errors import UserError
from jaxdl.nn.remat import remat_block
from jaxdl.nn.transformer import DecoderLM
from jaxdl.nn.unet import UNet
from jaxdl.tasks import language


def _lm(remat):
    return DecoderLM(65, num_layers=3, num_heads=2, dim=64, max_len=32, dropout=0.1,
                     remat=remat)


def _grad_fn(model, loss):
    return jax.jit(jax.grad(loss))


def test_decoder_lm_gradients_equal_under_remat_and_decoding_is_unchanged():
    tokens = jax.random.randint(jax.random.PRNGKey(0), (8, 33), 0, 65)
    batch = {"tokens": tokens}
    params = _lm("none").init(jax.random.PRNGKey(1), tokens[:, :-1])["params"]
    grads = {}
    for remat in ("none", "block", "full"):
        model = _lm(remat)

        def loss(p, model=model):  # dropout on: the same rng draws under remat
            return language.next_token_loss(p, batch, jax.random.PRNGKey(2), model, True)[0]

        grads[remat] = jax.jit(jax.grad(loss))(params)
    for remat in ("block", "full"):
        for a, b in zip(jax.tree.leaves(grads["none"]), jax.tree.leaves(grads[remat]),
                        strict=True):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-6, rtol=1e-5)
    # decoding (the KV cache) never rematerialises: the same params generate the same ids
    ids = language.generate_cached(_lm("full"), params, np.array([1, 2, 3]), 5,
                                   jax.random.PRNGKey(0), temperature=0)
    np.testing.assert_array_equal(ids, language.generate_cached(
        _lm("none"), params, np.array([1, 2, 3]), 5, jax.random.PRNGKey(0), temperature=0))


def test_unet_gradients_equal_under_remat():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 1))
    t = jnp.array([3, 40])
    ctx = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 16))
    cmask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)

    def make(remat):
        return UNet(channels=(8, 16), attention_levels=(1,), cross_attention_levels=(1,),
                    num_heads=2, groups=4, num_timesteps=50, dropout=0.1, remat=remat)

    params = make("none").init(jax.random.PRNGKey(2), x, t, ctx, cmask)["params"]
    grads = {}
    for remat in ("none", "full"):
        model = make(remat)
        loss = lambda p, model=model: jnp.mean(model.apply(  # noqa: E731
            {"params": p}, x, t, ctx, cmask, train=True,
            rngs={"dropout": jax.random.PRNGKey(3)}) ** 2)
        grads[remat] = jax.jit(jax.grad(loss))(params)
    for a, b in zip(jax.tree.leaves(grads["none"]), jax.tree.leaves(grads["full"]),
                    strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-6, rtol=1e-5)


def test_unknown_remat_is_one_line():
    with pytest.raises(UserError, match="unknown remat 'all'; choose one of none, block, full"):
        remat_block(object, "all")
