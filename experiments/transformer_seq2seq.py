"""An encoder-decoder Transformer that reads dates as people write them and outputs ISO dates.

    python -m experiments.transformer_seq2seq --workdir runs/dates
    python -m experiments.transformer_seq2seq --workdir runs/dates --config.num_steps=500

"Thursday, March 5th 1998", "5/3/98", "jeudi 5 mars 1998", ... -> "1998-03-05", twelve
formats in English and French, generated from Python's datetime with a fixed seed; the
test dates never occur in training. Teacher forcing with the shared train step; test
outputs by beam search from the KV cache; `test_exact_match` is the fraction of test
dates whose whole output is right. Writes an attention map of the last decoder layer's
cross-attention for one test example. Results: see the README's results table.
"""

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdl import plots
from jaxdl.config import run_experiment, write_results
from jaxdl.data.dates import make_dataset
from jaxdl.data.loader import ArrayLoader, StepLoader
from jaxdl.nn.transformer import EncoderDecoder
from jaxdl.tasks import seq2seq
from jaxdl.train import create_train_state, make_eval_step, make_optimizer, make_train_step
from jaxdl.train.loop import compile_step, evaluate, fit
from jaxdl.train.optim import make_schedule


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.num_train = 20_000  # distinct training dates (each in one random format)
    c.num_test = 2_000  # distinct test dates, none of them in training
    c.src_len = 32  # characters of the human-written date, with EOS and padding
    c.num_layers = 2  # encoder layers, and as many decoder layers
    c.num_heads = 4
    c.dim = 64
    c.dropout = 0.1
    c.batch_size = 64
    c.num_steps = 3000
    c.batches_per_epoch = 250  # one curve point and checkpoint every this many steps
    c.learning_rate = 1e-3
    c.warmup_steps = 200
    c.weight_decay = 0.01  # AdamW (decoupled)
    c.beam_size = 3
    c.seed = 0
    return c


def main(config, workdir):
    train, test, vocab = make_dataset(config.num_train, config.num_test, config.seed,
                                      config.src_len)
    tgt_len = train["tgt"].shape[1] - 1
    model = EncoderDecoder(len(vocab), len(vocab), num_layers=config.num_layers,
                           num_heads=config.num_heads, dim=config.dim, dropout=config.dropout,
                           max_src_len=config.src_len, max_tgt_len=tgt_len)
    lr = make_schedule(config.learning_rate, "warmup_cosine", total_steps=config.num_steps,
                       warmup_steps=config.warmup_steps)
    tx = make_optimizer("adamw", lr, config.weight_decay, grad_clip_norm=1.0)
    example = (jnp.asarray(train["src"][:1]), jnp.asarray(train["tgt"][:1, :-1]))
    state = create_train_state(model, tx, jax.random.PRNGKey(config.seed), example)
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    print(f"EncoderDecoder: {n_params:,} parameters; {len(train['src'])} train / "
          f"{len(test['src'])} test dates; vocabulary {len(vocab)}")
    arrays = {"src": train["src"], "tgt": train["tgt"]}
    loader = StepLoader(arrays, config.batch_size, config.batches_per_epoch, seed=config.seed)
    step = compile_step(make_train_step(seq2seq.teacher_forcing_loss, model))
    t0 = time.perf_counter()
    state, history = fit(state, step, loader, workdir=workdir, num_steps=config.num_steps)
    train_seconds = time.perf_counter() - t0

    test_loader = ArrayLoader({"src": test["src"], "tgt": test["tgt"]}, 500, shuffle=False)
    metrics = evaluate(jax.jit(make_eval_step(seq2seq.teacher_forcing_loss, model)), state,
                       test_loader)
    search = jax.jit(lambda p, s: seq2seq.beam_search(model, p, s, max_len=tgt_len,
                                                      beam_size=config.beam_size)[0])
    outputs = np.concatenate([np.asarray(search(state.params, test["src"][i:i + 500]))
                              for i in range(0, len(test["src"]), 500)])
    decoded = [vocab.decode(o) for o in outputs]
    exact = float(np.mean([d == t for d, t in zip(decoded, test["date"], strict=True)]))
    per_format = {int(f): float(np.mean([d == t for d, t, g in zip(
        decoded, test["date"], test["fmt"], strict=True) if g == f]))
        for f in np.unique(test["fmt"])}
    for i in range(5):
        print(f"  {vocab.decode(test['src'][i])!r:36} -> {decoded[i]}  (true {test['date'][i]})")
    print(f"test exact match (beam {config.beam_size}): {100 * exact:.2f}%")

    _attention_map(model, state.params, test, vocab, decoded, workdir)
    plots.plot_curves(history, ["loss", "accuracy"], workdir / "curves.png", xlabel="step",
                      title="date translation (teacher forcing)")
    write_results(workdir, {
        "dataset": "dates (generated, 12 formats)", "num_steps": config.num_steps,
        "epochs": history[-1]["epoch"], "train_seconds": train_seconds,
        "test_loss": metrics["loss"], "test_accuracy": exact, "test_exact_match": exact,
        "test_token_accuracy": metrics["accuracy"],
        "test_teacher_forced_exact": metrics["exact"] / metrics["sequences"],
        "exact_match_per_format": per_format, "num_params": int(n_params),
    })
    return exact


def _attention_map(model, params, test, vocab, decoded, workdir):
    """Cross-attention of the last decoder layer (mean over heads) for the first test date."""
    src = jnp.asarray(test["src"][:1])
    tgt = jnp.asarray(test["tgt"][:1, :-1])
    _, inter = model.apply({"params": params}, src, tgt, mutable=["intermediates"])
    blocks = inter["intermediates"]["decoder"]
    last = sorted(k for k in blocks if k.startswith("block"))[-1]
    weights = np.asarray(blocks[last]["cross_attn"]["attention"][0])[0].mean(0)  # (tgt, src)
    source = vocab.decode(test["src"][0])
    plots.plot_attention(weights, workdir / "cross_attention.png",
                         keys=list(source) + ["<eos>"], queries=list(decoded[0]) + ["<eos>"],
                         title=f"cross-attention, last decoder layer: {source!r}")


if __name__ == "__main__":
    run_experiment(main, get_config, "runs/transformer_seq2seq")
