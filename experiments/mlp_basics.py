"""MLP basics: regression, binary and multi-class classification, three activations.

    python -m experiments.mlp_basics --workdir runs/mlp_basics
    python -m experiments.mlp_basics --workdir runs/x --config.epochs=5 --config.hidden_sizes=(32,)

Three problems on scikit-learn's shipped datasets (no download):

    diabetes       regression, MSE          10 standardised features -> 1 standardised target
    breast_cancer  binary, sigmoid BCE      30 standardised features -> 1 logit
    digits         10 classes, softmax CE   8x8 pixels / 16 -> 10 logits

Each is split once (seeded, stratified for classification) and trained with the same MLP
under sigmoid, tanh and relu, through the library's one train step and `fit`; the test
split is scored with the eval step. Before that, a few steps of the hand-written
backpropagation (`jaxdl.nn.backprop`) on digits show its gradients equal `jax.grad`'s.
Writes `activations_<problem>.png` (training-loss curves) and `results.json`.
"""

import functools
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.model_selection import train_test_split

from jaxdl import plots
from jaxdl.config import run_experiment, write_results
from jaxdl.data.loader import ArrayLoader
from jaxdl.errors import UserError
from jaxdl.nn import MLP, backprop
from jaxdl.tasks import classify
from jaxdl.train import create_train_state, make_eval_step, make_optimizer, make_train_step
from jaxdl.train.loop import compile_step, evaluate, fit

PROBLEMS = ("diabetes", "breast_cancer", "digits")


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.hidden_sizes = (64, 64)  # widths of the hidden layers; the output width follows the task
    c.activations = ("sigmoid", "tanh", "relu")  # each problem is trained once per activation
    c.problems = PROBLEMS  # which of diabetes, breast_cancer, digits to run
    c.epochs = 20  # passes over each training split
    c.batch_size = 32  # training mini-batch size
    c.eval_batch_size = 512  # test-split batch size (evaluation only)
    c.dropout = 0.0  # dropout rate after each hidden layer (training only)
    c.learning_rate = 1e-3  # Adam step size
    c.optimizer = "adam"  # one of sgd, momentum, adam, adamw, rmsprop (jaxdl.train.optim)
    c.weight_decay = 1e-4  # coupled L2, as torch.optim.Adam(weight_decay=) applies it
    c.seed = 0  # seeds the split, the initialisation and the batch order
    c.test_fraction = 0.2  # share of each dataset held out as the test split
    c.backprop_steps = 20  # hand-written backprop demo: full-batch SGD steps on digits
    c.backprop_hidden = 32  # hidden width of the demo's two-layer MLP
    c.backprop_lr = 0.5  # SGD step size of the demo
    c.verbose = False  # print fit's per-epoch lines (one summary line per run is always printed)
    return c


def load_problem(name: str, seed: int, test_fraction: float) -> dict:
    """Train/test arrays {'x', 'y'} for one problem, standardised with train statistics only."""
    if name == "diabetes":
        data = load_diabetes()
        x, y = data.data.astype(np.float32), data.target.astype(np.float32)
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction,
                                                  random_state=seed)
        x_mean, x_std = x_tr.mean(0), x_tr.std(0)
        y_mean, y_std = float(y_tr.mean()), float(y_tr.std())
        x_tr, x_te = (x_tr - x_mean) / x_std, (x_te - x_mean) / x_std
        y_tr, y_te = (y_tr - y_mean) / y_std, (y_te - y_mean) / y_std
        return dict(kind="regression", n_out=1, y_mean=y_mean, y_std=y_std,
                    train={"x": x_tr, "y": y_tr}, test={"x": x_te, "y": y_te})
    if name == "breast_cancer":
        data = load_breast_cancer()
        x, y = data.data.astype(np.float32), data.target.astype(np.int32)
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction,
                                                  random_state=seed, stratify=y)
        x_mean, x_std = x_tr.mean(0), x_tr.std(0)
        x_tr, x_te = (x_tr - x_mean) / x_std, (x_te - x_mean) / x_std
        return dict(kind="binary", n_out=1,
                    train={"x": x_tr, "y": y_tr}, test={"x": x_te, "y": y_te})
    if name == "digits":
        data = load_digits()
        x, y = (data.data / 16.0).astype(np.float32), data.target.astype(np.int32)
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction,
                                                  random_state=seed, stratify=y)
        return dict(kind="multiclass", n_out=10,
                    train={"x": x_tr, "y": y_tr}, test={"x": x_te, "y": y_te})
    raise UserError(f"unknown problem {name!r}; choose from {', '.join(PROBLEMS)}")


