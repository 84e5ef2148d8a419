"""A GPT-style decoder-only Transformer, character level, on tiny shakespeare.

    python -m experiments.transformer_lm --workdir runs/transformer_lm

The default config is nanoGPT's documented CPU run of `shakespeare_char` (4 layers,
4 heads, 128 wide, context 64, batch 12, 2000 iterations, dropout 0, AdamW lr 1e-3 with
100 warmup steps and cosine decay to 1e-4, beta2 0.99, weight decay 0.1 on matrices
only, gradient clipping 1.0, no biases, tied embeddings), on the same 90/10 split.
Validation reads every non-overlapping 64-character window of the val split, where
nanoGPT's printed figure (1.88 in its README) estimates it from 20 random batches (std
0.015). Measured here: seed 0 reaches 1.9106 in 109 s on 2 CPU cores; nanoGPT itself
reaches 1.891-1.920 on the full split over five seeds, and jaxdl from nanoGPT's initial
weights on its batches gives nanoGPT's model to four decimals (README, Transformers).
A sample is generated from the KV cache.
"""

import time

import jax
import jax.numpy as jnp
import ml_collections

from jaxdl import plots
from jaxdl.config import run_experiment, write_results
from jaxdl.data import text as textdata
from jaxdl.data.loader import ArrayLoader
from jaxdl.nn.transformer import DecoderLM
from jaxdl.tasks import language
from jaxdl.train import (
    create_train_state,
    make_eval_step,
    make_optimizer,
    make_train_step,
    parallel,
)
from jaxdl.train.loop import evaluate, fit
from jaxdl.train.optim import make_schedule


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.text = "tinyshakespeare"  # embedded corpus
    c.text_path = ""  # any UTF-8 text file; overrides `text`
    c.val_fraction = 0.1  # nanoGPT's split: the first 90% trains
    c.num_layers = 4  # n_layer
    c.num_heads = 4  # n_head
    c.dim = 128  # n_embd
    c.seq_len = 64  # block_size (context)
    c.dropout = 0.0
    c.use_bias = False  # nanoGPT's bias=False
    c.positional = "learned"  # learned | sinusoidal
    c.batch_size = 12
    c.num_steps = 2000  # max_iters
    c.batches_per_epoch = 250  # one curve point and checkpoint every this many steps
    c.learning_rate = 1e-3
    c.min_learning_rate = 1e-4
    c.warmup_steps = 100
    c.beta2 = 0.99
    c.weight_decay = 0.1  # decoupled (AdamW), on matrices and embeddings only
    c.grad_clip_norm = 1.0
    c.eval_batch_size = 256
    c.val_windows = 0  # 0: every non-overlapping window of the val split
    c.prompt = "ROMEO:"
    c.sample_tokens = 300
    c.temperature = 0.8
    c.top_k = 0
    c.seed = 0
    c.devices = 1  # 1: one device; 0: all devices of all processes (batches split); n: first n
    c.distributed = False  # join a multi-host run (TPU VMs: nothing else to set)
    return c


def build(config, vocab_size: int):
    """The recipe's model and optimizer: one definition for main(), the nanoGPT replay
    (benchmarks/nanogpt_replay.py) and the step-for-step golden test."""
    model = DecoderLM(vocab_size, num_layers=config.num_layers, num_heads=config.num_heads,
                      dim=config.dim, max_len=config.seq_len, dropout=config.dropout,
                      use_bias=config.use_bias, positional=config.positional)
    lr = make_schedule(config.learning_rate, "warmup_cosine", total_steps=config.num_steps,
                       warmup_steps=config.warmup_steps,
                       min_learning_rate=config.min_learning_rate)
    tx = make_optimizer("adamw", lr, config.weight_decay, b2=config.beta2,
                        grad_clip_norm=config.grad_clip_norm, decay_matrices_only=True)
    return model, tx


def splits(config):
    """(vocabulary, train ids, val ids): the corpus as char ids, split as nanoGPT splits it."""
    text = textdata.load_text(config.text, config.text_path)
    vocab = textdata.make_vocab("char", text)
    return (vocab, *textdata.train_val_split(vocab.encode(text), config.val_fraction))


