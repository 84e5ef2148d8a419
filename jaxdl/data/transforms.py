"""On-device image transforms that reproduce the torchvision MNIST recipe in pure JAX.

The reference PyTorch pipeline (torchvision on 28x28 MNIST PIL images) is::

    train: Resize((48, 48)) -> Grayscale(3) -> RandomRotation(10)
           -> ColorJitter(brightness=0.2, contrast=0.2) -> ToTensor -> Normalize(0.1307, 0.3081)
    test:  Resize((48, 48)) -> Grayscale(3) -> ToTensor -> Normalize(0.1307, 0.3081)

Here every step is a pure, ``jit``- and ``vmap``-able function on NHWC float32 arrays, so the
whole pipeline runs inside the jitted train step instead of in a CPU data loader. Semantics
copied from torchvision/PIL:

* ``resize``: bilinear with half-pixel centres and edge renormalisation (PIL ``BILINEAR``).
* ``rotate``: PIL ``Image.rotate(angle, NEAREST, expand=False, fillcolor=0)``: counter-clockwise
  for positive angles as displayed, about the centre ``(W/2, H/2)`` in pixel-corner coordinates,
  inverse mapping, nearest neighbour (PIL floors the corner-coordinate source position, i.e.
  rounds half up in index coordinates), out-of-image sources filled with 0. PIL's 16.16
  fixed-point position arithmetic is emulated so the chosen source pixels match it.
* ``adjust_brightness`` / ``adjust_contrast``: ``ImageEnhance`` blends with black / with the mean
  luma (0.299R + 0.587G + 0.114B), clipped.
* ``color_jitter``: factors uniform in ``[max(0, 1 - v), 1 + v]`` and a random brightness/contrast
  order per image (torchvision draws ``randperm`` on every call).

Deliberate differences: we stay in float ``[0, 1]`` throughout instead of re-quantising to uint8
after every PIL op (PIL truncates blends and rounds the contrast mean to an integer), so results
differ from torchvision by at most a few 1/255 steps; randomness comes from JAX keys, so
streams are not bit-identical to torch's RNG.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import chex
import jax
import jax.numpy as jnp

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, what PIL's convert("L") uses.


def to_float(images: jax.Array) -> jax.Array:
    """ToTensor's scaling: uint8 ``[0, 255]`` -> float32 ``[0, 1]``; floats pass through."""
    images = jnp.asarray(images)
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images.astype(jnp.float32)


def resize(images: jax.Array, size: int | tuple[int, int]) -> jax.Array:
    """Bilinear resize of a (B, H, W, C) batch to (B, size, size, C).

    ``jax.image.resize`` uses half-pixel centres and renormalises weights at the border, which
    matches PIL/torchvision bilinear upscaling. A batch already at the target size is returned
    unchanged (no op is emitted).
    """
    chex.assert_rank(images, 4)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    b, ih, iw, c = images.shape
    if (ih, iw) == (h, w):
        return images
    return jax.image.resize(images, (b, h, w, c), method="bilinear")


def grayscale_to_rgb(images: jax.Array) -> jax.Array:
    """Grayscale(num_output_channels=3) on a 1-channel input: repeat the channel 3 times.

    A 3-channel input passes through (for MNIST it is already grey, so converting it to L and
    back would be the identity up to rounding).
    """
    c = images.shape[-1]
    if c == 3:
        return images
    if c != 1:
        raise ValueError(f"grayscale_to_rgb expects 1 or 3 channels, got shape {images.shape}")
    return jnp.repeat(images, 3, axis=-1)


