"""A GPT-style decoder-only Transformer, character level, on tiny shakespeare.

The default config is nanoGPT's documented CPU run of `shakespeare_char` (4 layers,
4 heads, 128 wide, context 64, batch 12, 2000 iterations, dropout 0, AdamW lr 1e-3 with
100 warmup steps and cosine decay to 1e-4, beta2 0.99, weight decay 0.1 on matrices
only, gradient clipping 1.0, no biases, tied embeddings), on the same 90/10 split.
Validation reads every non-overlapping 64-character window of the val split, where
nanoGPT's printed figure estimates it from 20 random batches. Samples come from the KV
cache. `build` is the one definition of the recipe: the runner, the nanoGPT replay
(benchmarks/nanogpt_replay.py), the benchmarks and the golden test use it.
"""

from jaxdl.nn.transformer import DecoderLM
from jaxdl.recipes.base import Task, count_params, steady_step_rate
from jaxdl.recipes.language_model import LanguageModel, example_tokens, text_config
from jaxdl.tasks import language
from jaxdl.train import make_optimizer, make_schedule


class DecoderLanguageModel(LanguageModel):
    name = "decoder_lm"
    description = "decoder-only Transformer language model"
    throughput_unit = "tokens"

    def get_config(self):
        c = text_config(self.name)
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
        c.remat = "none"  # none | block | full: recompute block activations (jaxdl.nn.remat)
        c.attention_impl = "auto"  # auto | xla | cudnn (flash attention on GPUs; nn.attention)
        return c

    def build_task(self, config, data) -> Task:
        model, tx, lr = build_model_and_optimizer(config, len(data.vocab))
        return Task(model, language.next_token_loss, tx, example_tokens(config),
                    learning_rate=lr)

    def generate(self, config, task, params, prompt_ids, num_tokens, rng, temperature):
        return language.generate_cached(task.model, params, prompt_ids, num_tokens, rng,
                                        temperature=temperature, top_k=config.top_k)

    def report(self, config, task, data, state, history, ctx, writer) -> dict:
        out = super().report(config, task, data, state, history, ctx, writer)
        n = count_params(state.params)
        out.update(params=n, epochs=history[-1]["epoch"] if history else 0,
                   ms_per_step=1000 / max(steady_step_rate(history), 1e-9))
        return out


def build_model_and_optimizer(config, vocab_size: int):
    """(model, optimizer, schedule): the recipe, for every caller."""
    model = DecoderLM(vocab_size, num_layers=config.num_layers, num_heads=config.num_heads,
                      dim=config.dim, max_len=config.seq_len, dropout=config.dropout,
                      use_bias=config.use_bias, positional=config.positional,
                      remat=config.get("remat", "none"),
                      attention_impl=config.get("attention_impl", "auto"))
    lr = make_schedule(config.learning_rate, "warmup_cosine", total_steps=config.num_steps,
                       warmup_steps=config.warmup_steps,
                       min_learning_rate=config.min_learning_rate)
    tx = make_optimizer("adamw", lr, config.weight_decay, b2=config.beta2,
                        grad_clip_norm=config.grad_clip_norm, decay_matrices_only=True)
    return model, tx, lr
