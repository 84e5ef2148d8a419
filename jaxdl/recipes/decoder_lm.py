"""A GPT-style decoder-only Transformer, character level, on tiny shakespeare.

Two recipes on the same data, model class and train step:

- the default, jaxdl's own: rotary positions, RMSNorm, QK-norm, ReLU^2 MLP, untied
  head, zero-initialised output projections, logit soft-capping; Muon on the hidden
  matrices with AdamW on the rest, warmup then linear decay to zero. It was chosen by
  `benchmarks/lm_sweep.py` at a fixed wall-clock budget (docs/transformers.md, ablation);
- `nanogpt_config()` (`--config=configs/nanogpt_shakespeare_char.py`): nanoGPT's
  documented CPU run of `shakespeare_char` (4 layers, 4 heads, 128 wide, context 64,
  batch 12, 2000 iterations, dropout 0, AdamW lr 1e-3 with 100 warmup steps and cosine
  decay to 1e-4, beta2 0.99, weight decay 0.1 on matrices only, gradient clipping 1.0, no
  biases, tied embeddings, learned positions, LayerNorm, GELU), followed step for step.

Both use nanoGPT's 90/10 split. Validation reads every non-overlapping window of the val
split, where nanoGPT's printed figure estimates it from 20 random batches. Samples come
from the KV cache. `build_model_and_optimizer` is the one definition of a recipe: the
runner, the nanoGPT replay (benchmarks/nanogpt_replay.py), the benchmarks and the golden
test use it. Keys missing from an older workdir's config.json mean nanoGPT's choice.
"""

import functools

import jax
from optax.contrib import MuonDimensionNumbers

from jaxdl.errors import UserError
from jaxdl.nn import count_params
from jaxdl.nn.transformer import DecoderLM
from jaxdl.options import Option, shared
from jaxdl.recipes.base import Task, configure_model, steady_step_rate
from jaxdl.recipes.language_model import TEXT_OPTIONS, LanguageModel, example_tokens
from jaxdl.rules import BOOL, Choice, Rule, count
from jaxdl.tasks import language
from jaxdl.train import flops, make_optimizer, make_schedule, muon_adamw

# The keys a pretrained checkpoint decides (init_from): the model's shape and architecture.
ARCHITECTURE = ("num_layers", "num_heads", "dim", "mlp", "mlp_dim", "use_bias", "positional",
                "norm", "qk_norm", "tie_embeddings", "logit_softcap")
# What nanoGPT's GPT does, for every architecture and optimizer key (and for workdirs
# saved before the key existed).
NANOGPT = dict(positional="learned", norm="layernorm", qk_norm=False, mlp="gelu", mlp_dim=0,
               tie_embeddings=True, zero_init_out=False, logit_softcap=0.0,
               optimizer="adamw", schedule="warmup_cosine", muon_learning_rate=0.0,
               muon_weight_decay=0.0)