LOSSES = {
    "regression": functools.partial(classify.mse, input_key="x", label_key="y"),
    "binary": functools.partial(classify.sigmoid_bce, input_key="x", label_key="y"),
    "multiclass": functools.partial(classify.softmax_cross_entropy, input_key="x",
                                    label_key="y"),
}


def train_one(config, problem: dict, activation: str, workdir):
    """Train the MLP with one activation on one problem; returns (test metrics, history, s)."""
    model = MLP(features=(*config.hidden_sizes, problem["n_out"]), activation=activation,
                dropout=config.dropout)
    tx = make_optimizer(config.optimizer, config.learning_rate, config.weight_decay)
    n_in = problem["train"]["x"].shape[1]
    state = create_train_state(model, tx, jax.random.PRNGKey(config.seed),
                               jnp.zeros((1, n_in), jnp.float32))
    loss_fn = LOSSES[problem["kind"]]
    train_step = compile_step(make_train_step(loss_fn, model))
    eval_step = compile_step(make_eval_step(loss_fn, model), donate=False,
                             compiler_options=None)
    loader = ArrayLoader(problem["train"], config.batch_size, seed=config.seed)
    # Never a batch larger than the split: ArrayLoader pads a short batch only from one copy
    # of the data, so a batch over twice the split's size would come out short.
    n_test = len(problem["test"]["y"])
    test_loader = ArrayLoader(problem["test"], min(config.eval_batch_size, n_test),
                              shuffle=False)
    t0 = time.perf_counter()
    state, history = fit(state, train_step, loader, workdir=workdir, epochs=config.epochs,
                         verbose=config.verbose)
    seconds = time.perf_counter() - t0
    return evaluate(eval_step, state, test_loader), history, seconds


def summarise(problem: dict, metrics: dict, history: list[dict]) -> dict:
    """Test metrics in the problem's own terms (original target units for regression)."""
    curve = [r["loss"] for r in history if not r.get("partial")]
    out = {"test_loss": metrics["loss"], "train_loss": curve}
    if problem["kind"] == "regression":
        s = problem["y_std"]
        out.update(test_mse=metrics["loss"] * s * s, test_mae=metrics["mae"] * s,
                   test_rmse=float(np.sqrt(metrics["loss"])) * s)
    else:
        out["test_accuracy"] = metrics["accuracy"]
    return out


def backprop_demo(config, digits: dict) -> dict:
    """A few full-batch SGD steps of hand-written backprop on digits, checked against jax.grad."""
    x, y = jnp.asarray(digits["train"]["x"]), jnp.asarray(digits["train"]["y"])
    params = backprop.init_two_layer(jax.random.PRNGKey(config.seed), x.shape[1],
                                     config.backprop_hidden, 10, jnp.float32)
    hand = jax.jit(backprop.loss_and_grads, static_argnames=("activation", "loss"))
    auto = jax.jit(backprop.autodiff_grads, static_argnames=("activation", "loss"))
    losses, max_diff = [], 0.0
    for _ in range(config.backprop_steps):
        value, grads = hand(params, x, y, activation="relu", loss="softmax_ce")
        _, ref = auto(params, x, y, activation="relu", loss="softmax_ce")
        max_diff = max(max_diff, backprop.max_grad_difference(grads, ref))
        losses.append(float(value))
        params = backprop.sgd_update(params, grads, config.backprop_lr)
    print(f"Hand-written backprop on digits (relu, softmax CE, {len(losses)} SGD steps): "
          f"loss {losses[0]:.4f} -> {losses[-1]:.4f}; "
          f"max |hand-written - jax.grad| gradient difference = {max_diff:.2e}")
    return {"steps": len(losses), "loss_first": losses[0], "loss_last": losses[-1],
            "max_grad_difference": max_diff}


