"""The vanishing gradient, measured: |d loss_T / d x_t| against t for rnn, lstm and gru.

    python -m experiments.vanishing_gradients --workdir runs/vanishing_gradients
    python -m experiments.vanishing_gradients --workdir runs/vg_trained \\
        --config.trained_workdir='runs/rnn_lm_{cell}'   # the README table's trained models

For each cell (the `rnn_lm` recipe's parameter budget), windows of `seq_len` characters of
tiny shakespeare's validation split are read from a zero state
(`jaxdl.recipes.rnn_lm.input_gradient_norms`). Fresh models by default; `trained_workdir`
measures finished `rnn_lm` runs instead, and `train_steps` > 0 trains each first with the
`rnn_lm` recipe (through the runner, in `<workdir>/<cell>`). Writes `gradient_norms.png` and
`results.json` with every curve and `ratio_first_last` (first step / last step), per cell.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdl import plots, recipes, run
from jaxdl.config import without
from jaxdl.data.loader import eval_windows
from jaxdl.entry import run_experiment
from jaxdl.nn import count_params
from jaxdl.nn.recurrent import CELLS
from jaxdl.recipes.rnn_lm import build_model, input_gradient_norms
from jaxdl.workdir import read_json, save_config, write_results

OWN_KEYS = ("cells", "num_windows", "train_steps", "trained_workdir")


def get_config() -> ml_collections.ConfigDict:
    c = recipes.get("rnn_lm").get_config()
    c.cells = ",".join(CELLS)  # which cells to measure, comma-separated
    c.seq_len = 100  # steps back from the last prediction
    c.num_windows = 32  # validation windows the norms are averaged over
    c.train_steps = 0  # 0: freshly initialised models; else train each this many steps first
    c.trained_workdir = ""  # e.g. runs/rnn_lm_{cell}: measure those trained models instead
    return c


def trained(workdir):
    """(model, params, train loss) of a finished rnn_lm workdir."""
    r = run.load(workdir)
    results = r.workdir / "results.json"
    loss = read_json(results).get("train_loss") if results.exists() else None
    return r.task.model, r.state.params, loss


def main(config, workdir):
    save_config(config, workdir)
    recipe = recipes.get("rnn_lm")
    data = recipe.load_data(config)
    tokens = jnp.asarray(eval_windows(data.val_ids, config.seq_len, config.num_windows))
    results = {"seq_len": config.seq_len, "num_windows": len(tokens),
               "train_steps": config.train_steps, "trained_workdir": config.trained_workdir,
               "cells": {}}
    curves = {}
    for cell in [c.strip() for c in config.cells.split(",") if c.strip()]:
        sub = without(config, OWN_KEYS)
        sub.cell = cell
        if config.trained_workdir:
            model, params, train_loss = trained(config.trained_workdir.format(cell=cell))
        elif config.train_steps:
            sub.num_steps, sub.sample_tokens = config.train_steps, 1
            train_loss = run.train(sub, workdir / cell)["train_loss"]
            model, params, _ = trained(workdir / cell)
        else:
            model = build_model(sub, len(data.vocab))
            params = model.init(jax.random.PRNGKey(config.seed), tokens[:1, :-1])["params"]
            train_loss = None
        norms = input_gradient_norms(model, params, tokens)
        ratio = float(norms[0] / norms[-1])
        print(f"{cell}: hidden {model.hidden_dim}, {count_params(params):,} parameters; "
              f"|dL_T/dx_t| at t=0: {norms[0]:.3g}, at t=T-1: {norms[-1]:.3g}, "
              f"ratio first/last {ratio:.3g}")
        results["cells"][cell] = {"hidden_dim": model.hidden_dim,
                                  "params": count_params(params), "train_loss": train_loss,
                                  "ratio_first_last": ratio, "grad_norms": norms.tolist()}
        curves[cell] = (np.arange(len(norms))[::-1], norms)  # steps before the last input
    state = "trained" if config.train_steps or config.trained_workdir else "fresh"
    plots.plot_series(curves, workdir / "gradient_norms.png", logy=True,
                      xlabel="steps back from the last input (T-1-t)",
                      ylabel="|d loss_T / d x_t|",
                      title=f"Gradient reaching input t ({state} models)")
    results["ratio_first_last"] = {k: v["ratio_first_last"] for k, v in results["cells"].items()}
    write_results(workdir, results)
    print(f"Wrote {workdir / 'results.json'} and {workdir / 'gradient_norms.png'}")
    return results


if __name__ == "__main__":
    run_experiment(main, get_config, "runs/vanishing_gradients")
