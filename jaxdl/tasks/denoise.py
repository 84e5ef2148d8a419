"""Denoising diffusion (DDPM, Ho et al. 2020; DDIM, Song et al. 2021; classifier-free guidance,
Ho & Salimans 2022): noise schedules, the forward process, the loss and the samplers.

Steps are indexed t = 0 .. T-1 (the papers' t = 1 .. T); x_0 below is the data.

- **Schedules**: `linear`: beta_t evenly spaced from 1e-4 to 0.02, scaled by 1000 / T so
  any T gives the same noise path (Improved DDPM's convention); `cosine` (Nichol & Dhariwal
  2021): alpha-bar(t) = f(t + 1) / f(0), f(u) = cos^2(pi/2 (u / T + s) / (1 + s)), s = 0.008,
  beta_t = 1 - alpha-bar_t / alpha-bar_{t-1} clipped to <= 0.999.
  alpha_t = 1 - beta_t, alpha-bar_t = prod_{s <= t} alpha_s.
- **Forward process**: one step q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I); in
  closed form q(x_t | x_0) = N(sqrt(alpha-bar_t) x_0, (1 - alpha-bar_t) I) (`q_sample`).
- **Posterior** q(x_{t-1} | x_t, x_0) = N(mu, sigma_t^2 I) with
  mu = beta_t sqrt(alpha-bar_{t-1}) / (1 - alpha-bar_t) x_0
       + (1 - alpha-bar_{t-1}) sqrt(alpha_t) / (1 - alpha-bar_t) x_t,
  sigma_t^2 = beta_t (1 - alpha-bar_{t-1}) / (1 - alpha-bar_t)   (alpha-bar_{-1} = 1).
- **Loss**: t ~ U{0..T-1}, eps ~ N(0, I), x_t = q_sample(x_0, t, eps); the model predicts eps
  (MSE to eps) or v = sqrt(alpha-bar_t) eps - sqrt(1 - alpha-bar_t) x_0 (MSE to v). For
  classifier-free guidance the prompt is replaced by the empty prompt with probability p.
- **DDPM sampler** (ancestral): x_{T-1} ~ N(0, I); for t = T-1 .. 0, x_0-hat from the model
  (clipped to [-1, 1]), x_{t-1} = mu(x_0-hat, x_t) + sigma_t z.
- **DDIM sampler** on a sub-sequence tau of the steps: x_prev = sqrt(alpha-bar_prev) x_0-hat
  + sqrt(1 - alpha-bar_prev - s^2) eps-hat + s z, s = eta sqrt((1 - alpha-bar_prev) /
  (1 - alpha-bar_t)) sqrt(1 - alpha-bar_t / alpha-bar_prev); eta = 0 is deterministic.
- **Guidance** (convention here): out = out_uncond + w (out_cond - out_uncond), so w = 1 is
  plain conditional sampling and w = 0 unconditional (the empty prompt); w > 1 sharpens.

Both samplers are a `lax.scan` over the steps; jit them (`text_to_image_sampler` does).
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.errors import UserError
from jaxdl.tasks.common import apply_model, example_weights, finish

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("eps", "v")


class NoiseSchedule(NamedTuple):
    betas: jax.Array
    alphas: jax.Array
    alpha_bars: jax.Array
    alpha_bars_prev: jax.Array
    posterior_variance: jax.Array
    posterior_mean_coef1: jax.Array  # multiplies x_0
    posterior_mean_coef2: jax.Array  # multiplies x_t

    @property
    def num_steps(self) -> int:
        return int(self.betas.shape[0])


def betas_for(kind: str = "linear", num_steps: int = 1000) -> np.ndarray:
    """beta_t (float64) of the named schedule; see the module docstring for the formulas."""
    if num_steps < 2:
        raise UserError(f"a noise schedule needs at least 2 steps, got {num_steps}; "
                        "set --config.num_timesteps (e.g. 1000)")
    if kind == "linear":
        scale = 1000.0 / num_steps
        return np.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=np.float64)
    if kind == "cosine":
        s = 0.008
        u = np.arange(num_steps + 1, dtype=np.float64)
        f = np.cos((u / num_steps + s) / (1 + s) * np.pi / 2) ** 2
        alpha_bar = f / f[0]
        return np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], 0.999)
    raise UserError(f"unknown noise schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")


def noise_schedule(kind: str = "linear", num_steps: int = 1000) -> NoiseSchedule:
    """Every per-step constant the loss and the samplers use, computed in float64."""
    betas = betas_for(kind, num_steps)
    alphas = 1.0 - betas
    alpha_bars = np.cumprod(alphas)
    prev = np.concatenate([[1.0], alpha_bars[:-1]])
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return NoiseSchedule(
        betas=f32(betas), alphas=f32(alphas), alpha_bars=f32(alpha_bars),
        alpha_bars_prev=f32(prev),
        posterior_variance=f32(betas * (1.0 - prev) / (1.0 - alpha_bars)),
        posterior_mean_coef1=f32(betas * np.sqrt(prev) / (1.0 - alpha_bars)),
        posterior_mean_coef2=f32((1.0 - prev) * np.sqrt(alphas) / (1.0 - alpha_bars)),
    )


def _at(values: jax.Array, t: jax.Array, x: jax.Array) -> jax.Array:
    """values[t] shaped to broadcast against x (B, ...)."""
    return values[t].reshape(t.shape + (1,) * (x.ndim - t.ndim))


def q_sample(schedule: NoiseSchedule, x0, t, noise):
    """x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps: q(x_t | x_0) in closed form."""
    ab = _at(schedule.alpha_bars, t, x0)
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * noise


def q_step(schedule: NoiseSchedule, x_prev, t, noise):
    """One forward step x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps: q(x_t | x_{t-1})."""
    return jnp.sqrt(_at(schedule.alphas, t, x_prev)) * x_prev + jnp.sqrt(
        _at(schedule.betas, t, x_prev)) * noise


def v_target(schedule: NoiseSchedule, x0, t, noise):
    ab = _at(schedule.alpha_bars, t, x0)
    return jnp.sqrt(ab) * noise - jnp.sqrt(1.0 - ab) * x0


def x0_and_eps(schedule: NoiseSchedule, out, x_t, t, prediction: str = "eps"):
    """The model's (x_0-hat, eps-hat) from its output, an eps or a v prediction."""
    ab = _at(schedule.alpha_bars, t, x_t)
    a, s = jnp.sqrt(ab), jnp.sqrt(1.0 - ab)
    if prediction == "eps":
        return (x_t - s * out) / a, out
    if prediction == "v":
        return a * x_t - s * out, s * x_t + a * out
    raise UserError(f"unknown prediction {prediction!r}; choose one of {', '.join(PREDICTIONS)}")


