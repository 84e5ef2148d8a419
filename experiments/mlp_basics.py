"""MLP basics: regression, binary and multi-class classification, three activations.

    python -m experiments.mlp_basics --workdir runs/mlp_basics
    python -m experiments.mlp_basics --workdir runs/x --config.epochs=5 --config.hidden_sizes=(32,)
    jaxdl eval --workdir runs/mlp_basics/digits_relu

Every problem of `jaxdl.data.tabular` (diabetes MSE, breast_cancer sigmoid BCE, digits
softmax CE) is trained with the `mlp` recipe under sigmoid, tanh and relu, one workdir each
(`<workdir>/<problem>_<activation>`); first, a few steps of hand-written backpropagation
show its gradients equal jax.grad's. Writes `activations_<problem>.png` and results.json.
Result (2-core CPU, 20 epochs, under a minute): digits relu ~97% test accuracy (README).
"""

import ml_collections

from jaxdl import plots, recipes, run
from jaxdl.config import without
from jaxdl.data.tabular import PROBLEMS, load_problem
from jaxdl.entry import run_experiment
from jaxdl.errors import UserError
from jaxdl.nn import backprop
from jaxdl.recipes.mlp import backprop_demo
from jaxdl.workdir import save_config, write_results

OWN_KEYS = ("problems", "activations", "backprop_steps", "backprop_hidden", "backprop_lr")
YLABEL = {"regression": "MSE (standardised)", "binary": "BCE", "multiclass": "cross-entropy"}


def get_config() -> ml_collections.ConfigDict:
    c = recipes.get("mlp").get_config()
    c.activations = ("sigmoid", "tanh", "relu")  # each problem is trained once per activation
    c.problems = PROBLEMS  # which of diabetes, breast_cancer, digits to run
    c.backprop_steps = 20  # hand-written backprop demo: full-batch SGD steps on digits
    c.backprop_hidden = 32  # hidden width of the demo's two-layer MLP
    c.backprop_lr = 0.5  # SGD step size of the demo
    return c


def main(config, workdir):
    for name in config.problems:
        load_problem(name)  # an unknown problem fails before any training
    for act in config.activations:
        if act not in backprop.HAND_ACTIVATIONS:
            raise UserError(f"activation {act!r} is not compared here; choose from "
                            f"{', '.join(backprop.HAND_ACTIVATIONS)}")
    save_config(config, workdir)
    digits = load_problem("digits", config.seed, config.test_fraction)["train"]
    demo = backprop_demo(digits["x"], digits["y"], steps=config.backprop_steps,
                         hidden=config.backprop_hidden, lr=config.backprop_lr, seed=config.seed)
    per_problem, seconds = {}, 0.0
    for name in config.problems:
        per_problem[name], series = {}, {}
        for act in config.activations:
            sub = without(config, OWN_KEYS)
            sub.problem, sub.activation = name, act
            r = run.train(sub, workdir / f"{name}_{act}")
            seconds += r["train_seconds"]
            per_problem[name][act] = {k: r[k] for k in (
                "test_loss", "test_accuracy", "test_mse", "test_mae", "test_rmse", "train_loss")
                if k in r}
            series[act] = (list(range(1, len(r["train_loss"]) + 1)), r["train_loss"])
            score = (f"test MSE {r['test_mse']:.1f}" if "test_mse" in r
                     else f"test accuracy {100 * r['test_accuracy']:.2f}%")
            print(f"{name:13s} {act:8s} train loss {r['train_loss'][0]:.4f} -> "
                  f"{r['train_loss'][-1]:.4f} | {score} ({r['train_seconds']:.1f}s)")
        plots.plot_series(series, workdir / f"activations_{name}.png", xlabel="epoch",
                          ylabel=f"training {YLABEL[r['kind']]}", logy=True,
                          title=f"MLP {tuple(config.hidden_sizes)} on {name}")
    results = {"dataset": "sklearn: " + ", ".join(config.problems), "epochs": config.epochs,
               "hidden_sizes": list(config.hidden_sizes), "train_seconds": seconds,
               "problems": per_problem, "backprop_demo": demo, "device": r["device"]}
    headline = per_problem.get("digits", {}).get("relu")
    if headline is not None:
        results.update(test_loss=headline["test_loss"], test_accuracy=headline["test_accuracy"])
    write_results(workdir, results)
    print(f"Total training time {seconds:.1f}s; wrote {workdir / 'results.json'}")
    return results


if __name__ == "__main__":
    run_experiment(main, get_config, "runs/mlp_basics")
