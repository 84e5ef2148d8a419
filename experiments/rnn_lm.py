"""A recurrent language model (simple RNN, LSTM or GRU) on text, then a sample from a prompt.

    python -m experiments.rnn_lm --workdir runs/rnn_lm_rnn --config.cell=rnn
    python -m experiments.rnn_lm --workdir runs/rnn_lm_lstm --config.cell=lstm
    python -m experiments.rnn_lm --workdir runs/rnn_lm_gru --config.cell=gru
    python -m experiments.rnn_lm --workdir runs/mat --config.level=word \\
        --config.text=simple_sentences --config.embed_dim=32 --config.hidden_dim=64 \\
        --config.seq_len=12 --config.num_steps=400 --config.learning_rate=0.01 \\
        --config.prompt="The cat sat on the" --config.temperature=0 --config.sample_tokens=2

Default: character level on the embedded tiny shakespeare (65 characters), split 90/10 as
nanoGPT's `shakespeare_char` (first 90% train), so `val_loss` (nats per character) compares
with nanoGPT's numbers. The hidden size is chosen per cell so that every cell has about
`param_budget` parameters (rnn 527, lstm 256, gru 299 units for 350k), which makes the three
cells comparable. Adam (lr 3e-3, cosine decay to 3e-4, global-norm clipping 1.0), batch 32
random windows of 128 characters, 1,000 steps; validation on every non-overlapping
128-character window of the val split, each read from a zero state.
Results (2-core CPU shared with other jobs, about 4-5 minutes each): val bits per character
rnn 2.530, lstm 2.450, gru 2.323 (val loss 1.753 / 1.698 / 1.610 nats). The word-level
command prints "The cat sat on the mat ." (tests/test_rnn_lm.py checks it).
"""

import time

import jax
import jax.numpy as jnp
import ml_collections

from jaxdl import plots
from jaxdl.config import run_experiment, write_results
from jaxdl.data import text as textdata
from jaxdl.data.loader import ArrayLoader
from jaxdl.nn.recurrent import RecurrentLM, count_params, hidden_for_budget
from jaxdl.tasks import language
from jaxdl.train import create_train_state, make_eval_step, make_optimizer, make_train_step
from jaxdl.train.loop import compile_step, evaluate, fit
from jaxdl.train.optim import make_schedule


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.cell = "lstm"  # rnn (SimpleCell, tanh) | lstm | gru
    c.level = "char"  # char | word (lower-cased words, <unk> for unseen)
    c.text = "tinyshakespeare"  # embedded corpus: tinyshakespeare | simple_sentences
    c.text_path = ""  # any UTF-8 text file; overrides `text`
    c.val_fraction = 0.1  # the last 10% validates (nanoGPT's split)
    c.embed_dim = 64
    c.hidden_dim = 0  # 0: the size that gives `param_budget` parameters for this cell
    c.param_budget = 350_000
    c.num_layers = 1
    c.dropout = 0.0
    c.seq_len = 128  # characters per training window (backpropagation through time)
    c.batch_size = 32
    c.num_steps = 1000
    c.batches_per_epoch = 100  # an "epoch" of random windows: one curve point, one checkpoint
    c.optimizer = "adam"
    c.learning_rate = 3e-3
    c.schedule = "cosine"  # to 0.1 x learning_rate at num_steps
    c.grad_clip_norm = 1.0
    c.eval_batch_size = 128
    c.val_windows = 0  # 0: every non-overlapping window of the val split
    c.prompt = "ROMEO:"
    c.sample_tokens = 300
    c.temperature = 0.8  # 0: greedy
    c.top_k = 0  # 0: sample from the whole vocabulary
    c.seed = 0
    return c


def build_model(config, vocab_size: int) -> RecurrentLM:
    hidden = config.hidden_dim or hidden_for_budget(config.cell, config.param_budget, vocab_size,
                                                    config.embed_dim, config.num_layers)
    return RecurrentLM(cell=config.cell, vocab_size=vocab_size, embed_dim=config.embed_dim,
                       hidden_dim=hidden, num_layers=config.num_layers, dropout=config.dropout)