def diffusion_loss(params, batch, rng, model, train, *, schedule: NoiseSchedule,
                   prediction: str = "eps", cond_drop: float = 0.0, null_cond=None,
                   image_key: str = "image", cond_key: str = "prompt", batch_stats=None):
    """MSE between the model's output and its target (eps or v) at a random step per image.

    `model(x_t, t, cond, train=)`; when training, each example's `batch[cond_key]` is
    replaced by `null_cond` (the empty prompt's ids) with probability `cond_drop`.
    Metrics: `loss_sum` (per-example mean squared error, summed), `count`.
    """
    x0 = batch[image_key]
    b = x0.shape[0]
    t_rng, n_rng, d_rng, m_rng = jax.random.split(rng, 4)
    t = jax.random.randint(t_rng, (b,), 0, schedule.num_steps)
    noise = jax.random.normal(n_rng, x0.shape, x0.dtype)
    x_t = q_sample(schedule, x0, t, noise)
    cond = batch[cond_key]
    if train and cond_drop > 0.0 and null_cond is not None:
        drop = jax.random.bernoulli(d_rng, cond_drop, (b,))
        null = jnp.broadcast_to(jnp.asarray(null_cond, cond.dtype), cond.shape[1:])
        cond = jnp.where(drop.reshape((b,) + (1,) * (cond.ndim - 1)), null, cond)
    out, _ = apply_model(model, params, x_t, m_rng, train, None, t=t, tokens=cond)
    if prediction not in PREDICTIONS:
        raise UserError(f"unknown prediction {prediction!r}; choose one of "
                        f"{', '.join(PREDICTIONS)}")
    target = noise if prediction == "eps" else v_target(schedule, x0, t, noise)
    per_example = jnp.mean(jnp.square(out.astype(jnp.float32) - target).reshape(b, -1), -1)
    w = example_weights(batch, b)
    return finish(jnp.sum(per_example * w), jnp.sum(w), {}, None, None)


ModelFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x_t, t (B,)) -> eps or v


def guided(denoise_fn: Callable, cond, uncond=None, scale: float = 1.0) -> ModelFn:
    """`(x, t) -> out_u + scale (out_c - out_u)`, conditioned and unconditioned in one batch.

    `denoise_fn(x, t, c)` with `c` a pytree batched like x; with `uncond=None` (or scale
    exactly 1) it is plain conditional, one model call per step.
    """
    if uncond is None or (isinstance(scale, int | float) and scale == 1.0):
        return lambda x, t: denoise_fn(x, t, cond)
    both = jax.tree.map(lambda c, u: jnp.concatenate([c, u]), cond, uncond)

    def fn(x, t):
        out_c, out_u = jnp.split(denoise_fn(jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                                            both), 2)
        return out_u + scale * (out_c - out_u)

    return fn


def _start(shape, rng, x_init):
    init_rng, step_rng = jax.random.split(rng)
    x = jax.random.normal(init_rng, shape) if x_init is None else jnp.asarray(x_init)
    return x, step_rng


def ddpm_sample(schedule: NoiseSchedule, model_fn: ModelFn, shape, rng, *,
                prediction: str = "eps", clip: bool = True, x_init=None):
    """Ancestral sampling over all T steps; returns x_0 samples (clipped to [-1, 1]).

    The start noise x_{T-1} is drawn from `rng` unless `x_init` gives it."""
    x, step_rng = _start(shape, rng, x_init)

    def body(x, t):
        tb = jnp.full(shape[:1], t, jnp.int32)
        x0, _ = x0_and_eps(schedule, model_fn(x, tb), x, tb, prediction)
        x0 = jnp.clip(x0, -1.0, 1.0) if clip else x0
        mean = _at(schedule.posterior_mean_coef1, tb, x) * x0 + _at(
            schedule.posterior_mean_coef2, tb, x) * x
        z = jax.random.normal(jax.random.fold_in(step_rng, t), shape)
        return mean + jnp.sqrt(_at(schedule.posterior_variance, tb, x)) * z, None

    x, _ = jax.lax.scan(body, x, jnp.arange(schedule.num_steps - 1, -1, -1))
    return jnp.clip(x, -1.0, 1.0) if clip else x


def ddim_timesteps(total: int, num_steps: int) -> np.ndarray:
    """`num_steps` evenly spaced steps in [0, total - 1], ascending, both ends included."""
    if not 1 <= num_steps <= total:
        raise UserError(f"DDIM needs 1 <= steps <= {total} (the schedule's T), got "
                        f"{num_steps}; e.g. --steps 50")
    return np.unique(np.linspace(0, total - 1, num_steps).round().astype(np.int32))