def main(config, workdir):
    problems = tuple(config.problems)
    for name in problems:
        if name not in PROBLEMS:
            raise UserError(f"unknown problem {name!r} in --config.problems; "
                            f"choose from {', '.join(PROBLEMS)}")
    for act in config.activations:
        if act not in backprop.HAND_ACTIVATIONS:
            raise UserError(f"activation {act!r} is not compared here; choose from "
                            f"{', '.join(backprop.HAND_ACTIVATIONS)}")
    data = {name: load_problem(name, config.seed, config.test_fraction) for name in problems}
    for name, prob in data.items():
        print(f"{name}: {prob['kind']}, {len(prob['train']['y'])} train / "
              f"{len(prob['test']['y'])} test examples, {prob['train']['x'].shape[1]} features")

    demo = backprop_demo(config, data.get("digits") or load_problem(
        "digits", config.seed, config.test_fraction))

    per_problem, train_seconds = {}, 0.0
    for name, prob in data.items():
        per_problem[name], series = {}, {}
        for act in config.activations:
            metrics, history, seconds = train_one(config, prob, act, workdir / f"{name}_{act}")
            train_seconds += seconds
            per_problem[name][act] = summary = summarise(prob, metrics, history)
            curve = summary["train_loss"]
            series[act] = (list(range(1, len(curve) + 1)), curve)
            score = (f"test MSE {summary['test_mse']:.1f}" if prob["kind"] == "regression"
                     else f"test accuracy {100 * summary['test_accuracy']:.2f}%")
            print(f"{name:13s} {act:8s} train loss {curve[0]:.4f} -> {curve[-1]:.4f} | "
                  f"{score} ({seconds:.1f}s)")
        ylabel = {"regression": "MSE (standardised)", "binary": "BCE",
                  "multiclass": "cross-entropy"}[prob["kind"]]
        plots.plot_series(series, workdir / f"activations_{name}.png", xlabel="epoch",
                          ylabel=f"training {ylabel}", logy=True,
                          title=f"MLP {tuple(config.hidden_sizes)} on {name}")

    results = {
        "dataset": "sklearn: " + ", ".join(problems),
        "epochs": config.epochs,
        "hidden_sizes": list(config.hidden_sizes),
        "train_seconds": train_seconds,
        "problems": per_problem,
        "backprop_demo": demo,
        "device": str(jax.devices()[0].device_kind),
    }
    headline = per_problem.get("digits", {}).get("relu")
    if headline is not None:
        results.update(test_loss=headline["test_loss"], test_accuracy=headline["test_accuracy"])
    write_results(workdir, results)
    print_table(per_problem)
    print(f"Total training time {train_seconds:.1f}s; wrote {workdir / 'results.json'}")
    return results


def print_table(per_problem: dict) -> None:
    print(f"\n{'problem':14s} {'activation':10s} {'test loss':>10s}  metric")
    for name, runs in per_problem.items():
        for act, r in runs.items():
            if "test_mse" in r:
                metric = f"MSE {r['test_mse']:.1f}  MAE {r['test_mae']:.1f}  (target units)"
            else:
                metric = f"accuracy {100 * r['test_accuracy']:.2f}%"
            print(f"{name:14s} {act:10s} {r['test_loss']:10.4f}  {metric}")
    print()


if __name__ == "__main__":
    run_experiment(main, get_config, "runs/mlp_basics")
