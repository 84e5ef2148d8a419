"""Text-to-image runs rebuilt from their config alone: tokenizer, model, noise schedule,
optimizer, state template, sampler. Shared by `experiments/diffusion_text2img.py` and
`jaxdl sample`, so the CLI never needs the experiment's source.
"""

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.config import load_config
from jaxdl.data.prompts import PromptTokenizer, prompt_set_for
from jaxdl.errors import UserError
from jaxdl.nn.text2img import text_to_image_model
from jaxdl.tasks import denoise
from jaxdl.train import create_train_state, make_optimizer, make_schedule
from jaxdl.train.checkpoint import Checkpointer

IMAGE_HW = (28, 28)  # the datasets' size; the model sees them padded to config.image_size


def tokenizer_from_config(config) -> PromptTokenizer:
    return PromptTokenizer(prompt_set_for(config.dataset), config.text_level,
                           config.max_prompt_len)


def schedule_from_config(config) -> denoise.NoiseSchedule:
    return denoise.noise_schedule(config.noise_schedule, config.num_timesteps)


def optimizer_from_config(config):
    lr = make_schedule(config.learning_rate, "warmup_cosine", total_steps=config.num_steps,
                       warmup_steps=config.warmup_steps,
                       min_learning_rate=config.learning_rate * config.min_lr_fraction)
    return make_optimizer("adamw", lr, config.weight_decay, grad_clip_norm=config.grad_clip)


def build(config, *, abstract: bool = False):
    """(tokenizer, model, schedule, initial TrainState with EMA params) for a config; with
    `abstract` the state holds only shapes and dtypes (a restore template, nothing computed)."""
    tokenizer = tokenizer_from_config(config)
    model = text_to_image_model(config, tokenizer.vocab_size)
    size = config.image_size
    example = (jnp.zeros((1, size, size, 1), jnp.float32), jnp.zeros((1,), jnp.int32),
               jnp.asarray(tokenizer.empty[None]))
    init = lambda rng: create_train_state(model, optimizer_from_config(config), rng,  # noqa
                                          example, ema_decay=config.ema_decay)
    rng = jax.random.PRNGKey(config.seed)
    state = jax.eval_shape(init, rng) if abstract else jax.jit(init)(rng)  # one compile
    return tokenizer, model, schedule_from_config(config), state


def make_sampler(config, model, schedule, tokenizer, *, sampler=None, steps=None, eta=None):
    """jitted `(params, tokens, rng, guidance) -> images (B, 28, 28, 1)` in [0, 1]."""
    size = config.image_size
    run = denoise.text_to_image_sampler(
        model, schedule, image_shape=(size, size, 1), null_tokens=tokenizer.empty,
        sampler=sampler or config.eval_sampler,
        num_steps=steps or config.eval_steps, eta=config.eval_eta if eta is None else eta,
        prediction=config.prediction)
    return jax.jit(lambda params, tokens, rng, guidance: denoise.from_model_images(
        run(params, tokens, rng, guidance), *IMAGE_HW))


def generate(sample_fn, params, tokens: np.ndarray, rng, guidance: float,
             batch_size: int = 250) -> np.ndarray:
    """Images for every row of `tokens`, in batches of one compiled size (last one padded)."""
    out = []
    for i in range(0, len(tokens), batch_size):
        chunk = tokens[i:i + batch_size]
        n = len(chunk)
        if n < batch_size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - n, 0)])
        images = sample_fn(params, jnp.asarray(chunk), jax.random.fold_in(rng, i),
                           jnp.float32(guidance))
        out.append(np.asarray(jax.device_get(images))[:n])
    return np.concatenate(out) if out else np.zeros((0, *IMAGE_HW, 1), np.float32)


def load_for_sampling(workdir: str | Path, config=None):
    """(config, tokenizer, model, schedule, EMA params, step) from a workdir's latest checkpoint."""
    workdir = Path(workdir)
    config = config or load_run_config(workdir)
    tokenizer, model, schedule, template = build(config, abstract=True)
    ckpt = Checkpointer(workdir / "checkpoints")
    try:
        restored = ckpt.restore_latest(template)
    finally:
        ckpt.close()
    if restored is None:
        raise UserError(f"no checkpoint in {workdir / 'checkpoints'}; train first with "
                        f"python -m experiments.diffusion_text2img --workdir {workdir}")
    state, _, step = restored
    params = state.ema_params if state.ema_params is not None else state.params
    return config, tokenizer, model, schedule, params, step


def load_run_config(workdir: Path):
    config = load_config(workdir)
    if "noise_schedule" not in config or "text_level" not in config:
        raise UserError(f"{workdir} is not a text-to-image run (its config.json lacks "
                        "noise_schedule/text_level); pass the --workdir of "
                        "experiments.diffusion_text2img")
    return config


def sample_to_png(workdir, prompt: str, num: int, out, *, guidance=None, steps=None,
                  sampler=None, eta=None, seed: int = 0) -> Path:
    """`jaxdl sample`: `num` images for `prompt` from the latest checkpoint, as a PNG grid."""
    from jaxdl import plots

    if num < 1:
        raise UserError(f"--num must be >= 1, got {num}")
    config = load_run_config(Path(workdir))
    tokens = np.repeat(tokenizer_from_config(config).encode(prompt)[None], num, 0)  # fail early
    config, tokenizer, model, schedule, params, step = load_for_sampling(workdir, config)
    fn = make_sampler(config, model, schedule, tokenizer, sampler=sampler, steps=steps, eta=eta)
    images = generate(fn, params, tokens, jax.random.PRNGKey(seed),
                      config.guidance if guidance is None else guidance, batch_size=num)
    nrow = max(1, int(math.sqrt(num)))
    path = plots.plot_image_grid(images, out, nrow=nrow)
    print(f"wrote {num} samples of {prompt!r} (checkpoint step {step}) to {path}")
    return path
