"""The multilayer perceptron on one of scikit-learn's tabular problems, with one activation.

MSE for regression (diabetes), sigmoid BCE for binary (breast_cancer), softmax
cross-entropy for 10 classes (digits); Adam (coupled weight decay) through the shared
step. `experiments/mlp_basics.py` runs every problem under sigmoid, tanh and relu, one
workdir each. Also here: the hand-written backpropagation demo, checked against jax.grad.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.data.loader import ArrayLoader
from jaxdl.data.tabular import load_problem
from jaxdl.nn import MLP, backprop
from jaxdl.options import Default, Option, shared
from jaxdl.recipes.base import Recipe, Task
from jaxdl.rules import Rule
from jaxdl.tasks import classify
from jaxdl.train import make_optimizer
from jaxdl.train.loop import evaluate

LOSSES = {
    "regression": functools.partial(classify.mse, input_key="x", label_key="y"),
    "binary": functools.partial(classify.sigmoid_bce, input_key="x", label_key="y"),
    "multiclass": functools.partial(classify.softmax_cross_entropy, input_key="x",
                                    label_key="y"),
}


class TabularMLP(Recipe):
    name = "mlp"
    description = "an MLP on a scikit-learn tabular problem (regression, binary, 10 classes)"

    options = (
        Option("problem", "digits", "diabetes | breast_cancer | digits (scikit-learn)"),
        Option("activation", "relu", "sigmoid | tanh | relu (any of jaxdl.nn.ACTIVATIONS)"),
        Option("hidden_sizes", (64, 64), "widths of the hidden layers; the output width "
               "follows", Rule(1, 1 << 16, integer=True, sequence=True, example=(64, 64))),
        shared("epochs", 20),
        shared("batch_size", 32),
        shared("eval_batch_size", 512),
        shared("dropout", 0.0, "dropout rate after each hidden layer (training only)"),
        shared("learning_rate", 1e-3, "Adam's step size"),
        shared("optimizer", "adam"),
        shared("weight_decay", 1e-4, "coupled L2, as torch.optim.Adam(weight_decay=) "
               "applies it"),
        Option("test_fraction", 0.2, "share of the dataset held out as the test split",
               Rule(0.01, 0.99, example=0.2)),
        Default("verbose", False),
    )

    def load_data(self, config):
        return load_problem(config.problem, config.seed, config.test_fraction)

    def build_task(self, config, data) -> Task:
        model = MLP(features=(*config.hidden_sizes, data["n_out"]),
                    activation=config.activation, dropout=config.dropout)
        tx = make_optimizer(config.optimizer, config.learning_rate, config.weight_decay)
        n_in = data["train"]["x"].shape[1]
        return Task(model, LOSSES[data["kind"]], tx, jnp.zeros((1, n_in), jnp.float32),
                    learning_rate=config.learning_rate)

    def train_loader(self, config, data, **shard):
        return ArrayLoader(data["train"], config.batch_size, seed=config.seed, **shard)

    def evaluate(self, config, task, data, state, ctx) -> dict:
        loader = ctx.eval_loader(data["test"], config.eval_batch_size)
        m = evaluate(ctx.eval_step(task), state, loader, put_batch=ctx.placement.put_batch)
        out = {"test_loss": m["loss"]}
        if data["kind"] == "regression":  # in the target's own units
            s = data["y_std"]
            out.update(test_mse=m["loss"] * s * s, test_mae=m["mae"] * s,
                       test_rmse=float(np.sqrt(m["loss"])) * s)
        else:
            out["test_accuracy"] = m["accuracy"]
        return out

    def report(self, config, task, data, state, history, ctx, writer) -> dict:
        return {"problem": config.problem, "kind": data["kind"],
                "activation": config.activation, "epochs": config.epochs,
                "train_loss": [r["loss"] for r in history if not r.get("partial")]}


def backprop_demo(x, y, *, steps: int, hidden: int, lr: float, seed: int = 0) -> dict:
    """Full-batch SGD with hand-written backprop (relu, softmax CE), checked against jax.grad."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    params = backprop.init_two_layer(jax.random.PRNGKey(seed), x.shape[1], hidden, 10,
                                     jnp.float32)
    hand = jax.jit(backprop.loss_and_grads, static_argnames=("activation", "loss"))
    auto = jax.jit(backprop.autodiff_grads, static_argnames=("activation", "loss"))
    losses, max_diff = [], 0.0
    for _ in range(steps):
        value, grads = hand(params, x, y, activation="relu", loss="softmax_ce")
        _, ref = auto(params, x, y, activation="relu", loss="softmax_ce")
        max_diff = max(max_diff, backprop.max_grad_difference(grads, ref))
        losses.append(float(value))
        params = backprop.sgd_update(params, grads, lr)
    print(f"Hand-written backprop on digits (relu, softmax CE, {len(losses)} SGD steps): "
          f"loss {losses[0]:.4f} -> {losses[-1]:.4f}; "
          f"max |hand-written - jax.grad| gradient difference = {max_diff:.2e}")
    return {"steps": len(losses), "loss_first": losses[0], "loss_last": losses[-1],
            "max_grad_difference": max_diff}
