"""fit(): epochs, the reference's epoch line, checkpoints each epoch, exact resume; real data."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.data import sources, transforms
from jaxdl.data.loader import ArrayLoader
from jaxdl.nn import MLP, ConvNet
from jaxdl.tasks import classify
from jaxdl.train import create_train_state, make_eval_step, make_optimizer, make_train_step
from jaxdl.train.compile import compile_step
from jaxdl.train.loop import evaluate, fit

LOSS = functools.partial(classify.softmax_cross_entropy, input_key="x")


def _setup(seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, 90).astype(np.int32)
    x = (np.eye(3, 5)[labels] * 2 + 0.4 * rng.standard_normal((90, 5))).astype(np.float32)
    model = MLP((16, 3), dropout=0.1)
    state = create_train_state(model, make_optimizer("adam", 1e-2), jax.random.PRNGKey(seed),
                               jnp.zeros((1, 5)))
    step = compile_step(make_train_step(LOSS, model))
    return state, step, ArrayLoader({"x": x, "label": labels}, 16, seed=seed)


def test_fit_prints_epoch_lines_and_checkpoints(tmp_path, capsys):
    state, step, loader = _setup()
    state, history = fit(state, step, loader, workdir=tmp_path, epochs=2)
    out = capsys.readouterr().out
    assert "[Epoch 1] loss = " in out and "| accuracy = " in out and "[Epoch 2]" in out
    assert int(state.step) == 2 * loader.batches_per_epoch == 12
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [
        "12", "6"]
    assert history[1]["loss"] < history[0]["loss"]
    rows = [json.loads(r) for r in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["epoch"]) for r in rows if "epoch" in r] == [(6, 1), (12, 2)]
    assert [r["epoch/loss"] for r in rows if "epoch" in r] == [h["loss"] for h in history]


def test_resume_continues_exactly(tmp_path, capsys):
    state0, step, loader = _setup()
    straight, _ = fit(state0, step, loader, workdir=tmp_path / "a", epochs=3)
    state0, step, loader = _setup()
    fit(state0, step, loader, workdir=tmp_path / "b", epochs=1)
    state0, step, loader = _setup()  # a fresh process would start from scratch like this
    resumed, history = fit(state0, step, loader, workdir=tmp_path / "b", epochs=3)
    assert "Resuming from checkpoint step 6" in capsys.readouterr().out
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_mid_epoch_from_step_checkpoint(tmp_path):
    state0, step, loader = _setup()
    straight, _ = fit(state0, step, loader, workdir=tmp_path / "a", epochs=2)
    state0, step, loader = _setup()
    fit(state0, step, loader, workdir=tmp_path / "b", num_steps=8)  # stops inside epoch 2
    state0, step, loader = _setup()
    resumed, _ = fit(state0, step, loader, workdir=tmp_path / "b", epochs=2)
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_small_convnet_learns_real_mnist_digits(tmp_path):
    """The real path on real data: embedded MNIST, on-device reference transforms, 2 epochs."""
    split = sources.mnist_5k_split()
    model = ConvNet(num_classes=10, features=(16, 32), dense=(64,))
    state = create_train_state(model, make_optimizer("adam", 2e-3, 1e-4), jax.random.PRNGKey(0),
                               jnp.zeros((1, 28, 28, 3)))
    pre = transforms.make_preprocess(size=28)
    step = compile_step(make_train_step(classify.softmax_cross_entropy, model, preprocess=pre))
    train = ArrayLoader({"image": split.train.images, "label": split.train.labels}, 64)
    test = ArrayLoader({"image": split.test.images, "label": split.test.labels}, 250,
                       shuffle=False)
    state, _ = fit(state, step, train, workdir=tmp_path, epochs=2, verbose=False)
    metrics = evaluate(jax.jit(make_eval_step(classify.softmax_cross_entropy, model,
                                              preprocess=pre)), state, test)
    assert metrics["count"] == 1000
    assert metrics["accuracy"] > 0.90, metrics
