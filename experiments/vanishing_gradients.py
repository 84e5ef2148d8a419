"""The vanishing gradient, measured: |d loss_T / d x_t| against t for rnn, lstm and gru.

    python -m experiments.vanishing_gradients --workdir runs/vanishing_gradients
    python -m experiments.vanishing_gradients --workdir runs/vg_trained \\
        --config.trained_workdir='runs/rnn_lm_{cell}'   # the README table's trained models

For each cell (same parameter budget as `experiments.rnn_lm`), windows of `seq_len`
characters of tiny shakespeare's validation split are read from a zero state; loss_T is
the cross-entropy of the prediction after the LAST character only, and x_t the embedded
input at step t. The norm of the gradient, averaged over the windows, shows how much a
character t steps back can still change (and teach) that prediction. Fresh models by
default; `trained_workdir` measures finished `rnn_lm` runs instead, and `train_steps` > 0
trains each here first, with the shared train step and `rnn_lm`'s recipe.
Writes `gradient_norms.png` and `results.json` with every curve and
`ratio_first_last` = norm at the first step / norm at the last step, per cell.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments import rnn_lm
from jaxdl import plots
from jaxdl.config import load_config, run_experiment, write_results
from jaxdl.data import text as textdata
from jaxdl.nn.recurrent import CELLS, RecurrentLM, count_params
from jaxdl.tasks import language
from jaxdl.train import make_train_step
from jaxdl.train.checkpoint import restore_from_workdir
from jaxdl.train.loop import compile_step, fit


def get_config() -> ml_collections.ConfigDict:
    c = rnn_lm.get_config()
    c.cells = ",".join(CELLS)  # which cells to measure, comma-separated
    c.seq_len = 100  # steps back from the last prediction
    c.num_windows = 32  # validation windows the norms are averaged over
    c.train_steps = 0  # 0: freshly initialised models; else train each this many steps first
    c.trained_workdir = ""  # e.g. runs/rnn_lm_{cell}: measure those trained models instead
    return c


def input_gradient_norms(model: RecurrentLM, params, tokens) -> np.ndarray:
    """Mean over the batch of |d loss_T / d x_t| for t = 0 .. T-1; tokens (batch, T + 1)."""
    inputs, targets = tokens[:, :-1], tokens[:, -1]

    def last_loss(x):  # x: (batch, T, embed_dim), the embedded inputs
        logits = model.apply({"params": params}, x, method=RecurrentLM.from_embeddings)
        return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits[:, -1], targets))

    x = model.apply({"params": params}, inputs, method=RecurrentLM.embed)
    grads = jax.jit(jax.grad(last_loss))(x)  # (batch, T, embed_dim)
    return np.asarray(jnp.mean(jnp.linalg.norm(grads, axis=-1), axis=0))


def train_briefly(config, model, train_ids, workdir):
    """Train with rnn_lm's recipe for `train_steps` steps (the shared step and loop)."""
    loader = textdata.WindowLoader(train_ids, config.batch_size, config.seq_len,
                                   batches_per_epoch=config.batches_per_epoch, seed=config.seed)
    state = rnn_lm.make_state(config, model, config.train_steps)
    step = compile_step(make_train_step(language.next_token_loss, model))
    state, history = fit(state, step, loader, workdir=workdir, num_steps=config.train_steps)
    return state.params, history[-1]["loss"]


def load_trained(workdir: Path, vocab_size: int):
    """(model, params, train_loss) from a finished `experiments.rnn_lm` workdir."""
    trained = load_config(workdir)
    model = rnn_lm.build_model(trained, vocab_size)
    template = rnn_lm.make_state(trained, model, trained.num_steps)
    restored = restore_from_workdir(workdir, template,
                                    fix="run experiments.rnn_lm there first")
    results = workdir / "results.json"
    loss = json.loads(results.read_text()).get("train_loss") if results.exists() else None
    return model, restored[0].params, loss


def main(config, workdir):
    vocab, train_ids, val_ids = rnn_lm.load_data(config)
    windows = textdata.eval_windows(val_ids, config.seq_len, config.num_windows)
    tokens = jnp.asarray(windows)
    results, curves = {"seq_len": config.seq_len, "num_windows": len(windows),
                       "train_steps": config.train_steps,
                       "trained_workdir": config.trained_workdir, "cells": {}}, {}
    for cell in [c.strip() for c in config.cells.split(",") if c.strip()]:
        cell_config = ml_collections.ConfigDict(config.to_dict())
        cell_config.cell = cell
        model = rnn_lm.build_model(cell_config, len(vocab))
        if config.trained_workdir:
            model, params, train_loss = load_trained(
                Path(config.trained_workdir.format(cell=cell)), len(vocab))
        elif config.train_steps:
            params, train_loss = train_briefly(config, model, train_ids, workdir / cell)
        else:
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
        distance = np.arange(len(norms))[::-1]  # steps before the last prediction
        curves[cell] = (distance, norms)
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
