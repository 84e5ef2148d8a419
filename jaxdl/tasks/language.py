"""Language modelling: next-token cross-entropy, LM units, and sampling / generation.

Loss: `next_token_loss(params, batch, rng, model, train)` on `batch['tokens']` (batch,
time + 1) int, or on `batch['inputs']` / `batch['targets']` (batch, time); the model maps
inputs (batch, time) to logits (batch, time, vocab). `batch['mask']` is optional, per
example (batch,) or per token (batch, time). Metrics are sums over tokens (`loss_sum` in
nats, `correct`, `count` = tokens) so `reduce_metrics` gives nats per token;
`lm_metrics` adds perplexity and bits per token (bits per character for char models).

Sampling is model-agnostic: `sample_logits(rng, logits, ...)` picks the next token from
logits (batch, vocab) greedily, with a temperature, or among the top k, and
`decode(step_fn, state, logits, ...)` runs any `step_fn(state, token) -> (logits, state)`
under `lax.scan`, one step per new token. `generate` wires both to a model that follows
the carried-state convention `model.apply(v, tokens, carry=c, return_carry=True) ->
(logits, c)` (e.g. `jaxdl.nn.recurrent.RecurrentLM`).
"""

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import metrics as lm_units
from jaxdl.errors import UserError
from jaxdl.tasks.common import finish, token_cross_entropy


def split_batch(batch: dict):
    """(inputs, targets, weights), each (batch, time); weights from the optional mask."""
    if "tokens" in batch:
        tokens = batch["tokens"]
        if tokens.ndim != 2 or tokens.shape[1] < 2:
            raise UserError(f"batch['tokens'] must be (batch, time + 1) with time >= 1, got "
                            f"{tuple(tokens.shape)}")
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
    elif "inputs" in batch and "targets" in batch:
        inputs, targets = batch["inputs"], batch["targets"]
    else:
        raise UserError(f"a language batch needs 'tokens' or 'inputs' and 'targets'; got keys "
                        f"{sorted(batch)}")
    if inputs.shape != targets.shape or inputs.ndim != 2:
        raise UserError(f"inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} must "
                        "both be (batch, time)")
    if not (jnp.issubdtype(inputs.dtype, jnp.integer)
            and jnp.issubdtype(targets.dtype, jnp.integer)):
        raise UserError(f"token ids must be integers, got {inputs.dtype} / {targets.dtype}; "
                        "encode text with a vocabulary")
    mask = batch.get("mask")
    if mask is None:
        weights = jnp.ones(targets.shape, jnp.float32)
    elif mask.shape == targets.shape[:1]:
        weights = jnp.broadcast_to(mask.astype(jnp.float32)[:, None], targets.shape)
    elif mask.shape == targets.shape:
        weights = mask.astype(jnp.float32)
    else:
        raise UserError(f"mask {tuple(mask.shape)} must be (batch,) or (batch, time) = "
                        f"{tuple(targets.shape)}")
    return inputs, targets, weights


def next_token_loss(params, batch, rng, model, train, *, batch_stats=None,
                    loss_impl: str = "auto"):
    """Mean next-token cross-entropy (nats) over the unmasked tokens; summed metrics.
    `loss_impl`: plain | chunked | auto (`jaxdl.tasks.common.token_cross_entropy`)."""
    inputs, targets, w = split_batch(batch)
    loss_sum, hits, new_bs = token_cross_entropy(model, params, inputs, targets, w, rng, train,
                                                 batch_stats, loss_impl=loss_impl)
    return finish(loss_sum, jnp.sum(w), {"correct": jnp.sum(hits * w)}, new_bs, batch_stats)


def lm_metrics(reduced: dict) -> dict:
    """Add `perplexity` and `bits_per_token` to reduced metrics holding `loss` (nats/token)."""
    out = dict(reduced)
    out["perplexity"] = lm_units.perplexity(reduced["loss"])
    out["bits_per_token"] = lm_units.bits_per_char(reduced["loss"])
    return out


def sample_logits(rng, logits, *, temperature: float = 1.0, top_k: int = 0,
                  greedy: bool = False) -> jax.Array:
    """Next tokens (batch,) from logits (batch, vocab).

    greedy (or temperature 0): argmax. Otherwise a draw from softmax(logits / temperature),
    restricted to the `top_k` largest logits when top_k > 0.
    """
    logits = logits.astype(jnp.float32)
    if greedy or (isinstance(temperature, int | float) and temperature == 0):
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    if top_k and top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(rng, logits / temperature, axis=-1).astype(jnp.int32)


