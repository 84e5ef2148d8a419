"""Task losses against their textbook formulas, label checks, activations, and `jaxdl info`."""

import functools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import cli
from jaxdl.errors import UserError
from jaxdl.nn import ACTIVATIONS, MLP, get_activation
from jaxdl.tasks import classify


class _Fixed:
    """A stand-in model that returns the batch's precomputed outputs."""

    def apply(self, variables, x, train=False, rngs=None):
        return x


def _run(loss_fn, batch):
    return loss_fn(None, batch, jax.random.PRNGKey(0), _Fixed(), False)


def test_softmax_cross_entropy_formula():
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], np.float32)
    labels = np.array([0, 1], np.int32)
    loss, m = _run(classify.softmax_cross_entropy, {"image": logits, "label": labels})
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert float(loss) == pytest.approx(-(logp[0, 0] + logp[1, 1]) / 2, rel=1e-6)
    assert float(m["correct"]) == 1.0 and float(m["count"]) == 2.0


def test_sigmoid_bce_formula():
    z = np.array([[1.5], [-0.3], [0.2]], np.float32)
    y = np.array([1, 0, 0], np.int32)
    loss, m = _run(classify.sigmoid_bce, {"image": z, "label": y})
    p = 1 / (1 + np.exp(-z[:, 0]))
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(m["correct"]) == 2.0


def test_mse_formula():
    preds = np.array([[1.0], [2.0], [4.0]], np.float32)
    y = np.array([1.5, 2.0, 3.0], np.float32)
    loss, m = _run(functools.partial(classify.mse), {"x": preds, "y": y})
    assert float(loss) == pytest.approx(np.mean((preds[:, 0] - y) ** 2))
    assert float(m["mae_sum"]) == pytest.approx(1.5)


def test_check_labels():
    classify.check_labels(np.array([0, 9]), 10)
    with pytest.raises(UserError, match=r"must lie in \[0, 10\).*num_classes=11"):
        classify.check_labels(np.array([0, 10]), 10)
    with pytest.raises(UserError, match="integers"):
        classify.check_labels(np.array([0.0, 1.0]), 10)


def test_activation_registry_and_mlp_shapes():
    x = jnp.linspace(-3, 3, 7)
    np.testing.assert_allclose(get_activation("sigmoid")(x), 1 / (1 + np.exp(-np.asarray(x))),
                               rtol=1e-6)
    np.testing.assert_allclose(get_activation("relu")(x), np.maximum(np.asarray(x), 0))
    np.testing.assert_allclose(get_activation("tanh")(x), np.tanh(np.asarray(x)), rtol=1e-6)
    assert float(get_activation("softmax")(x).sum()) == pytest.approx(1.0)
    assert {"sigmoid", "relu", "tanh", "softmax", "gelu"} <= set(ACTIVATIONS)
    with pytest.raises(ValueError, match="choose one of"):
        get_activation("swishy")
    params = nn.unbox(MLP((5, 2), "tanh").init(jax.random.PRNGKey(0), jnp.zeros((3, 4)))["params"])
    assert params["dense0"]["kernel"].shape == (4, 5) and params["dense1"]["kernel"].shape == (5, 2)


def test_cli_info(tmp_path, capsys):
    assert cli.main(["info", "--workdir", str(tmp_path)]) == 2
    assert "config.json not found" in capsys.readouterr().err
    (tmp_path / "config.json").write_text(json.dumps({"epochs": 5}))
    (tmp_path / "results.json").write_text(json.dumps({"test_accuracy": 0.97}))
    assert cli.main(["info", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "epochs = 5" in out and "test_accuracy = 0.97" in out and "checkpoints: none" in out


@pytest.mark.parametrize("command, needles", [
    ([], ["train", "info", "eval", "sample", "predict", "eval.json", "top-3",
          '"5 mars 1998"', "error:"]),
    (["eval"], ["--workdir", "eval.json"]),
    (["sample"], ["--prompt", "--num", "--out", "--seed", "ISO date", "PNG grid"]),
    (["predict"], ["--json", "IMAGE", "top-3"]),
    (["info"], ["--workdir", "parameters"]),
])
def test_jaxdl_help_says_what_each_subcommand_does(command, needles, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([*command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for needle in needles:
        assert needle in out, needle


@pytest.mark.parametrize("recipe, args, message", [
    ("decoder_lm", ["--out", "x.png"], "--out does not apply to a decoder_lm run (it takes "
                                       "none of them); it prints text"),
    ("seq2seq", ["--guidance", "3"], "--guidance does not apply to a seq2seq run"),
    ("seq2seq", ["--samples", "2"], "a seq2seq run takes one --prompt"),
    ("text2img", ["--out", "grid.jpg"], "--out grid.jpg must name a .png file"),
    ("text2img", ["--num", "2000"], "--num 2000 images is more than one grid holds"),
    ("image_classifier", [], "`jaxdl sample` does not apply"),
])
def test_sample_options_come_from_the_recipe_and_are_refused_before_any_restore(
        tmp_path, capsys, recipe, args, message):
    """The registry's capabilities (`samples`, `sample_options`, `check_sample`) decide,
    from config.json alone: the workdir has no checkpoint to restore."""
    (tmp_path / "config.json").write_text(json.dumps({"recipe": recipe}))
    assert cli.main(["sample", "--workdir", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
