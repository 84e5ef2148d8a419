"""Hand-written backpropagation equals jax.grad, and its SGD steps learn, on real data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_digits

from jaxdl.nn import backprop


def _digits(n=200):
    d = load_digits()
    return d.data[:n] / 16.0, d.target[:n].astype(np.int32)


def _diabetes(n=200):
    d = load_diabetes()
    x, y = d.data[:n], d.target[:n]
    x = (x - x.mean(0)) / x.std(0)
    y = (y - y.mean()) / y.std()
    return x, y


def _problem(loss):
    """(x, y, n_out): digits for softmax CE (10 classes), diabetes for MSE (one output)."""
    if loss == "softmax_ce":
        x, y = _digits()
        return x, y, 10
    x, y = _diabetes()
    return x, y, 1


@pytest.mark.parametrize("loss", backprop.HAND_LOSSES)
@pytest.mark.parametrize("activation", backprop.HAND_ACTIVATIONS)
def test_hand_gradients_equal_autodiff(activation, loss):
    with jax.enable_x64(True):
        x, y, n_out = _problem(loss)
        x, y = jnp.asarray(x, jnp.float64), jnp.asarray(y)
        params = backprop.init_two_layer(jax.random.PRNGKey(0), x.shape[1], 32, n_out)
        assert params["W1"].dtype == jnp.float64
        value, grads = backprop.loss_and_grads(params, x, y, activation, loss)
        ref_value, ref_grads = backprop.autodiff_grads(params, x, y, activation, loss)
        np.testing.assert_allclose(value, ref_value, rtol=0, atol=1e-12)
        assert set(grads) == set(ref_grads) == {"W1", "b1", "W2", "b2"}
        for k in grads:
            assert grads[k].shape == params[k].shape
            assert float(jnp.max(jnp.abs(ref_grads[k]))) > 0  # a real, non-zero gradient
            np.testing.assert_allclose(grads[k], ref_grads[k], rtol=0, atol=1e-6, err_msg=k)
        assert backprop.max_grad_difference(grads, ref_grads) < 1e-10


@pytest.mark.parametrize("loss", backprop.HAND_LOSSES)
@pytest.mark.parametrize("activation", backprop.HAND_ACTIVATIONS)
def test_hand_sgd_steps_reduce_the_loss(activation, loss):
    x, y, n_out = _problem(loss)
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y)
    params = backprop.init_two_layer(jax.random.PRNGKey(1), x.shape[1], 32, n_out)
    lr = 0.5 if loss == "softmax_ce" else 0.1  # MSE on standardised targets: smaller steps
    step = jax.jit(backprop.loss_and_grads, static_argnames=("activation", "loss"))
    losses = []
    for _ in range(30):
        value, grads = step(params, x, y, activation=activation, loss=loss)
        losses.append(float(value))
        params = backprop.sgd_update(params, grads, lr)
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.85 * losses[0], losses
    assert losses[1] < losses[0]  # the very first step already goes downhill


def test_forward_cache_and_errors():
    x, _ = _digits(8)
    params = backprop.init_two_layer(jax.random.PRNGKey(0), 64, 5, 3)
    out, cache = backprop.forward(params, jnp.asarray(x, jnp.float32), "tanh")
    assert out.shape == (8, 3) and cache["z1"].shape == cache["h"].shape == (8, 5)
    np.testing.assert_allclose(cache["h"], np.tanh(cache["z1"]), rtol=1e-6)
    with pytest.raises(ValueError, match="activation"):
        backprop.forward(params, x, "gelu")
    with pytest.raises(ValueError, match="loss"):
        backprop.loss_and_grads(params, x, np.zeros(8, np.int32), "relu", "hinge")
