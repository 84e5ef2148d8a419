"""What the recurrent and the decoder-only language models share: text, vocabulary and
nanoGPT's 90/10 split, random training windows, validation on every non-overlapping
window of the val split (each from a fresh state), and a sample from a prompt.

A subclass gives the model and optimizer (`build`) and its generator (`generate`).
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import plots
from jaxdl.data import bpe
from jaxdl.data import text as textdata
from jaxdl.data.loader import WindowLoader, eval_windows
from jaxdl.errors import UserError
from jaxdl.options import Option, shared
from jaxdl.recipes.base import Recipe, steady_rate
from jaxdl.rules import Rule, count, positive_int
from jaxdl.tasks import language
from jaxdl.train.loop import evaluate


@dataclasses.dataclass
class TextData:
    vocab: object
    train_ids: np.ndarray
    val_ids: np.ndarray
    level: str = "char"  # char | word | bpe (a tokenizer.json)
    pretrained: dict | None = None  # params to start from (decoder_lm's init_from)

    @property
    def sep(self) -> str:  # between the prompt and its continuation, when printed
        return " " if self.level == "word" else ""


TEXT_OPTIONS = (  # the text, sampling and evaluation keys of every LM recipe
    Option("text", "tinyshakespeare", "embedded corpus: tinyshakespeare | simple_sentences"),
    Option("text_path", "", "any UTF-8 text file, or array_record:DIR (`jaxdl data "
           "prepare`); overrides `text`"),
    Option("tokenizer", "", "a Hugging Face tokenizer.json (byte-level BPE, as GPT-2's; "
           "`jaxdl data tokenizer` writes one) for the text's tokens; empty: characters"),
    Option("val_fraction", 0.1, "nanoGPT's split: the first 90% trains, the rest validates",
           Rule(0.0, 1.0, open_high=True, example=0.1)),
    shared("eval_batch_size", 256),
    Option("val_windows", 0, "validation windows; 0: every non-overlapping window of the "
           "val split", count(example=0)),
    shared("eval_every", 0, "steps between validation passes during training; 0: at the end"),
    shared("prompt", "ROMEO:"),
    Option("sample_tokens", 300, "tokens of the sample in results.json",
           positive_int(100_000, 300)),
    Option("temperature", 0.8, "sampling temperature; 0: greedy", Rule(0.0, 100.0,
                                                                        example=0.8)),
    Option("top_k", 0, "sample from the k likeliest tokens; 0: the whole vocabulary",
           count(1 << 20, 0)),
)


class LanguageModel(Recipe):
    samples = True
    batch_samples = True  # `jaxdl sample` takes several --prompt and --samples K
    level_key = None  # config key of the text level (char | word), where the recipe has one

    def load_data(self, config) -> TextData:
        """The corpus as ids, the vocabulary built on the whole text (as nanoGPT's)."""
        level = config[self.level_key] if self.level_key else "char"
        if config.text_path.startswith("array_record:"):  # `jaxdl data prepare --source=text:`
            from jaxdl.data import records

            vocab, train_ids, val_ids = records.load_text(config.text_path[len("array_record:"):])
            _check_prepared(config, vocab, level)
            return TextData(vocab, train_ids, val_ids, vocab.level)
        text = textdata.load_text(config.text, config.text_path)
        if config.get("tokenizer"):
            return self._bpe_data(config, text, level)
        vocab = textdata.make_vocab(level, text)
        train_ids, val_ids = textdata.train_val_split(vocab.encode(text), config.val_fraction)
        return TextData(vocab, train_ids, val_ids, level)

    @staticmethod
    def _bpe_data(config, text: str, level: str) -> TextData:
        """The text split by characters as nanoGPT splits it, then each part tokenized with
        the tokenizer; its path is made absolute in the config (config.json then finds it)."""
        if level != "char":
            raise UserError(f"--config.tokenizer and --config.level={level} both choose the "
                            "tokens; give one of them")
        vocab = bpe.BpeVocab(config.tokenizer)
        config.tokenizer = str(vocab.path.resolve())
        return TextData(vocab, *bpe.encode_split(vocab, text, config.val_fraction), "bpe")

    def train_loader(self, config, data, **shard):
        print(f"Training on {len(data.train_ids):,} {data.level} tokens, validating on "
              f"{len(data.val_ids):,}; vocabulary {len(data.vocab)}.")
        return WindowLoader(data.train_ids, config.batch_size, config.seq_len,
                            batches_per_epoch=config.batches_per_epoch, seed=config.seed,
                            **shard)

    def check(self, config, data) -> None:
        """Before training: the text holds a window, the val split too, the prompt encodes."""
        WindowLoader(data.train_ids, config.batch_size, config.seq_len)
        eval_windows(data.val_ids, config.seq_len, config.val_windows)
        if not config.prompt or len(data.vocab.encode(config.prompt)) == 0:
            raise UserError(f"config key 'prompt' is {config.prompt!r}, which encodes to no "
                            "token; give at least one character or word of the training "
                            "text (e.g. --config.prompt=\"ROMEO:\")")

    def val_loader(self, config, data, ctx):
        windows = eval_windows(data.val_ids, config.seq_len, config.val_windows)
        return ctx.eval_loader({"tokens": windows}, config.eval_batch_size)

    def val_metrics(self, config, task, data, state, ctx) -> dict:
        return language.lm_metrics(evaluate(ctx.eval_step(task), state,
                                            self.val_loader(config, data, ctx),
                                            put_batch=ctx.placement.put_batch))

    def evaluators(self, config, task, data, ctx) -> list:
        from jaxdl.train.loop import Evaluator

        def val(state, step, writer):
            m = self.val_metrics(config, task, data, state, ctx)
            ctx.say(f"step {step}: val loss {m['loss']:.4f}")
            return {"loss": m["loss"], "bits_per_token": m["bits_per_token"]}

        return [Evaluator("val", config.eval_every, val)] if config.eval_every else []

    def generate(self, config, task, params, prompt_ids, num_tokens, rng):
        raise NotImplementedError

    def continuation(self, config, task, data, params, prompt: str, num_tokens: int,
                     seed: int, temperature=None) -> str:
        return self.continuations(config, task, data, params, [prompt], num_tokens, seed,
                                  temperature)[0]

    def continuations(self, config, task, data, params, prompts: list[str], num_tokens: int,
                      seed: int, temperature=None) -> list[str]:
        """A continuation of each prompt. Prompts of one token length are generated as one
        batch (one compiled program); each batch draws from `fold_in(seed key, length)`,
        so a lone prompt keeps the seed's own key."""
        ids = [self._prompt_ids(data, p) for p in prompts]
        temperature = config.temperature if temperature is None else temperature
        out: list = [None] * len(prompts)
        for length in sorted({len(i) for i in ids}):
            rows = [k for k, i in enumerate(ids) if len(i) == length]
            rng = jax.random.PRNGKey(seed)
            if len(rows) < len(prompts):
                rng = jax.random.fold_in(rng, length)
            batch = np.stack([ids[k] for k in rows])
            tokens = np.asarray(self.generate(config, task, params, batch, num_tokens, rng,
                                              temperature))
            for k, row in zip(rows, tokens, strict=True):
                out[k] = data.vocab.decode(row)
        return out

    @staticmethod
    def _prompt_ids(data, prompt: str) -> np.ndarray:
        if not prompt:
            raise UserError("the prompt is empty; give at least one token, e.g. "
                            "--prompt \"ROMEO:\"")
        ids = np.asarray(data.vocab.encode(prompt))
        if len(ids) == 0:
            raise UserError(f"prompt {prompt!r} encodes to no tokens; give a word or character "
                            "of the training text")
        return ids

    def evaluate(self, config, task, data, state, ctx) -> dict:
        val = self.val_metrics(config, task, data, state, ctx)
        ctx.say(f"Validation: loss {val['loss']:.4f} nats/token, {val['bits_per_token']:.3f} "
                f"bits/token, perplexity {val['perplexity']:.2f}")
        params = ctx.placement.local(state.params)  # generation runs on one device per process
        sample = self.continuation(config, task, data, params, config.prompt,
                                   config.sample_tokens, config.seed + 1)
        unit = "characters" if data.level == "char" else "tokens"
        ctx.say(f"\nSample ({config.sample_tokens} {unit}, temperature {config.temperature}):"
                f"\n{config.prompt}{data.sep}{sample}\n")
        out = {"val_loss": val["loss"], "val_perplexity": val["perplexity"],
               "val_bits_per_token": val["bits_per_token"], "val_accuracy": val["accuracy"],
               "sample": sample}
        if data.level == "char":
            out["val_bpc"] = val["bits_per_token"]
        elif data.level == "bpe":  # bits per character: compares across tokenizers
            out["val_bpc"] = self.bits_per_char(config, data, val["loss"])
            ctx.say(f"Validation: {out['val_bpc']:.3f} bits/character")
        return out

    @staticmethod
    def bits_per_char(config, data, nats_per_token: float) -> float:
        """The validation windows' nats over the characters their predicted tokens decode
        to (every window predicts its last `seq_len` tokens)."""
        windows = eval_windows(data.val_ids, config.seq_len, config.val_windows)
        predicted = np.asarray(windows[:, 1:]).reshape(-1)
        chars = sum(len(data.vocab.decode(w)) for w in np.asarray(windows)[:, 1:])
        return float(nats_per_token * len(predicted) / max(chars, 1) / np.log(2.0))

    def report(self, config, task, data, state, history, ctx, writer) -> dict:
        step = int(state.step)
        if ctx.figures and ctx.is_main:
            plots.plot_curves(history, ["loss"], ctx.workdir / "curves.png", xlabel="step",
                              title=f"{self.description}: training")
        return {"text": config.text_path or config.text, "level": data.level,
                "tokenizer": config.get("tokenizer", ""),
                "vocab_size": len(data.vocab), "num_steps": step,
                "train_tokens": len(data.train_ids), "val_tokens": len(data.val_ids),
                "train_loss": history[-1]["loss"] if history else None,
                "tokens_per_second": steady_rate(history), "prompt": config.prompt}

    def sample(self, config, task, data, state, *, prompt, num, seed, out,
               samples: int = 1, as_json: bool = False) -> str:
        """The prompt and its continuation; several prompts (a list) and `samples` > 1
        continuations of each run as batches, printed as blocks split by a blank line, or
        with `as_json` one {"prompt", "continuation"} object a line (generated text may
        hold blank lines itself)."""
        prompts = [config.prompt] if prompt is None else (
            [prompt] if isinstance(prompt, str) else list(prompt))
        prompts = [p for p in prompts for _ in range(samples)]
        n = config.sample_tokens if num is None else num
        texts = self.continuations(config, task, data, state.params, prompts, n, seed)
        if as_json:
            return "\n".join(json.dumps({"prompt": p, "continuation": t})
                             for p, t in zip(prompts, texts, strict=True))
        return "\n\n".join(p + data.sep + t for p, t in zip(prompts, texts, strict=True))


def example_tokens(config):
    return jnp.zeros((1, config.seq_len), jnp.int32)


def _check_prepared(config, vocab, level: str) -> None:
    """A prepared text's tokens are the ones this run asks for; a BPE one's tokenizer becomes
    the run's (`config.tokenizer`: sampling and evaluation read it from config.json)."""
    where = config.text_path
    if vocab.level != "bpe":
        if config.get("tokenizer"):
            raise UserError(f"{where} holds {vocab.level}-level tokens, this run asks for "
                            f"--config.tokenizer; prepare it with `jaxdl data prepare "
                            "--source=text:... --tokenizer PATH`")
        if vocab.level != level:
            raise UserError(f"{where} holds {vocab.level}-level tokens, this run asks for "
                            f"{level}; prepare it with --level {level}")
        return
    if level != "char":
        raise UserError(f"{where} holds BPE tokens (its own tokenizer.json), this run asks for "
                        f"{level}-level ones; leave the level out")
    if config.get("tokenizer") and (bpe.BpeVocab(config.tokenizer).path.read_bytes()
                                    != vocab.path.read_bytes()):
        raise UserError(f"{where} was tokenized with another tokenizer than "
                        f"--config.tokenizer={config.tokenizer}; leave --config.tokenizer out "
                        "(the dataset's own is used) or prepare it with this one")
    config.tokenizer = str(vocab.path.resolve())