def decode(step_fn, state, logits, num_tokens: int, rng, *, return_state: bool = False,
           keep_logits: bool = True, **sampling):
    """Sample `num_tokens` tokens, feeding each back through `step_fn` (one step each).

    step_fn(state, tokens (batch,)) -> (logits (batch, vocab), state); `logits` predicts
    the first new token. Returns tokens (batch, num_tokens) and the logits each was drawn
    from (batch, num_tokens, vocab; None with `keep_logits=False`, which spares writing
    them); with `return_state`, also `(state, next_logits)` after the last token, to
    continue from.
    """
    def body(carry, key):
        state, logits = carry
        token = sample_logits(key, logits, **sampling)
        next_logits, state = step_fn(state, token)
        return (state, next_logits), (token, logits if keep_logits else None)

    keys = jax.random.split(rng, num_tokens)
    final, (tokens, used) = jax.lax.scan(body, (state, logits), keys)
    out = jnp.swapaxes(tokens, 0, 1), None if used is None else jnp.swapaxes(used, 0, 1)
    return (*out, final) if return_state else out


@functools.partial(jax.jit, static_argnames=("model", "num_tokens", "top_k", "greedy"))
def _generate(model, params, prompt, rng, temperature, *, num_tokens, top_k, greedy):
    variables = {"params": params}
    logits, carry = model.apply(variables, prompt, carry=None, return_carry=True)

    def step(carry, token):
        out, carry = model.apply(variables, token[:, None], carry=carry, return_carry=True)
        return out[:, 0], carry

    return decode(step, carry, logits[:, -1], num_tokens, rng, temperature=temperature,
                  top_k=top_k, greedy=greedy)


def generate(model, params, prompt, num_tokens: int, rng=None, *, temperature: float = 1.0,
             top_k: int = 0, greedy: bool = False, return_logits: bool = False):
    """Continue `prompt` ids (time,) or (batch, time) by `num_tokens` sampled ids.

    The prompt is read once, in one scan; each new token then costs one model step from
    the carried state. Returns ids shaped like the prompt's batch: (num_tokens,) or
    (batch, num_tokens); with `return_logits`, also the logits each id was drawn from.
    """
    prompt = _check_generation_args(prompt, num_tokens, temperature, greedy)
    call_params = inspect.signature(type(model).__call__).parameters
    if "carry" not in call_params and not any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in call_params.values()):
        raise UserError(f"generate needs a model that carries its state (e.g. RecurrentLM), got "
                        f"{type(model).__name__}; for a Transformer DecoderLM use "
                        "generate_cached")
    batched = prompt.ndim == 2
    rng = jax.random.PRNGKey(0) if rng is None else rng
    tokens, logits = _generate(model, params, jnp.asarray(prompt.reshape(-1, prompt.shape[-1]),
                                                          jnp.int32),
                               rng, jnp.float32(temperature), num_tokens=int(num_tokens),
                               top_k=int(top_k), greedy=bool(greedy or temperature == 0))
    if not batched:
        tokens, logits = tokens[0], logits[0]
    return (tokens, logits) if return_logits else tokens


def _check_generation_args(prompt, num_tokens, temperature, greedy) -> np.ndarray:
    prompt = np.asarray(prompt)
    if prompt.ndim not in (1, 2) or prompt.shape[-1] == 0:
        raise UserError(f"the prompt must hold at least one token, got shape {prompt.shape}; "
                        "pass a non-empty prompt")
    if num_tokens < 1:
        raise UserError(f"num_tokens must be >= 1, got {num_tokens}")
    if not greedy and temperature < 0:
        raise UserError(f"temperature must be >= 0, got {temperature}")
    return prompt


def compute_params(params, dtype):
    """Matrices and tables (>= 2-d float leaves) cast once to the compute dtype: what every
    dense layer and embedding casts them to on each call anyway, so a generation loop reads
    bfloat16 weights instead of converting the float32 masters at every token. Gains and
    biases (1-d) keep their dtype, as the layers use them. The same numbers as `params`."""
    def cast(x):
        floating = jnp.issubdtype(x.dtype, jnp.floating)
        return x.astype(dtype) if floating and x.ndim >= 2 and x.dtype != dtype else x

    return jax.tree.map(cast, params)


def segments(prompt_len: int, num_tokens: int, context: int) -> list[tuple[bool, int]]:
    """The static plan of a generation: (refill first?, new tokens) per stretch. A stretch
    runs until the context is full; the next refills the cache from the newest half."""
    plan, length, done = [], prompt_len, 0
    while done < num_tokens:
        refill = length == context
        if refill:
            length = context // 2
        n = min(num_tokens - done, context - length)
        plan.append((refill, n))
        done, length = done + n, length + n
    return plan


# XLA options for the generation program, per backend (`jax.jit`'s compiler_options).
GENERATE_COMPILER_OPTIONS: dict[str, dict] = {}


def generation_program():
    """`_generate_cached` jitted with this backend's GENERATE_COMPILER_OPTIONS."""
    options = GENERATE_COMPILER_OPTIONS.get(jax.default_backend(), {})
    return _jitted_generation(tuple(sorted(options.items())))


