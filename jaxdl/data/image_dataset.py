"""The in-memory image dataset types every source returns, and the class-name constants.

`ImageDataset` holds uint8 images (N, H, W, C) and int32 labels and validates them on
construction (shapes, dtypes, label range, one name per class); `Split` pairs a train and a
test set of the same kind. `DIGIT_CLASS_NAMES` and `FASHION_MNIST_CLASS_NAMES` name the ten
classes of MNIST and Fashion-MNIST.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxdl.errors import UserError

# --------------------------------------------------------------------------- constants

DIGIT_CLASS_NAMES: tuple[str, ...] = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# Ending of the "dataset not found" messages of every loader.
_OFFLINE_HINT = "or use --config.dataset=mnist_5k, which works offline"


def _class_names(name: str, num_classes: int) -> tuple[str, ...]:
    if name == "fashion_mnist" and num_classes == 10:
        return FASHION_MNIST_CLASS_NAMES
    return tuple(str(i) for i in range(num_classes))


def _array_like(images) -> bool:
    """A numpy array, or a `jaxdl.data.records.RecordArray` (images left on disk)."""
    return isinstance(images, np.ndarray) or getattr(images, "on_disk", False)


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """Labelled images, in host memory or (a `RecordArray`) read from disk per batch.

    images: uint8 array of shape (N, H, W, C) (MNIST-like data: (N, 28, 28, 1)).
    labels: int32 array of shape (N,), each in [0, num_classes).
    source: human-readable description of where the data came from.
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str
    class_names: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        where = f"dataset '{self.name}' ({self.source})"
        fix = "fix the data source or pick another --config.dataset"
        if not _array_like(self.images) or not isinstance(self.labels, np.ndarray):
            raise UserError(
                f"{where}: images and labels must be numpy arrays, got "
                f"{type(self.images).__name__} and {type(self.labels).__name__}; "
                "convert them with np.asarray"
            )
        if self.images.ndim != 4:
            raise UserError(
                f"{where}: images must have shape (N, H, W, C), got shape "
                f"{self.images.shape}; add a channel axis with images[..., None]"
            )
        if self.images.dtype != np.uint8:
            raise UserError(
                f"{where}: images must be uint8 (0-255), got {self.images.dtype}; "
                "convert them with images.astype(np.uint8)"
            )
        if self.images.shape[-1] not in (1, 3):
            raise UserError(
                f"{where}: images must have 1 or 3 channels, got shape {self.images.shape}; {fix}"
            )
        if self.labels.ndim != 1 or self.labels.dtype != np.int32:
            raise UserError(
                f"{where}: labels must be an int32 array of shape (N,), got "
                f"{self.labels.dtype} of shape {self.labels.shape}; "
                "convert them with labels.reshape(-1).astype(np.int32)"
            )
        if len(self.images) != len(self.labels):
            raise UserError(
                f"{where}: {len(self.images)} images but {len(self.labels)} labels; {fix}"
            )
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise UserError(
                f"{where}: num_classes must be a positive int, got {self.num_classes!r}; {fix}"
            )
        if len(self.class_names) != self.num_classes:
            raise UserError(
                f"{where}: {len(self.class_names)} class names for {self.num_classes} classes; "
                "give one name per class"
            )
        if len(self.labels) == 0:
            raise UserError(
                f"dataset {self.name} is empty ({self.source} has 0 examples); "
                "check that the source holds data or pick another --config.dataset"
            )
        lo, hi = int(self.labels.min()), int(self.labels.max())
        if lo < 0 or hi >= self.num_classes:
            raise UserError(
                f"{where}: labels must be in [0, {self.num_classes}), found values in "
                f"[{lo}, {hi}]; {fix}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one image, (H, W, C)."""
        return tuple(self.images.shape[1:])


@dataclasses.dataclass
class Split:
    """A train and a test `ImageDataset` of the same kind of images and classes."""

    train: ImageDataset
    test: ImageDataset

    def __post_init__(self) -> None:
        if self.train.num_classes != self.test.num_classes:
            raise UserError(
                f"train set '{self.train.name}' has {self.train.num_classes} classes but test "
                f"set '{self.test.name}' has {self.test.num_classes}; use splits of one dataset"
            )
        if self.train.images.shape[1:] != self.test.images.shape[1:]:
            raise UserError(
                f"train images have shape {self.train.images.shape[1:]} but test images "
                f"{self.test.images.shape[1:]}; use splits of one dataset"
            )
