"""An encoder-decoder Transformer that reads dates as people write them and outputs ISO dates.

"Thursday, March 5th 1998", "5/3/98", "jeudi 5 mars 1998", ... -> "1998-03-05", twelve
formats in English and French, generated from Python's datetime with a fixed seed; the
test dates never occur in training. Teacher forcing with the shared train step; test
outputs by beam search from the KV cache; `test_exact_match` is the fraction of test
dates whose whole output is right. Writes an attention map of the last decoder layer's
cross-attention for one test example. `jaxdl sample --prompt "5 mars 1998"` translates one.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import plots
from jaxdl.data.dates import make_dataset
from jaxdl.data.loader import StepLoader
from jaxdl.errors import UserError
from jaxdl.nn.transformer import EncoderDecoder
from jaxdl.options import Option, shared
from jaxdl.recipes.base import Recipe, Task
from jaxdl.rules import positive_int
from jaxdl.tasks import seq2seq
from jaxdl.train import make_optimizer, make_schedule
from jaxdl.train.loop import evaluate

BEAM_BATCH = 500  # test dates per beam-search call (one compiled shape)


class DateTranslation(Recipe):
    name = "seq2seq"
    description = "encoder-decoder Transformer: human-written dates -> ISO 8601"
    throughput_unit = "target tokens"
    samples = True

    model_options = ("remat", "attention_impl", "loss_impl")
    options = (
        Option("num_train", 20_000, "distinct training dates (each in one random format)",
               positive_int(10**7, 20_000)),
        Option("num_test", 2_000, "distinct test dates, none of them in training",
               positive_int(10**7, 2_000)),
        Option("src_len", 32, "characters of the human-written date, with EOS and padding",
               positive_int(4096, 32)),
        shared("num_layers", 2, "encoder layers, and as many decoder layers"),
        shared("num_heads", 4),
        shared("dim", 64),
        shared("dropout", 0.1),
        shared("batch_size", 64),
        shared("eval_batch_size", 500),
        shared("num_steps", 3000),
        shared("batches_per_epoch", 250, "one curve point and checkpoint every this many "
               "steps"),
        shared("learning_rate", 1e-3),
        shared("warmup_steps", 200),
        shared("weight_decay", 0.01, "AdamW's (decoupled)"),
        Option("beam_size", 3, "beams of the test set's beam search",
               positive_int(64, 3)),
        shared("prompt", "5 mars 1998", "what `jaxdl sample` translates by default"),
    )

    def load_data(self, config):
        train, test, vocab = make_dataset(config.num_train, config.num_test, config.seed,
                                          config.src_len)
        return {"train": train, "test": test, "vocab": vocab,
                "tgt_len": train["tgt"].shape[1] - 1}

    def build_task(self, config, data) -> Task:
        vocab, train = data["vocab"], data["train"]
        model = EncoderDecoder(len(vocab), len(vocab), num_layers=config.num_layers,
                               num_heads=config.num_heads, dim=config.dim,
                               dropout=config.dropout, max_src_len=config.src_len,
                               max_tgt_len=data["tgt_len"])
        lr = make_schedule(config.learning_rate, "warmup_cosine", total_steps=config.num_steps,
                           warmup_steps=config.warmup_steps)
        tx = make_optimizer("adamw", lr, config.weight_decay, grad_clip_norm=1.0)
        example = (jnp.asarray(train["src"][:1]), jnp.asarray(train["tgt"][:1, :-1]))
        loss = functools.partial(seq2seq.teacher_forcing_loss,
                                 loss_impl=config.loss_impl)
        return Task(model, loss, tx, example, learning_rate=lr)

    def train_loader(self, config, data, **shard):
        print(f"{len(data['train']['src'])} train / {len(data['test']['src'])} test dates; "
              f"vocabulary {len(data['vocab'])}")
        arrays = {"src": data["train"]["src"], "tgt": data["train"]["tgt"]}
        return StepLoader(arrays, config.batch_size, config.batches_per_epoch,
                          seed=config.seed, **shard)

    def translate(self, config, task, data, params, src: np.ndarray) -> list[str]:
        search = jax.jit(lambda p, s: seq2seq.beam_search(
            task.model, p, s, max_len=data["tgt_len"], beam_size=config.beam_size)[0])
        outputs = np.concatenate([np.asarray(search(params, src[i:i + BEAM_BATCH]))
                                  for i in range(0, len(src), BEAM_BATCH)])
        return [data["vocab"].decode(o) for o in outputs]

    def evaluate(self, config, task, data, state, ctx) -> dict:
        test = data["test"]
        loader = ctx.eval_loader({"src": test["src"], "tgt": test["tgt"]},
                                 config.eval_batch_size)
        m = evaluate(ctx.eval_step(task), state, loader, put_batch=ctx.placement.put_batch)
        decoded = self.translate(config, task, data, ctx.placement.local(state.params), test["src"])
        hits = np.array([d == t for d, t in zip(decoded, test["date"], strict=True)])
        vocab = data["vocab"]
        for i in range(min(5, len(decoded))):
            ctx.say(f"  {vocab.decode(test['src'][i])!r:36} -> {decoded[i]}  "
                    f"(true {test['date'][i]})")
        ctx.say(f"test exact match (beam {config.beam_size}): {100 * hits.mean():.2f}%")
        return {"test_loss": m["loss"], "test_accuracy": float(hits.mean()),
                "test_exact_match": float(hits.mean()), "test_token_accuracy": m["accuracy"],
                "test_teacher_forced_exact": m["exact"] / m["sequences"],
                "exact_match_per_format": {str(int(f)): float(hits[test["fmt"] == f].mean())
                                           for f in np.unique(test["fmt"])}}

    def report(self, config, task, data, state, history, ctx, writer) -> dict:
        params = ctx.placement.local(state.params) if ctx.figures else None  # every process
        if ctx.figures and ctx.is_main:
            decoded = self.translate(config, task, data, params, data["test"]["src"][:1])
            attention_map(task.model, params, data["test"], data["vocab"], decoded,
                          ctx.workdir / "cross_attention.png")
            plots.plot_curves(history, ["loss", "accuracy"], ctx.workdir / "curves.png",
                              xlabel="step", title="date translation (teacher forcing)")
            writer.images(int(state.step), {"cross_attention": plots.read_png(
                ctx.workdir / "cross_attention.png")})
        return {"dataset": "dates (generated, 12 formats)", "num_steps": int(state.step),
                "epochs": history[-1]["epoch"] if history else 0}

    def sample(self, config, task, data, state, *, prompt, num, seed, out) -> str:
        prompt = config.prompt if prompt is None else prompt
        try:
            src = data["vocab"].encode(prompt, config.src_len)[None]
        except (KeyError, ValueError):
            raise UserError(f"cannot read {prompt!r}: it has characters no date format uses "
                            f"or is longer than {config.src_len - 1} characters; write a date "
                            "such as \"5 mars 1998\" or \"March 5, 1998\"") from None
        return self.translate(config, task, data, state.params, src)[0]


def attention_map(model, params, test, vocab, decoded, path):
    """Cross-attention of the last decoder layer (mean over heads) for the first test date."""
    src = jnp.asarray(test["src"][:1])
    tgt = jnp.asarray(test["tgt"][:1, :-1])
    _, inter = model.apply({"params": params}, src, tgt, mutable=["intermediates"])
    blocks = inter["intermediates"]["decoder"]
    last = sorted(k for k in blocks if k.startswith("block"))[-1]
    weights = np.asarray(blocks[last]["cross_attn"]["attention"][0])[0].mean(0)  # (tgt, src)
    source = vocab.decode(test["src"][0])
    plots.plot_attention(weights, path, keys=list(source) + ["<eos>"],
                         queries=list(decoded[0]) + ["<eos>"],
                         title=f"cross-attention, last decoder layer: {source!r}")