def ddim_sample(schedule: NoiseSchedule, model_fn: ModelFn, shape, rng, *, num_steps: int = 50,
                eta: float = 0.0, prediction: str = "eps", clip: bool = True, x_init=None):
    """DDIM over `num_steps` of the T steps; eta = 0 is deterministic given the start noise
    (drawn from `rng` unless `x_init` gives it)."""
    ts = ddim_timesteps(schedule.num_steps, num_steps)
    prev = np.concatenate([[-1], ts[:-1]]).astype(np.int32)
    x, step_rng = _start(shape, rng, x_init)

    def body(x, tt):
        t, t_prev = tt
        tb = jnp.full(shape[:1], t, jnp.int32)
        ab = schedule.alpha_bars[t]
        ab_prev = jnp.where(t_prev >= 0, schedule.alpha_bars[jnp.maximum(t_prev, 0)], 1.0)
        x0, eps = x0_and_eps(schedule, model_fn(x, tb), x, tb, prediction)
        if clip:
            x0 = jnp.clip(x0, -1.0, 1.0)
            eps = (x - jnp.sqrt(ab) * x0) / jnp.sqrt(1.0 - ab)
        sigma = eta * jnp.sqrt((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev))
        direction = jnp.sqrt(jnp.maximum(1.0 - ab_prev - sigma**2, 0.0)) * eps
        z = jax.random.normal(jax.random.fold_in(step_rng, t), shape)
        return jnp.sqrt(ab_prev) * x0 + direction + sigma * z, None

    x, _ = jax.lax.scan(body, x, (jnp.asarray(ts[::-1]), jnp.asarray(prev[::-1])))
    return jnp.clip(x, -1.0, 1.0) if clip else x


def text_to_image_sampler(model, schedule: NoiseSchedule, *, image_shape, null_tokens,
                          sampler: str = "ddim", num_steps: int = 50, eta: float = 0.0,
                          prediction: str = "eps", guided_sampling: bool = True) -> Callable:
    """jit-compiled `(params, tokens (B, L), rng, guidance) -> images (B, *image_shape)` in
    [-1, 1]. `guidance` is traced (one compilation serves every w); with
    `guided_sampling=False` the empty prompt is never run and `guidance` is ignored (w = 1).

    `model` has `encode(tokens) -> (context, mask)` and `denoise(x, t, context, mask)`
    (`jaxdl.nn.text2img.TextToImage`); the prompt is encoded once, not at every step.
    """
    if sampler not in ("ddim", "ddpm"):
        raise UserError(f"unknown sampler {sampler!r}; choose ddim or ddpm")

    def run(params, tokens, rng, guidance):
        variables = {"params": params}
        encode = lambda ids: model.apply(variables, ids, method="encode")  # noqa: E731
        cond = encode(tokens)
        uncond = None
        if guided_sampling:
            uncond = encode(jnp.broadcast_to(jnp.asarray(null_tokens, tokens.dtype),
                                             tokens.shape))
        denoise = lambda x, t, c: model.apply(variables, x, t, *c, method="denoise")  # noqa
        fn = guided(denoise, cond, uncond, guidance)
        shape = (tokens.shape[0], *image_shape)
        if sampler == "ddpm":
            return ddpm_sample(schedule, fn, shape, rng, prediction=prediction)
        return ddim_sample(schedule, fn, shape, rng, num_steps=num_steps, eta=eta,
                           prediction=prediction)

    return jax.jit(run)


def to_model_images(images, size: int = 32):
    """uint8 (B, H, W, C) in [0, 255] -> float32 (B, size, size, C) in [-1, 1], padded with
    black (-1) equally on each side (28 -> 32 adds 2 pixels per side)."""
    x = jnp.asarray(images).astype(jnp.float32) / 127.5 - 1.0
    ph, pw = size - x.shape[1], size - x.shape[2]
    if ph < 0 or pw < 0:
        raise UserError(f"images of {x.shape[1]}x{x.shape[2]} do not fit the model's "
                        f"{size}x{size}; raise --config.image_size")
    pad = ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0))
    return jnp.pad(x, pad, constant_values=-1.0)


def from_model_images(x, height: int = 28, width: int = 28):
    """The inverse: crop the centre (height, width) and map [-1, 1] to [0, 1]."""
    top, left = (x.shape[1] - height) // 2, (x.shape[2] - width) // 2
    x = x[:, top:top + height, left:left + width]
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)
