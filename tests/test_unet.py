"""The UNet and the text-to-image module: shapes (traced only, nothing compiled), errors,
the time embedding, and that cross-attention reads the text but not its padding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.errors import UserError
from jaxdl.nn.text2img import TextToImage
from jaxdl.nn.transformer import Encoder, sinusoidal_table
from jaxdl.nn.unet import UNet, time_embedding


def _shapes(model, *args):
    out, variables = jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), *args))
    return out, variables["params"]


def test_unet_output_shape_for_32_and_28_pixel_images():
    unet = UNet(channels=(16, 32, 32), cross_attention_levels=(1, 2), groups=8)
    ctx, mask = jnp.zeros((2, 7, 24)), jnp.ones((2, 7), bool)
    for size in (32, 28):  # 28 = 4 * 7: three levels need H, W divisible by 4
        x = jnp.zeros((2, size, size, 1))
        out, params = _shapes(unet, x, jnp.zeros((2,), jnp.int32), ctx, mask)
        assert out.shape == x.shape
    names = set(params)
    assert {"down2_0_attn", "down1_0_cross", "down2_0_cross", "mid_attn", "mid_cross"} <= names
    assert not {"down0_0_cross", "down1_0_attn"} & names  # only where configured


def test_text_to_image_shapes_and_bad_inputs():
    model = TextToImage(Encoder(20, num_layers=1, num_heads=2, dim=16, max_len=10),
                        UNet(channels=(8, 16), attention_levels=(1,), cross_attention_levels=(1,),
                             groups=4, num_timesteps=50))
    x, t = jnp.zeros((3, 16, 16, 1)), jnp.zeros((3,), jnp.int32)
    out, params = _shapes(model, x, t, jnp.ones((3, 10), jnp.int32))
    assert out.shape == x.shape and set(params) == {"encoder", "unet"}
    with pytest.raises(UserError, match="divisible by 2"):
        _shapes(model, jnp.zeros((3, 15, 15, 1)), t, jnp.ones((3, 10), jnp.int32))
    with pytest.raises(UserError, match="longer than the model's context"):
        _shapes(model, x, t, jnp.ones((3, 11), jnp.int32))
    with pytest.raises(UserError, match="groups"):
        _shapes(UNet(channels=(12,), groups=8, cross_attention_levels=()), x, t)
    with pytest.raises(UserError, match="pass context"):
        _shapes(UNet(channels=(8,), groups=4), x, t)


def test_time_embedding_is_the_sinusoidal_table():
    emb = time_embedding(jnp.array([0, 3, 49, 70]), 8, 50)
    table = sinusoidal_table(50, 8)
    np.testing.assert_allclose(emb[:3], table[[0, 3, 49]], atol=1e-6)
    np.testing.assert_allclose(emb[3], table[49], atol=1e-6)  # clipped to the last step


def test_cross_attention_reads_text_and_ignores_padding():
    unet = UNet(channels=(8,), attention_levels=(), cross_attention_levels=(0,), num_heads=2,
                groups=4, num_timesteps=10)
    k = jax.random.split(jax.random.PRNGKey(0), 2)
    x, t = jax.random.normal(k[0], (2, 8, 8, 1)), jnp.array([3, 7])
    ctx = jax.random.normal(k[1], (2, 5, 12))
    mask = jnp.array([[True, True, True, False, False]] * 2)
    # random values everywhere (a fresh UNet's zero-initialised output layers would give 0),
    # drawn by numpy from the traced shapes: nothing to compile but the apply
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(0.3 * rng.standard_normal(s.shape), s.dtype),
                          _shapes(unet, x, t, ctx, mask)[1])
    apply = jax.jit(lambda c: unet.apply({"params": params}, x, t, c, mask))
    base = apply(ctx)
    padded = ctx.at[:, 3:].set(100.0)  # only masked positions change
    np.testing.assert_allclose(apply(padded), base, atol=1e-5)
    assert float(jnp.abs(apply(ctx.at[:, 1].add(1.0)) - base).max()) > 1e-3