def rotate(image: jax.Array, angle_degrees: float | jax.Array) -> jax.Array:
    """Rotate ONE (H, W, C) image like PIL ``Image.rotate(angle, NEAREST, fillcolor=0)``.

    Inverse mapping: output pixel centre ``p`` samples the source at ``R(angle) (p - c) + c``
    with ``c = (W/2, H/2)`` in pixel-corner coordinates (index coordinate ``((W-1)/2, (H-1)/2)``).
    With rows pointing down this turns the picture counter-clockwise as displayed. Nearest
    neighbour is PIL's: floor of the corner-coordinate source position (round half up in index
    coordinates). Sources outside the image give 0; the canvas is not expanded.

    PIL evaluates the map in 16.16 fixed point (``affine_fixed`` in libImaging/Geometry.c:
    coefficients rounded to 1/65536, position = integer sum, index = ``>> 16``). Its rounding
    moves positions by up to ~4e-4 px, enough to flip about one pixel per rotated 48x48 image
    against exact float maths, so we emulate it in int32 to pick the same source pixels.
    """
    chex.assert_rank(image, 3)
    h, w, _ = image.shape
    t = -jnp.deg2rad(jnp.asarray(angle_degrees, jnp.float32))  # PIL negates the angle.
    cos, sin = jnp.cos(t), jnp.sin(t)

    def fix(v: jax.Array) -> jax.Array:  # PIL: FIX(v) = floor(v * 65536 + 0.5)
        return jnp.floor(v * 65536.0 + 0.5).astype(jnp.int32)

    # Affine map (a, b, c; d, e, f) of PIL, with its +0.5 pixel-centre offset folded into c, f.
    # The integer part w/2 * 65536 is split off so float32 only rounds the small remainder.
    a0, a1, a3, a4 = fix(cos), fix(sin), fix(-sin), fix(cos)
    a2 = round(w / 2 * 65536) + fix(cos * (0.5 - w / 2) + sin * (0.5 - h / 2))
    a5 = round(h / 2 * 65536) + fix(-sin * (0.5 - w / 2) + cos * (0.5 - h / 2))
    ys = jnp.arange(h, dtype=jnp.int32)[:, None]
    xs = jnp.arange(w, dtype=jnp.int32)[None, :]
    src_x = jnp.right_shift(a2 + ys * a1 + xs * a0, 16)  # arithmetic shift = floor
    src_y = jnp.right_shift(a5 + ys * a4 + xs * a3, 16)
    inside = (src_x >= 0) & (src_x < w) & (src_y >= 0) & (src_y < h)
    sampled = image[jnp.clip(src_y, 0, h - 1), jnp.clip(src_x, 0, w - 1)]
    return jnp.where(inside[..., None], sampled, jnp.zeros((), image.dtype))


def adjust_brightness(image: jax.Array, factor: float | jax.Array) -> jax.Array:
    """ImageEnhance.Brightness: blend with black, i.e. ``image * factor`` clipped to [0, 1]."""
    return jnp.clip(image * factor, 0.0, 1.0)


def _luma(image: jax.Array) -> jax.Array:
    c = image.shape[-1]
    if c == 1:
        return image[..., 0]
    if c == 3:
        return image @ jnp.asarray(_LUMA, image.dtype)
    raise ValueError(f"expected 1 or 3 channels, got shape {image.shape}")


def adjust_contrast(image: jax.Array, factor: float | jax.Array) -> jax.Array:
    """ImageEnhance.Contrast on ONE (H, W, C) image: blend with the mean luma, clipped to [0, 1].

    The mean is over the whole image's grayscale (0.299R + 0.587G + 0.114B); PIL rounds it to
    an integer level, we keep it exact.
    """
    chex.assert_rank(image, 3)
    mean = jnp.mean(_luma(image))
    return jnp.clip(mean + factor * (image - mean), 0.0, 1.0)


