"""Backpropagation written out by hand for a two-layer MLP, in plain jax.numpy (no autodiff).

    x -> z1 = x W1 + b1 -> h = act(z1) -> out = h W2 + b2

The four steps of backpropagation:

1. Forward pass: compute and keep every intermediate (z1, h, out).
2. Loss: compare `out` with the targets (mean squared error, or softmax cross-entropy
   on integer labels), averaged over the batch.
3. Backward pass (chain rule): start from dL/dout and walk the graph in reverse;
   each layer turns the gradient of its output into gradients of its parameters and
   of its input (dL/dW2 = h^T dout, dL/dh = dout W2^T, dL/dz1 = dL/dh * act'(z1), ...).
4. Update: step every parameter against its gradient, p <- p - lr * dL/dp (SGD).

`jax.grad` does step 3 for you; `tests/test_backprop.py` checks that these hand-written
gradients equal it. Training in the library itself always uses autodiff.
"""

import jax
import jax.numpy as jnp

from jaxdl.errors import UserError
from jaxdl.nn.mlp import get_activation

HAND_ACTIVATIONS = ("sigmoid", "tanh", "relu")
HAND_LOSSES = ("mse", "softmax_ce")


def init_two_layer(rng: jax.Array, n_in: int, n_hidden: int, n_out: int,
                   dtype=None) -> dict:
    """Params {'W1' (n_in, n_hidden), 'b1', 'W2' (n_hidden, n_out), 'b2'}; LeCun-normal weights.

    `dtype` defaults to JAX's default float (float64 under `jax.enable_x64()`).
    """
    dtype = dtype or jnp.zeros(()).dtype
    k1, k2 = jax.random.split(rng)
    return {
        "W1": jax.random.normal(k1, (n_in, n_hidden), dtype) / jnp.sqrt(n_in),
        "b1": jnp.zeros((n_hidden,), dtype),
        "W2": jax.random.normal(k2, (n_hidden, n_out), dtype) / jnp.sqrt(n_hidden),
        "b2": jnp.zeros((n_out,), dtype),
    }


def _check_activation(activation: str) -> None:
    if activation not in HAND_ACTIVATIONS:
        raise UserError(f"hand-written backprop supports activations "
                         f"{', '.join(HAND_ACTIVATIONS)}; got {activation!r}")


def activation_derivative(activation: str, z1: jax.Array, h: jax.Array) -> jax.Array:
    """act'(z1), using the already computed h = act(z1) where that is cheaper."""
    _check_activation(activation)
    if activation == "sigmoid":
        return h * (1.0 - h)  # s'(z) = s(z) (1 - s(z))
    if activation == "tanh":
        return 1.0 - h * h  # tanh'(z) = 1 - tanh(z)^2
    return (z1 > 0).astype(z1.dtype)  # relu'(z) = 1 if z > 0 else 0 (0 at z = 0)


def forward(params: dict, x: jax.Array, activation: str = "relu"):
    """Step 1, the forward pass: returns `(out, cache)`; cache keeps x, z1 and h for step 3."""
    _check_activation(activation)
    x = x.reshape((x.shape[0], -1))
    z1 = x @ params["W1"] + params["b1"]  # (batch, hidden) pre-activation
    h = get_activation(activation)(z1)  # (batch, hidden) hidden activations
    out = h @ params["W2"] + params["b2"]  # (batch, n_out) outputs / logits
    return out, {"x": x, "z1": z1, "h": h}


def loss_value(out: jax.Array, y: jax.Array, loss: str = "mse") -> jax.Array:
    """Step 2, the loss, on the network output (also usable with `jax.grad` for checking).

    mse: mean over batch and outputs of (out - y)^2 (as `jaxdl.tasks.classify.mse`).
    softmax_ce: mean over the batch of -log softmax(out)[y], y integer labels.
    """
    if loss == "mse":
        return jnp.mean((out - y.reshape(out.shape).astype(out.dtype)) ** 2)
    if loss == "softmax_ce":
        log_p = jax.nn.log_softmax(out, axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_p, y.astype(jnp.int32)[:, None], axis=-1))
    raise UserError(f"unknown loss {loss!r}; choose one of {', '.join(HAND_LOSSES)}")


def loss_and_grads(params: dict, x: jax.Array, y: jax.Array, activation: str = "relu",
                   loss: str = "mse"):
    """Steps 1-3: forward, loss, and the gradients by the chain rule; returns `(loss, grads)`."""
    # Step 1: forward pass, keeping the intermediates.
    out, cache = forward(params, x, activation)
    x, z1, h = cache["x"], cache["z1"], cache["h"]
    n = out.shape[0]

    # Step 2: the loss.
    value = loss_value(out, y, loss)

    # Step 3: backward pass.
    # dL/dout: derivative of the loss with respect to the network output.
    if loss == "mse":
        # L = 1/(n k) sum (out - y)^2  =>  dL/dout = 2 (out - y) / (n k)
        dout = 2.0 * (out - y.reshape(out.shape).astype(out.dtype)) / out.size
    else:
        # L = -1/n sum log softmax(out)[y]  =>  dL/dout = (softmax(out) - onehot(y)) / n
        probs = jax.nn.softmax(out, axis=-1)
        dout = (probs - jax.nn.one_hot(y, out.shape[-1], dtype=out.dtype)) / n
    # Output layer, out = h W2 + b2:
    dW2 = h.T @ dout  # dL/dW2 = h^T dL/dout          (hidden, n_out)
    db2 = jnp.sum(dout, axis=0)  # dL/db2 = sum over the batch of dL/dout
    dh = dout @ params["W2"].T  # dL/dh = dL/dout W2^T        (batch, hidden)
    # Activation, h = act(z1), elementwise:
    dz1 = dh * activation_derivative(activation, z1, h)  # dL/dz1 = dL/dh * act'(z1)
    # Hidden layer, z1 = x W1 + b1:
    dW1 = x.T @ dz1  # dL/dW1 = x^T dL/dz1           (n_in, hidden)
    db1 = jnp.sum(dz1, axis=0)  # dL/db1 = sum over the batch of dL/dz1
    return value, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def sgd_update(params: dict, grads: dict, lr: float) -> dict:
    """Step 4, the update: p <- p - lr * dL/dp for every parameter."""
    return {k: params[k] - lr * grads[k] for k in params}


def autodiff_grads(params: dict, x: jax.Array, y: jax.Array, activation: str = "relu",
                   loss: str = "mse"):
    """The same loss differentiated by `jax.grad`, to check `loss_and_grads` against."""

    def f(p):
        return loss_value(forward(p, x, activation)[0], y, loss)

    return jax.value_and_grad(f)(params)


def max_grad_difference(a: dict, b: dict) -> float:
    """Largest absolute difference between two gradient dicts."""
    return max(float(jnp.max(jnp.abs(a[k] - b[k]))) for k in a)
