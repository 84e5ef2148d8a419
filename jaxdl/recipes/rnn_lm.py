"""A recurrent language model (simple RNN, LSTM or GRU) on text, then a sample from a prompt.

Default: character level on the embedded tiny shakespeare (65 characters), split 90/10 as
nanoGPT's `shakespeare_char`. The hidden size is chosen per cell so that every cell has
about `param_budget` parameters (rnn 527, lstm 256, gru 299 units for 350k). Adam (lr 3e-3,
cosine decay to 3e-4, global-norm clipping 1.0), batch 32 random windows of 128
characters, 1,000 steps. Also here: the vanishing-gradient measurement of a cell
(`input_gradient_norms`), which `experiments/vanishing_gradients.py` plots.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.nn import count_params
from jaxdl.nn.recurrent import RecurrentLM, hidden_for_budget
from jaxdl.options import Default, Option, shared
from jaxdl.recipes.base import Task
from jaxdl.recipes.language_model import TEXT_OPTIONS, LanguageModel, example_tokens
from jaxdl.rules import count, positive_int
from jaxdl.tasks import language
from jaxdl.train import make_optimizer, make_schedule


class RecurrentLanguageModel(LanguageModel):
    name = "rnn_lm"
    description = "recurrent language model (rnn, lstm or gru)"
    throughput_unit = "tokens"
    level_key = "level"

    options = (
        *TEXT_OPTIONS,
        Option("cell", "lstm", "rnn (SimpleCell, tanh) | lstm | gru"),
        Option("level", "char", "char | word (lower-cased words, <unk> for unseen)"),
        Option("embed_dim", 64, "token embedding width", positive_int(1 << 16, 64)),
        Option("hidden_dim", 0, "0: the size that gives `param_budget` parameters for this "
               "cell", count(1 << 16, 0)),
        Option("param_budget", 350_000, "parameters the hidden size is chosen for",
               positive_int(10**10, 350_000)),
        shared("num_layers", 1),
        shared("dropout", 0.0),
        shared("seq_len", 128, "characters per training window (backpropagation through "
               "time)"),
        shared("batch_size", 32),
        shared("num_steps", 1000),
        shared("batches_per_epoch", 100, "an 'epoch' of random windows: one curve point and "
               "checkpoint"),
        shared("optimizer", "adam"),
        shared("learning_rate", 3e-3),
        Option("schedule", "cosine", "cosine: to 0.1 x learning_rate at num_steps"),
        shared("grad_clip_norm", 1.0),
        Default("eval_batch_size", 128),
    )

    def build_task(self, config, data) -> Task:
        model = build_model(config, len(data.vocab))
        lr = make_schedule(config.learning_rate, config.schedule, total_steps=config.num_steps,
                           min_learning_rate=0.1 * config.learning_rate)
        tx = make_optimizer(config.optimizer, lr, grad_clip_norm=config.grad_clip_norm)
        return Task(model, language.next_token_loss, tx, example_tokens(config),
                    learning_rate=lr)

    def generate(self, config, task, params, prompt_ids, num_tokens, rng, temperature):
        return language.generate(task.model, params, prompt_ids, num_tokens, rng,
                                 temperature=temperature, top_k=config.top_k)

    def report(self, config, task, data, state, history, ctx, writer) -> dict:
        out = super().report(config, task, data, state, history, ctx, writer)
        model = task.model
        ctx.say(f"{config.cell} language model: hidden {model.hidden_dim} x "
                f"{model.num_layers} layer(s), {count_params(state.params):,} parameters.")
        return {"cell": config.cell, "hidden_dim": model.hidden_dim,
                "num_layers": model.num_layers, **out}


def build_model(config, vocab_size: int) -> RecurrentLM:
    hidden = config.hidden_dim or hidden_for_budget(config.cell, config.param_budget, vocab_size,
                                                    config.embed_dim, config.num_layers)
    return RecurrentLM(cell=config.cell, vocab_size=vocab_size, embed_dim=config.embed_dim,
                       hidden_dim=hidden, num_layers=config.num_layers, dropout=config.dropout)


def input_gradient_norms(model: RecurrentLM, params, tokens) -> np.ndarray:
    """Mean over the batch of |d loss_T / d x_t| for t = 0 .. T-1; tokens (batch, T + 1).

    loss_T is the cross-entropy of the prediction after the LAST input only and x_t the
    embedded input at step t: how much a token t steps back can still change (and teach)
    that prediction."""
    inputs, targets = tokens[:, :-1], tokens[:, -1]

    def last_loss(x):  # x: (batch, T, embed_dim), the embedded inputs
        logits = model.apply({"params": params}, x, method=RecurrentLM.from_embeddings)
        return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits[:, -1], targets))

    x = model.apply({"params": params}, inputs, method=RecurrentLM.embed)
    grads = jax.jit(jax.grad(last_loss))(x)  # (batch, T, embed_dim)
    return np.asarray(jnp.mean(jnp.linalg.norm(grads, axis=-1), axis=0))