def color_jitter_params(
    rng: jax.Array, brightness: float = 0.2, contrast: float = 0.2
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Draw ColorJitter's ``(brightness_factor, contrast_factor, brightness_first)``.

    Exposed so tests (and callers) can see which order a key picks; ``color_jitter`` uses it.
    """
    kb, kc, ko = jax.random.split(rng, 3)
    b = jax.random.uniform(kb, (), minval=max(0.0, 1.0 - brightness), maxval=1.0 + brightness)
    c = jax.random.uniform(kc, (), minval=max(0.0, 1.0 - contrast), maxval=1.0 + contrast)
    return b, c, jax.random.bernoulli(ko)


def color_jitter(
    image: jax.Array, rng: jax.Array, brightness: float = 0.2, contrast: float = 0.2
) -> jax.Array:
    """torchvision ColorJitter(brightness, contrast) on ONE (H, W, C) image.

    The order matters only through clipping (both ops are linear before it), but torchvision
    picks it at random per call, so we do too. Both orders are computed and selected with
    ``jnp.where``: cheap at these sizes and vmap-friendly (a ``cond`` under vmap does the same).
    """
    b, c, brightness_first = color_jitter_params(rng, brightness, contrast)
    bc = adjust_contrast(adjust_brightness(image, b), c)
    cb = adjust_brightness(adjust_contrast(image, c), b)
    return jnp.where(brightness_first, bc, cb)


def random_rotation(image: jax.Array, rng: jax.Array, degrees: float = 10.0) -> jax.Array:
    """RandomRotation(degrees) on ONE image: angle uniform in [-degrees, degrees]."""
    angle = jax.random.uniform(rng, (), minval=-degrees, maxval=degrees)
    return rotate(image, angle)


def normalize(
    images: jax.Array, mean: Any = MNIST_MEAN, std: Any = MNIST_STD
) -> jax.Array:
    """Normalize: ``(x - mean) / std``; scalars or per-channel sequences (broadcast on C)."""
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (images - mean) / std


def _prepare(images: jax.Array, size: int) -> jax.Array:
    """Resize -> Grayscale(3) -> ToTensor scaling, shared by train and test."""
    chex.assert_rank(images, 4)
    return grayscale_to_rgb(resize(to_float(images), size))


def reference_train_transform(
    images: jax.Array,
    rng: jax.Array,
    size: int = 48,
    *,
    mean: Any = MNIST_MEAN,
    std: Any = MNIST_STD,
    degrees: float = 10.0,
    brightness: float = 0.2,
    contrast: float = 0.2,
) -> jax.Array:
    """Train pipeline on a (B, H, W, 1|3) batch -> (B, size, size, 3) float32, normalised.

    Per-example randomness from ``jax.random.split(rng, B)``; same rng, same output.
    A grayscale batch is augmented on its one channel and repeated to three afterwards:
    the same result as augmenting three equal channels (their luma is the grey value),
    for a third of the work.
    """
    chex.assert_rank(images, 4)
    x = resize(to_float(images), size)

    def augment(image: jax.Array, key: jax.Array) -> jax.Array:
        k_rot, k_jit = jax.random.split(key)
        return color_jitter(random_rotation(image, k_rot, degrees), k_jit, brightness, contrast)

    x = jax.vmap(augment)(x, jax.random.split(rng, x.shape[0]))
    return normalize(grayscale_to_rgb(x), mean, std)


def reference_test_transform(
    images: jax.Array, size: int = 48, *, mean: Any = MNIST_MEAN, std: Any = MNIST_STD
) -> jax.Array:
    """Test pipeline: (B, H, W, 1|3) -> (B, size, size, 3) float32, normalised."""
    return normalize(_prepare(images, size), mean, std)


def make_preprocess(
    image_key: str = "image",
    size: int = 48,
    augment: bool = True,
    normalize_stats: tuple[Any, Any] | None = (MNIST_MEAN, MNIST_STD),
    *,
    degrees: float = 10.0,
    brightness: float = 0.2,
    contrast: float = 0.2,
) -> Callable[[Mapping[str, Any], jax.Array | None, bool], dict[str, Any]]:
    """Build ``preprocess(batch, rng, train) -> batch`` for the jitted train/eval step.

    ``train`` must be a Python bool (it selects the graph). ``batch[image_key]`` is replaced by
    the train transform when ``train and augment``, else by the test transform; other entries
    are kept. ``normalize_stats=None`` skips normalisation (output stays in [0, 1]).
    """
    mean, std = normalize_stats if normalize_stats is not None else (0.0, 1.0)

    def preprocess(
        batch: Mapping[str, Any], rng: jax.Array | None, train: bool
    ) -> dict[str, Any]:
        images = batch[image_key]
        if train and augment:
            if rng is None:
                raise ValueError("preprocess(train=True) with augment needs an rng")
            out = reference_train_transform(images, rng, size, mean=mean, std=std,
                                            degrees=degrees, brightness=brightness,
                                            contrast=contrast)
        else:
            out = reference_test_transform(images, size, mean=mean, std=std)
        return {**batch, image_key: out}

    return preprocess
