"""Synthetic images for tests and offline smoke runs (`--config.dataset=synthetic`)."""

import math

import numpy as np

from jaxdl.data.image_dataset import ImageDataset, Split
from jaxdl.errors import UserError


def synthetic_split(
    num_train: int = 256,
    num_test: int = 64,
    num_classes: int = 10,
    seed: int = 0,
    size: int = 28,
) -> Split:
    """Deterministic, easily learnable grayscale images for tests.

    Class k is a bright square in cell k of a ceil(sqrt(num_classes))-wide grid,
    jittered by up to a pixel, on a dim noisy background.
    """
    if num_classes < 1 or num_train < 1 or num_test < 1:
        raise UserError(
            f"synthetic_split needs num_train, num_test and num_classes >= 1, got "
            f"{num_train}, {num_test}, {num_classes}; pass positive sizes"
        )
    grid = math.ceil(math.sqrt(num_classes))
    cell = size // grid
    if cell < 4:
        raise UserError(
            f"synthetic images of size {size} are too small for {num_classes} classes "
            f"(need size >= {4 * grid}); raise size or lower num_classes"
        )
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))

    def make(n: int, rng: np.random.Generator) -> ImageDataset:
        labels = (np.arange(n) % num_classes)[rng.permutation(n)].astype(np.int32)
        images = rng.integers(0, 48, size=(n, size, size, 1), dtype=np.uint8)
        side = max(2, cell // 2)
        jitter = rng.integers(-1, 2, size=(n, 2))
        for i, label in enumerate(labels):
            row, col = divmod(int(label), grid)
            top = row * cell + (cell - side) // 2 + int(jitter[i, 0])
            left = col * cell + (cell - side) // 2 + int(jitter[i, 1])
            top, left = min(max(top, 0), size - side), min(max(left, 0), size - side)
            images[i, top : top + side, left : left + side, 0] = rng.integers(
                192, 256, size=(side, side), dtype=np.uint8
            )
        return ImageDataset(
            images=images,
            labels=labels,
            num_classes=num_classes,
            name="synthetic",
            class_names=tuple(str(i) for i in range(num_classes)),
            source=f"synthetic (seed={seed}, {size}x{size}, {num_classes} classes)",
        )

    return Split(train=make(num_train, train_rng), test=make(num_test, test_rng))