@functools.cache
def _jitted_generation(options: tuple):
    return jax.jit(_generate_cached, compiler_options=dict(options) or None,
                   static_argnames=("model", "num_tokens", "top_k", "greedy", "keep_logits"))


def _generate_cached(model, params, context, rng, temperature, *, num_tokens, top_k, greedy,
                     keep_logits):
    """The whole generation as one program: prefill, then each stretch under `lax.scan`."""
    from jaxdl.nn.transformer import init_cache  # decoding glue only, no training logic

    params = compute_params(params, model.dtype)
    plan = segments(context.shape[1], num_tokens, model.max_len)
    size = model.max_len if any(refill for refill, _ in plan) else context.shape[1] + num_tokens
    half = model.max_len // 2

    def prefill(tokens):
        cache = init_cache(model, params, tokens.shape[0], size)
        logits, mutated = model.apply({"params": params, "cache": cache}, tokens, decode=True,
                                      mutable=["cache"])
        return mutated["cache"], logits[:, -1]

    def step(cache, token):
        out, mutated = model.apply({"params": params, "cache": cache}, token[:, None],
                                   decode=True, mutable=["cache"])
        return out[:, 0], mutated["cache"]

    def stretch(carry, n):
        """n tokens after `recent` (the newest tokens so far): (tokens, their logits)."""
        cache, logits, recent, rng = carry
        rng, key = jax.random.split(rng)
        tokens, used, (cache, logits) = decode(step, cache, logits, n, key, return_state=True,
                                               keep_logits=keep_logits,
                                               temperature=temperature, top_k=top_k,
                                               greedy=greedy)
        recent = jnp.concatenate([recent, tokens], 1)[:, -half:]
        return (cache, logits, recent, rng), (tokens, used)

    def refilled(carry, n):
        _, _, recent, rng = carry
        return stretch((*prefill(recent), recent, rng), n)

    cache, logits = prefill(context)
    carry, pieces = (cache, logits, context[:, -half:], rng), []
    i = 0
    while i < len(plan):  # runs of equal refilling stretches: one scan each
        refill, n = plan[i]
        run = 1
        while refill and i + run < len(plan) and plan[i + run] == plan[i]:
            run += 1
        if run == 1:
            carry, out = (refilled if refill else stretch)(carry, n)
            pieces.append(out)
        else:
            carry, (tokens, used) = jax.lax.scan(lambda c, _, n=n: refilled(c, n), carry,
                                                 length=run)
            pieces.append((jnp.moveaxis(tokens, 0, 1).reshape(tokens.shape[1], -1),
                           None if used is None else jnp.moveaxis(used, 0, 1).reshape(
                               used.shape[1], -1, used.shape[-1])))
        i += run
    tokens = jnp.concatenate([t for t, _ in pieces], 1)
    return tokens, jnp.concatenate([u for _, u in pieces], 1) if keep_logits else None


def generate_cached(model, params, prompt, num_tokens: int, rng=None, *,
                    temperature: float = 1.0, top_k: int = 0, greedy: bool = False,
                    return_logits: bool = False):
    """Continue `prompt` with a Transformer decoder (`DecoderLM`) from its KV cache.

    `prompt` is (time,) ids or (batch, time) for many prompts of one length at once. The
    whole generation is one compiled program with no host round trip per token: the
    prompt fills the cache in one pass, then each new token is one single-position step
    under `lax.scan`, the cache updated in place. The weights are cast to the compute
    dtype once, before the loop (`compute_params`), and the cache holds prompt + new
    positions when that fits the context. When the context (`model.max_len`) is full,
    the cache is refilled from the newest `max_len // 2` tokens and generation goes on (a
    sliding window, as nanoGPT crops its context), so any number of tokens can be
    generated. Sampling options and return shapes as `generate`.
    """
    prompt = _check_generation_args(prompt, num_tokens, temperature, greedy)
    if not isinstance(getattr(model, "max_len", None), int):
        raise UserError(f"generate_cached needs a Transformer decoder with a KV cache "
                        f"(DecoderLM), got {type(model).__name__}; for a recurrent model use "
                        "generate")
    batched = prompt.ndim == 2
    context = jnp.asarray(prompt.reshape(-1, prompt.shape[-1])[:, -model.max_len:], jnp.int32)
    rng = jax.random.PRNGKey(0) if rng is None else rng
    tokens, logits = generation_program()(
        model, params, context, rng, jnp.float32(temperature), num_tokens=int(num_tokens),
        top_k=int(top_k), greedy=bool(greedy or temperature == 0),
        keep_logits=bool(return_logits))
    if not batched:
        tokens, logits = tokens[0], None if logits is None else logits[0]
    return (tokens, logits) if return_logits else tokens