class DecoderLanguageModel(LanguageModel):
    name = "decoder_lm"
    description = "decoder-only Transformer language model"
    throughput_unit = "tokens"
    model_options = ("remat", "attention_impl", "loss_impl")
    options = (
        *TEXT_OPTIONS,
        Option("init_from", "", "start from a pretrained GPT-2: hf:DIR (config.json, "
               "model.safetensors, tokenizer.json); the model's shape comes from it"),
        shared("num_layers", 4),
        shared("num_heads", 4),
        shared("dim", 128),
        shared("seq_len", 64, "the context"),
        shared("dropout", 0.0),
        Option("attention_dropout", 0.0, "on the attention weights (nanoGPT: the same as "
               "dropout); > 0 in training takes the explicit attention path",
               Rule(0.0, 1.0, open_high=True, example=0.0)),
        Option("use_bias", False, "biases in the linear layers and norms", BOOL),
        Option("positional", "rotary", "rotary | learned | sinusoidal",
               Choice("rotary", "learned", "sinusoidal")),
        Option("norm", "rmsnorm", "rmsnorm | layernorm", Choice("rmsnorm", "layernorm")),
        Option("qk_norm", True, "normalise queries and keys", BOOL),
        Option("mlp", "relu2", "relu2 | gelu | gelu_tanh (GPT-2's) | swiglu",
               Choice("relu2", "gelu", "gelu_tanh", "swiglu")),
        Option("mlp_dim", 0, "the MLP's width; 0: 4 x dim", count(1 << 20, 0)),
        Option("tie_embeddings", False, "the output head is the token embedding", BOOL),
        Option("zero_init_out", True, "zero-initialised output projections", BOOL),
        Option("logit_softcap", 15.0, "tanh soft-cap of the logits; 0: off",
               Rule(0.0, 1e4, example=15.0)),
        shared("batch_size", 32),
        shared("num_steps", 300, "~75% of the wall time nanoGPT's recipe needs "
               "(docs/transformers.md: the race)"),
        shared("batches_per_epoch", 100),
        shared("optimizer", "muon", "muon (hidden matrices) + adamw (the rest) | adamw",
               Choice("muon", "adamw")),
        Option("muon_learning_rate", 0.02, "Muon's step size",
               Rule(0.0, 10.0, example=0.02)),
        Option("muon_weight_decay", 0.0, "Muon's decoupled weight decay",
               Rule(0.0, 10.0, example=0.0)),
        shared("learning_rate", 3e-3, "AdamW's (all parameters with optimizer=adamw)"),
        shared("min_learning_rate", 0.0),
        Option("schedule", "warmup_linear", "warmup_linear | warmup_cosine",
               Choice("warmup_linear", "warmup_cosine")),
        shared("warmup_steps", 30),
        shared("beta2", 0.99),
        shared("weight_decay", 0.0, "AdamW's, decoupled, on matrices and embeddings only"),
        shared("grad_clip_norm", 1.0),
    )

    def nanogpt_config(self):
        """nanoGPT's CPU `shakespeare_char` recipe (configs/nanogpt_shakespeare_char.py)."""
        c = self.get_config()
        c.update(NANOGPT)
        c.update(batch_size=12, seq_len=64, num_steps=2000, batches_per_epoch=250,
                 learning_rate=1e-3, min_learning_rate=1e-4, warmup_steps=100, beta2=0.99,
                 weight_decay=0.1, grad_clip_norm=1.0)
        return c

    def load_data(self, config):
        """The text; with `init_from`, first the checkpoint: its architecture into the
        config, its tokenizer (where `tokenizer` names none), its params cut to `seq_len`
        positions (as nanoGPT's `crop_block_size`)."""
        if not config.get("init_from"):
            return super().load_data(config)
        from jaxdl import pretrained

        pre = pretrained.read_gpt2(config.init_from)
        defaults = self.get_config()
        for key in ARCHITECTURE:  # a key the user set to another value contradicts it
            want = pre.options[key]
            if config[key] != want and config[key] != defaults[key]:
                raise UserError(f"--config.{key}={config[key]!r} contradicts the checkpoint "
                                f"{config.init_from} ({key}={want!r}); leave {key} out: with "
                                "init_from the model's shape comes from the checkpoint")
            config[key] = want
        positions = pre.options["max_positions"]
        if config.seq_len > positions:
            raise UserError(f"--config.seq_len={config.seq_len} is longer than the "
                            f"checkpoint's {positions} positions; use at most {positions}")
        if not config.tokenizer:
            if pre.tokenizer is None:
                raise UserError(f"{config.init_from} has no tokenizer.json; give the one its "
                                "weights were trained with: --config.tokenizer=PATH")
            config.tokenizer = str(pre.tokenizer)
        data = super().load_data(config)
        if len(data.vocab) != pre.options["vocab_size"]:
            raise UserError(f"the tokenizer {config.tokenizer} has {len(data.vocab)} tokens and "
                            f"the checkpoint's weights {pre.options['vocab_size']}; give the "
                            "checkpoint's own tokenizer")
        pre.params["pos"]["table"] = pre.params["pos"]["table"][:config.seq_len]
        data.pretrained = pre.params
        return data

    def build_task(self, config, data) -> Task:
        model, tx, lr = build_model_and_optimizer(config, len(data.vocab))
        loss = functools.partial(language.next_token_loss,
                                 loss_impl=config.loss_impl)
        return Task(model, loss, tx, example_tokens(config), learning_rate=lr,
                    pretrained=data.pretrained)

    def generate(self, config, task, params, prompt_ids, num_tokens, rng, temperature):
        return language.generate_cached(task.model, params, prompt_ids, num_tokens, rng,
                                        temperature=temperature, top_k=config.top_k)

    def evaluate(self, config, task, data, state, ctx) -> dict:
        """The language model's evaluation; from a pretrained checkpoint also the
        checkpoint's own validation loss (`init_val_loss`, nanoGPT's step-0 loss): a
        fine-tune's before and after from one run."""
        out = super().evaluate(config, task, data, state, ctx)
        if data.pretrained is None:
            return out
        start = state.replace(params=ctx.placement.like(data.pretrained, state.params))
        val = self.val_metrics(config, task, data, start, ctx)
        out["init_val_loss"] = val["loss"]
        line = f"Validation of {config.init_from} before training: loss {val['loss']:.4f}"
        if data.level == "bpe":
            out["init_val_bpc"] = self.bits_per_char(config, data, val["loss"])
            line += f" nats/token, {out['init_val_bpc']:.3f} bits/character"
        ctx.say(line)
        return out

    def report(self, config, task, data, state, history, ctx, writer) -> dict:
        out = super().report(config, task, data, state, history, ctx, writer)
        n = count_params(state.params)
        out.update(params=n, epochs=history[-1]["epoch"] if history else 0,
                   ms_per_step=1000 / max(steady_step_rate(history), 1e-9),
                   mfu_6n=mfu_6n(config, n, out["tokens_per_second"], ctx.placement.mesh))
        return out


