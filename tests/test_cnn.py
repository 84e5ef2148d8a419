"""MyNet: the reference's exact layer sizes, and its logits against the PyTorch golden file."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from golden_mynet import GOLDEN, formula_state_dict

from jaxdl.errors import UserError
from jaxdl.nn import ConvNet, MyNet, mynet_params_from_torch


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_mynet_parameter_counts_match_the_reference():
    params = nn.unbox(MyNet(num_classes=10).init(jax.random.PRNGKey(0),
                                                jnp.zeros((1, 48, 48, 3)))["params"])
    counts = {name: _count(p) for name, p in params.items()}
    assert counts == {"conv1": 896, "conv2": 18_496, "conv3": 73_856, "fc1": 9_437_696,
                      "fc2": 5_130}
    assert params["fc1"]["kernel"].shape == (18_432, 512)


def test_mynet_logits_match_pytorch_golden():
    golden = np.load(GOLDEN)
    params = mynet_params_from_torch(formula_state_dict())
    x_nhwc = golden["input_nchw"].transpose(0, 2, 3, 1)
    logits = MyNet(num_classes=10).apply({"params": params}, x_nhwc)
    np.testing.assert_allclose(np.asarray(logits), golden["logits"], atol=1e-4, rtol=0)
    # The fc1 permutation matters: a plain transpose without it gives other logits.
    naive = dict(params)
    naive["fc1"] = {"kernel": formula_state_dict()["fc1.weight"].T, "bias": params["fc1"]["bias"]}
    wrong = MyNet(num_classes=10).apply({"params": naive}, x_nhwc)
    assert np.max(np.abs(np.asarray(wrong) - golden["logits"])) > 1e-2


def test_dropout_only_in_training():
    model = MyNet()
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 48, 48, 3))
    params = model.init(jax.random.PRNGKey(0), x)["params"]
    eval1 = model.apply({"params": params}, x, train=False)
    eval2 = model.apply({"params": params}, x, train=False)
    np.testing.assert_array_equal(eval1, eval2)
    t1 = model.apply({"params": params}, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
    t2 = model.apply({"params": params}, x, train=True, rngs={"dropout": jax.random.PRNGKey(3)})
    assert not np.allclose(t1, t2)


@pytest.mark.parametrize("shape, dtype, match", [
    ((4, 48, 48), jnp.float32, "shape"),            # wrong rank
    ((4, 28, 28, 3), jnp.float32, "48x48"),         # wrong size
    ((4, 48, 48, 1), jnp.float32, "3 channels"),    # wrong channel count
    ((4, 3, 48, 48), jnp.float32, "channels last"),  # NCHW by mistake
    ((4, 48, 48, 3), jnp.uint8, "float images"),    # not float
])
def test_mynet_rejects_bad_batches_before_compiling(shape, dtype, match):
    with pytest.raises(UserError, match=match):
        jax.eval_shape(MyNet().init, jax.random.PRNGKey(0), jnp.zeros(shape, dtype))


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_convnet_pools_and_batchnorm(pool):
    model = ConvNet(num_classes=3, features=(8, 16), dense=(32,), pool=pool, batch_norm=True)
    x = jnp.ones((2, 28, 28, 1))
    variables = model.init(jax.random.PRNGKey(0), x)
    assert "batch_stats" in variables
    out = model.apply(variables, x)
    assert out.shape == (2, 3)


def test_mynet_uses_pytorch_default_init_bounds():
    params = nn.unbox(MyNet().init(jax.random.PRNGKey(0), jnp.zeros((1, 48, 48, 3)))["params"])
    for name, fan_in in (("conv1", 27), ("conv2", 288), ("conv3", 576), ("fc1", 18432),
                         ("fc2", 512)):
        bound = 1 / np.sqrt(fan_in)
        for leaf in ("kernel", "bias"):
            w = np.asarray(params[name][leaf])
            assert np.abs(w).max() <= bound * (1 + 1e-6)
            assert w.size < 100 or np.abs(w).max() > 0.9 * bound
        # uniform on [-b, b]: standard deviation b / sqrt(3)
        assert np.std(params[name]["kernel"]) == pytest.approx(bound / np.sqrt(3), rel=0.05)


def test_max_pool_2x2_gradient_equals_flax_max_pool():
    """MyNet's pool has a hand-written (faster on CPU) gradient; it must be reduce_window's
    rule exactly: the first maximum of each window in row-major order gets the gradient,
    ties included (quantised inputs make many ties)."""
    import flax.linen as nn

    from jaxdl.nn.cnn import max_pool_2x2

    x = jnp.round(jax.random.uniform(jax.random.PRNGKey(0), (2, 8, 6, 3)) * 3.0)  # ties
    g = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 3, 3))
    ref = lambda x: jnp.sum(nn.max_pool(x, (2, 2), strides=(2, 2)) * g)  # noqa: E731
    ours = lambda x: jnp.sum(max_pool_2x2(x) * g)  # noqa: E731
    np.testing.assert_array_equal(max_pool_2x2(x), nn.max_pool(x, (2, 2), strides=(2, 2)))
    np.testing.assert_array_equal(jax.grad(ours)(x), jax.grad(ref)(x))
    np.testing.assert_array_equal(jax.jit(jax.grad(ours))(x), jax.jit(jax.grad(ref))(x))
