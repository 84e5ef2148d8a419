"""Optimizers agree with PyTorch's update rules (written out in numpy), weight decay included."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.errors import UserError
from jaxdl.train.optim import make_optimizer, make_schedule


def _torch_rule(name, p, grads, lr, wd, b1=0.9, b2=0.999, eps=1e-8, alpha=0.99, mom=0.9):
    """torch.optim's documented algorithms (SGD, Adam, AdamW, RMSprop) in float64 numpy."""
    p = p.astype(np.float64).copy()
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        if name != "adamw":
            g = g + wd * p
        if name == "sgd":
            p -= lr * g
        elif name == "momentum":
            m = g if t == 1 else mom * m + g
            p -= lr * m
        elif name in ("adam", "adamw"):
            if name == "adamw":
                p *= 1 - lr * wd
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            p -= lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        elif name == "rmsprop":
            v = alpha * v + (1 - alpha) * g * g
            p -= lr * g / (np.sqrt(v) + eps)
    return p


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "adamw", "rmsprop"])
@pytest.mark.parametrize("wd", [0.0, 1e-2])
def test_matches_pytorch_update_rules(name, wd):
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(7).astype(np.float32)
    grads = [rng.standard_normal(7).astype(np.float32) for _ in range(5)]
    tx = make_optimizer(name, 1e-2, wd)
    p = jnp.asarray(p0)
    state = tx.init(p)
    for g in grads:
        updates, state = tx.update(jnp.asarray(g), state, p)
        p = optax.apply_updates(p, updates)
    np.testing.assert_allclose(np.asarray(p), _torch_rule(name, p0, grads, 1e-2, wd), atol=2e-6)


def test_coupled_and_decoupled_decay_differ():
    p = jnp.ones(3)
    g = jnp.full(3, 0.1)
    outs = []
    for name in ("adam", "adamw"):
        tx = make_optimizer(name, 1e-1, 0.5)
        updates, _ = tx.update(g, tx.init(p), p)
        outs.append(np.asarray(updates))
    assert not np.allclose(outs[0], outs[1])


def test_schedules():
    cos = make_schedule(1.0, "cosine", total_steps=100)
    assert float(cos(0)) == pytest.approx(1.0) and float(cos(100)) == pytest.approx(0.0)
    warm = make_schedule(1.0, "warmup_cosine", total_steps=100, warmup_steps=10)
    # nanoGPT's warmup: lr * (i + 1) / (warmup + 1), then cosine from the peak
    assert [float(warm(i)) for i in (0, 4)] == pytest.approx([1 / 11, 5 / 11])
    assert float(warm(10)) == pytest.approx(1.0) and float(warm(100)) == pytest.approx(0.0)
    flat = make_schedule(2.0, "warmup_constant", warmup_steps=3)
    assert [float(flat(i)) for i in (0, 2, 3, 50)] == pytest.approx([0.5, 1.5, 2.0, 2.0])
    assert float(make_schedule(0.3)(1234)) == pytest.approx(0.3)


def test_unknown_names_are_user_errors():
    with pytest.raises(UserError, match="choose one of"):
        make_optimizer("adagrad", 1e-3)
    with pytest.raises(UserError, match="choose one of"):
        make_schedule(1e-3, "exponential")