def mfu_6n(config, num_params: int, tokens_per_second: float, mesh=None) -> float | None:
    """MFU by nanoGPT's formula (`flops.flops_per_token_6n`, N without the position table,
    as nanoGPT's `get_num_params`), against the devices' dense peak; None where unknown."""
    devices = jax.devices()[:1] if mesh is None else mesh.devices.flat
    peak = flops.total_peak(devices, config.dtype)
    if not peak:
        return None
    table = config.seq_len * config.dim if config.positional == "learned" else 0
    per_token = flops.flops_per_token_6n(num_params - table, config.num_layers,
                                         config.num_heads, config.dim // config.num_heads,
                                         config.seq_len)
    return tokens_per_second * per_token / peak


def _key(config, name):
    return config.get(name, NANOGPT[name])


def build_model(config, vocab_size: int) -> DecoderLM:
    return DecoderLM(vocab_size, num_layers=config.num_layers, num_heads=config.num_heads,
                     dim=config.dim, max_len=config.seq_len, dropout=config.dropout,
                     attention_dropout=config.get("attention_dropout", config.dropout),
                     use_bias=config.use_bias, positional=config.positional,
                     norm=_key(config, "norm"), qk_norm=_key(config, "qk_norm"),
                     mlp=_key(config, "mlp"), mlp_dim=_key(config, "mlp_dim"),
                     tie_embeddings=_key(config, "tie_embeddings"),
                     zero_init_out=_key(config, "zero_init_out"),
                     logit_softcap=_key(config, "logit_softcap"))


def muon_dimensions(params):
    """Muon's parameters, labelled by name: every kernel inside a block (attention's
    query/key/value (embed, heads, kv) and out (heads, kv, embed), the MLP's matrices),
    each with its input and output axes; None (AdamW) for the token embedding, the
    positions, the output head, the norms' gains and any bias."""

    def label(path, x):
        names = [str(getattr(k, "key", k)) for k in path]
        if names[-1] != "kernel" or not names[0].startswith("block"):
            return None
        if names[-2] in ("query", "key", "value"):
            return MuonDimensionNumbers(reduction_axis=0, output_axis=(1, 2))
        if names[-2] == "out":
            return MuonDimensionNumbers(reduction_axis=(0, 1), output_axis=2)
        return MuonDimensionNumbers(0, 1) if x.ndim == 2 else None

    return jax.tree_util.tree_map_with_path(label, params)


def build_model_and_optimizer(config, vocab_size: int):
    """(model, optimizer, schedule): the recipe, for every caller. With Muon, the
    returned schedule (logged as the learning rate) is AdamW's."""
    model = configure_model(build_model(config, vocab_size), config)  # as Recipe.build
    kind = _key(config, "schedule")
    schedule = lambda peak: make_schedule(  # noqa: E731
        peak, kind, total_steps=config.num_steps, warmup_steps=config.warmup_steps,
        min_learning_rate=config.min_learning_rate * peak / config.learning_rate)
    lr = schedule(config.learning_rate)
    if _key(config, "optimizer") == "muon":
        tx = muon_adamw(schedule(config.muon_learning_rate), lr, muon_dimensions,
                        weight_decay=config.muon_weight_decay,
                        adam_weight_decay=config.weight_decay, b2=config.beta2,
                        grad_clip_norm=config.grad_clip_norm)
    else:
        tx = make_optimizer("adamw", lr, config.weight_decay, b2=config.beta2,
                            grad_clip_norm=config.grad_clip_norm, decay_matrices_only=True)
    return model, tx, lr