def make_state(config, model, num_steps: int):
    """Adam (or `optimizer`) with the schedule decaying over `num_steps` and clipping."""
    lr = make_schedule(config.learning_rate, config.schedule, total_steps=num_steps,
                       min_learning_rate=0.1 * config.learning_rate)
    tx = make_optimizer(config.optimizer, lr, grad_clip_norm=config.grad_clip_norm)
    example = jnp.zeros((1, config.seq_len), jnp.int32)
    return create_train_state(model, tx, jax.random.PRNGKey(config.seed), example)


def load_data(config):
    """(vocab, train ids, val ids) with the vocabulary built on the whole text (as nanoGPT)."""
    text = textdata.load_text(config.text, config.text_path)
    vocab = textdata.make_vocab(config.level, text)
    ids = vocab.encode(text)
    train_ids, val_ids = textdata.train_val_split(ids, config.val_fraction)
    return vocab, train_ids, val_ids


def run(config, workdir):
    """Train, evaluate, sample; returns (results, state, model, vocab)."""
    vocab, train_ids, val_ids = load_data(config)
    model = build_model(config, len(vocab))
    loader = textdata.WindowLoader(train_ids, config.batch_size, config.seq_len,
                                   batches_per_epoch=config.batches_per_epoch, seed=config.seed)
    val_loader = ArrayLoader({"tokens": textdata.eval_windows(val_ids, config.seq_len,
                                                              config.val_windows)},
                             config.eval_batch_size, shuffle=False)
    prompt_ids = vocab.encode(config.prompt)  # checked before training
    print(f"Training on {len(train_ids):,} {config.level} tokens, validating on "
          f"{len(val_ids):,}; vocabulary {len(vocab)}.")

    state = make_state(config, model, config.num_steps)
    n_params = count_params(state.params)
    print(f"{config.cell} language model: hidden {model.hidden_dim} x {model.num_layers} "
          f"layer(s), {n_params:,} parameters.")
    train_step = compile_step(make_train_step(language.next_token_loss, model))
    eval_step = jax.jit(make_eval_step(language.next_token_loss, model))

    t0 = time.perf_counter()
    state, history = fit(state, train_step, loader, workdir=workdir, num_steps=config.num_steps)
    train_seconds = time.perf_counter() - t0
    val = language.lm_metrics(evaluate(eval_step, state, val_loader))
    print(f"Validation: loss {val['loss']:.4f} nats/token, {val['bits_per_token']:.3f} bits/token, "
          f"perplexity {val['perplexity']:.2f}")

    rng = jax.random.PRNGKey(config.seed + 1)
    sample_ids = language.generate(model, state.params, prompt_ids, config.sample_tokens, rng,
                                   temperature=config.temperature, top_k=config.top_k)
    sep = "" if config.level == "char" else " "
    sample = vocab.decode(sample_ids)
    print(f"\nSample ({config.sample_tokens} tokens, temperature {config.temperature}):\n"
          f"{config.prompt}{sep}{sample}\n")

    plots.plot_curves(history, ["loss", "accuracy"], workdir / "curves.png", xlabel="step",
                      title=f"{config.cell} LM on {config.text_path or config.text}: training")
    steady = history[1:] if len(history) > 1 else history  # the first row includes compilation
    results = {
        "cell": config.cell, "level": config.level, "text": config.text_path or config.text,
        "hidden_dim": model.hidden_dim, "num_layers": model.num_layers, "params": n_params,
        "vocab_size": len(vocab), "num_steps": int(state.step),
        "train_tokens": len(train_ids), "val_tokens": len(val_ids),
        "train_loss": history[-1]["loss"] if history else None,
        "val_loss": val["loss"], "val_perplexity": val["perplexity"],
        "val_bits_per_token": val["bits_per_token"], "val_accuracy": val["accuracy"],
        "tokens_per_second": sum(r["count"] for r in steady) / max(
            sum(r["seconds"] for r in steady), 1e-9),
        "train_seconds": train_seconds, "prompt": config.prompt, "sample": sample,
        "device": str(jax.devices()[0].device_kind),
    }
    if config.level == "char":
        results["val_bpc"] = val["bits_per_token"]
    write_results(workdir, results)
    print(f"Wrote {workdir / 'results.json'}")
    return results, state, model, vocab


def main(config, workdir):
    return run(config, workdir)[0]


if __name__ == "__main__":
    run_experiment(main, get_config, "runs/rnn_lm")