def val_loader(config, val_ids) -> ArrayLoader:
    """Every non-overlapping seq_len window of the val split (or the first val_windows)."""
    return ArrayLoader({"tokens": textdata.eval_windows(val_ids, config.seq_len,
                                                        config.val_windows)},
                       config.eval_batch_size, shuffle=False)


def main(config, workdir):
    mesh = parallel.mesh_from_config(config)  # before anything touches a device
    vocab, train_ids, val_ids = splits(config)
    loader = textdata.WindowLoader(train_ids, config.batch_size, config.seq_len,
                                   batches_per_epoch=config.batches_per_epoch, seed=config.seed,
                                   **parallel.process_shard())
    val_batches = val_loader(config, val_ids)
    prompt_ids = vocab.encode(config.prompt)
    print(f"Training on {len(train_ids):,} characters, validating on {len(val_ids):,}; "
          f"vocabulary {len(vocab)}.")

    model, tx = build(config, len(vocab))
    state = create_train_state(model, tx, jax.random.PRNGKey(config.seed),
                               jnp.zeros((1, config.seq_len), jnp.int32))
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    print(f"DecoderLM: {n_params:,} parameters ({n_params - config.seq_len * config.dim:,} "
          "without position embeddings, as nanoGPT counts).")
    state, train_step, fit_kw = parallel.place_training(
        state, make_train_step(language.next_token_loss, model), mesh)
    t0 = time.perf_counter()
    state, history = fit(state, train_step, loader, workdir=workdir, num_steps=config.num_steps,
                         **fit_kw)
    train_seconds = time.perf_counter() - t0
    if mesh is not None:  # evaluate and sample on one device per process
        state = parallel.local_copy(state)
    main_process = parallel.is_main_process()
    val = language.lm_metrics(evaluate(jax.jit(make_eval_step(language.next_token_loss, model)),
                                       state, val_batches))
    say = print if main_process else (lambda *a, **k: None)  # logs from process 0 only
    say(f"Validation: loss {val['loss']:.4f} nats/char, {val['bits_per_token']:.3f} bits/char")

    t1 = time.perf_counter()
    sample_ids = language.generate_cached(model, state.params, prompt_ids, config.sample_tokens,
                                          jax.random.PRNGKey(config.seed + 1),
                                          temperature=config.temperature, top_k=config.top_k)
    sample_seconds = time.perf_counter() - t1
    sample = vocab.decode(sample_ids)
    say(f"\nSample ({config.sample_tokens} characters, temperature {config.temperature}):\n"
          f"{config.prompt}{sample}\n")

    if main_process:
        plots.plot_curves(history, ["loss"], workdir / "curves.png", xlabel="step",
                          title="decoder-only Transformer on tiny shakespeare")
    steady = history[1:] if len(history) > 1 else history  # the first row includes compilation
    results = {
        "dataset": config.text_path or config.text, "num_steps": int(state.step),
        "epochs": history[-1]["epoch"] if history else 0, "params": int(n_params),
        "train_loss": history[-1]["loss"] if history else None,
        "val_loss": val["loss"], "val_bpc": val["bits_per_token"],
        "val_perplexity": val["perplexity"], "test_loss": val["loss"],
        "test_accuracy": val["accuracy"],
        "tokens_per_second": sum(r["count"] for r in steady) / max(
            sum(r["seconds"] for r in steady), 1e-9),
        "ms_per_step": 1000 * sum(r["seconds"] for r in steady) / max(
            sum(r["step"] - p["step"] for p, r in zip(history, steady, strict=False)), 1),
        "train_seconds": train_seconds,
        "sample_tokens_per_second": config.sample_tokens / sample_seconds,
        "prompt": config.prompt, "sample": sample,
        "device": str(jax.devices()[0].device_kind),
    }
    if main_process:
        write_results(workdir, results)
    return results


if __name__ == "__main__":
    run_experiment(main, get_config, "runs/transformer_lm")
