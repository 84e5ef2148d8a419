"""Image data sources: where the examples come from, offline first.

Four kinds of source produce the same `ImageDataset` (uint8 images of shape
(N, H, W, C), normally (N, 28, 28, 1), and int32 labels) grouped in a `Split`:

1. **Embedded**: `mnist_5k`, 5,000 real MNIST digits (500 per class) shipped in
   `jaxdl/data/embedded/mnist_5k.csv.gz`, split 4,000 / 1,000 with a fixed
   stratified split. Always available; loads in well under a second.
2. **IDX files**: the original MNIST format (`train-images-idx3-ubyte[.gz]`, ...)
   in a local directory, e.g. `~/.jaxdl/data/mnist`, or Fashion-MNIST from
   Debian's `dataset-fashion-mnist` package in `/usr/share/datasets/fashion-mnist`.
3. **Prepared TFDS datasets**: read with `tfds.data_source` (array_record files,
   no TensorFlow needed) from a TFDS data dir (default `~/tensorflow_datasets`).
4. **Synthetic**: deterministic, learnable images made on the fly, for tests.

Offline-first rule: nothing here ever touches the network. A dataset that is
not on local disk is never downloaded; instead a `UserError` says how to get a
local copy and that `--config.dataset=mnist_5k` works offline. Every lookup of
a missing dataset fails within seconds.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import io
import math
import os
import struct
import zlib
from pathlib import Path

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

EMBEDDED_MNIST_5K = Path(__file__).resolve().parent / "embedded" / "mnist_5k.csv.gz"
_EMBEDDED_DISPLAY = "jaxdl/data/embedded/mnist_5k.csv.gz"

# Where full datasets are looked for when no (or no matching) data_dir is given.
# Module-level so tests can monkeypatch them.
MNIST_IDX_DIRS: tuple[Path, ...] = (
    Path("~/.jaxdl/data/mnist").expanduser(),
    Path("/usr/share/datasets/mnist"),
)
FASHION_MNIST_IDX_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)
DEFAULT_TFDS_DIR: Path = Path(
    os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
).expanduser()

KNOWN_DATASETS: tuple[str, ...] = ("mnist_5k", "mnist", "fashion_mnist", "synthetic", "tfds:<name>")

_IDX_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_OFFLINE_HINT = "or use --config.dataset=mnist_5k, which works offline"

_GET_MNIST = (
    "download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
    "(e.g. from https://ossci-datasets.s3.amazonaws.com/mnist/) into ~/.jaxdl/data/mnist "
    f"or a directory passed as --config.data_dir, {_OFFLINE_HINT}"
)
_GET_FASHION_MNIST = (
    "install it with `apt-get install -y dataset-fashion-mnist` "
    "(IDX files in /usr/share/datasets/fashion-mnist), or put the four IDX files from "
    "https://github.com/zalandoresearch/fashion-mnist in a directory passed as "
    f"--config.data_dir, {_OFFLINE_HINT}"
)


# --------------------------------------------------------------------------- containers


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """Labelled images held in host memory.

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
        if not isinstance(self.images, np.ndarray) or not isinstance(self.labels, np.ndarray):
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


# --------------------------------------------------------------------------- CSV (embedded)


def _read_maybe_gzip(path: Path, kind: str) -> bytes:
    """Return the (decompressed) bytes of `path`; UserError when missing or corrupt."""
    if not path.is_file():
        raise UserError(f"{kind} file {path} not found; check the path or re-download the file")
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"{kind} file {path} is a truncated or corrupt gzip file ({reason}); "
            "re-download it or point --config.data_dir at a complete copy"
        ) from None


def load_csv_digits(path: str | os.PathLike, name: str) -> ImageDataset:
    """Read a (gzip) CSV of 28x28 digits: each row 784 pixels (0-255, row-major), then the label.

    No header. Returns an ImageDataset with 10 classes named "0".."9".
    """
    path = Path(path)
    text = _read_maybe_gzip(path, "CSV")
    fix = "re-download it or regenerate it as 784 pixel values then the label per row"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    expected_cols = 28 * 28 + 1
    for i, line in enumerate(lines):
        cols = line.count(b",") + 1
        if cols != expected_cols:
            raise UserError(
                f"CSV file {path} row {i + 1} has {cols} columns, expected {expected_cols} "
                f"(784 pixels then the label); {fix}"
            )
    if lines:
        try:
            table = np.loadtxt(
                io.BytesIO(b"\n".join(lines)), delimiter=",", dtype=np.int64, ndmin=2
            )
        except ValueError as e:
            reason = str(e).splitlines()[0]
            raise UserError(f"CSV file {path} has a non-integer value ({reason}); {fix}") from None
    else:
        table = np.zeros((0, expected_cols), np.int64)
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
        raise UserError(
            f"CSV file {path} has pixel values in [{pixels.min()}, {pixels.max()}], expected "
            f"0-255; {fix}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise UserError(
            f"CSV file {path} has labels in [{labels.min()}, {labels.max()}], expected digits "
            f"0-9; {fix}"
        )
    return ImageDataset(
        images=pixels.astype(np.uint8).reshape(-1, 28, 28, 1),
        labels=labels.astype(np.int32),
        num_classes=10,
        name=name,
        class_names=DIGIT_CLASS_NAMES,
        source=f"CSV file {path}",
    )


@functools.lru_cache(maxsize=1)
def _embedded_mnist_5k() -> ImageDataset:
    ds = load_csv_digits(EMBEDDED_MNIST_5K, "mnist_5k")
    # The cached arrays are shared between calls: make them read-only.
    ds.images.setflags(write=False)
    ds.labels.setflags(write=False)
    return ds


def mnist_5k_split(test_fraction: float = 0.2, seed: int = 0) -> Split:
    """The embedded 5,000-digit MNIST subset with a fixed stratified split.

    Each class contributes round(count * test_fraction) examples to the test set
    (100 per class for 0.2: 4,000 train / 1,000 test). The split and the example
    order depend only on `seed`.
    """
    if not 0.0 < test_fraction < 1.0:
        raise UserError(
            f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}; use e.g. 0.2"
        )
    full = _embedded_mnist_5k()
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in range(full.num_classes):
        idx = np.flatnonzero(full.labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_fraction))
        if n_test == 0 or n_test == len(idx):
            raise UserError(
                f"test_fraction {test_fraction} leaves class {c} ({len(idx)} examples) with an "
                "empty train or test part; use a fraction like 0.2"
            )
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    train = np.concatenate(train_idx)
    test = np.concatenate(test_idx)
    train = train[rng.permutation(len(train))]
    test = test[rng.permutation(len(test))]
    source = f"embedded mnist_5k ({_EMBEDDED_DISPLAY})"

    def subset(idx: np.ndarray) -> ImageDataset:
        return ImageDataset(
            images=full.images[idx],
            labels=full.labels[idx],
            num_classes=full.num_classes,
            name="mnist_5k",
            class_names=full.class_names,
            source=source,
        )

    return Split(train=subset(train), test=subset(test))


# --------------------------------------------------------------------------- IDX files


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a native-endian numpy array.

    Format: two zero bytes, a dtype code (0x08 = uint8, ...), the number of
    dimensions, then each dimension as a big-endian uint32, then the data.
    """
    path = Path(path)
    fix = "re-download it or point --config.data_dir at a complete copy"
    data = _read_maybe_gzip(path, "IDX")
    if len(data) < 4:
        raise UserError(
            f"IDX file {path} is truncated: expected at least 4 header bytes, got {len(data)}; "
            f"{fix}"
        )
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise UserError(
            f"IDX file {path} has a corrupt magic number 0x{data[:4].hex()} (expected "
            f"0x000008NN, e.g. 0x00000803 for images); it is not an IDX file, {fix}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(
            f"IDX file {path} is truncated: expected at least {header} header bytes, "
            f"got {len(data)}; {fix}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_DTYPES[code]
    count = math.prod(dims)
    expected = header + count * dtype.itemsize
    if len(data) < expected:
        raise UserError(
            f"IDX file {path} is truncated: expected {expected} bytes, got {len(data)}; {fix}"
        )
    if len(data) > expected:
        raise UserError(
            f"IDX file {path} is corrupt: expected {expected} bytes for dims {dims}, got "
            f"{len(data)}; {fix}"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def _find_idx_file(directory: Path, stem: str) -> Path | None:
    """The IDX file for `stem` in `directory` (plain, .gz, or with '.idx' spelling)."""
    alt = stem.replace("-idx", ".idx")
    for base in (stem, alt):
        for candidate in (directory / base, directory / f"{base}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _how_to_get(name: str) -> str:
    if name == "mnist":
        return _GET_MNIST
    if name == "fashion_mnist":
        return _GET_FASHION_MNIST
    return (
        "put train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
        f"t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] in it, {_OFFLINE_HINT}"
    )


def _class_names(name: str, num_classes: int) -> tuple[str, ...]:
    if name == "fashion_mnist" and num_classes == 10:
        return FASHION_MNIST_CLASS_NAMES
    return tuple(str(i) for i in range(num_classes))


def load_idx_split(data_dir: str | os.PathLike, name: str) -> Split:
    """Load an MNIST-format directory of four IDX files (plain or .gz) as a Split."""
    directory = Path(data_dir).expanduser()
    if not directory.is_dir():
        raise UserError(f"{name} data directory {directory} does not exist; {_how_to_get(name)}")
    files: dict[str, Path] = {}
    for key, stem in _IDX_FILES.items():
        found = _find_idx_file(directory, stem)
        if found is None:
            raise UserError(
                f"{name} IDX file {directory / stem}[.gz] not found; {_how_to_get(name)}"
            )
        files[key] = found
    fix = "re-download it or point --config.data_dir at a complete copy"
    arrays = {key: read_idx(path) for key, path in files.items()}
    num_classes = 10
    parts = {}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        ipath, lpath = files[f"{part}_images"], files[f"{part}_labels"]
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.dtype != np.uint8:
            raise UserError(
                f"IDX file {ipath} holds {images.dtype} data of shape {images.shape}, expected "
                f"uint8 images (N, H, W); it is not an image file, {fix}"
            )
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise UserError(
                f"IDX file {lpath} holds {labels.dtype} data of shape {labels.shape}, expected "
                f"integer labels (N,); it is not a label file, {fix}"
            )
        if len(images) != len(labels):
            raise UserError(
                f"IDX file {ipath} has {len(images)} images but {lpath} has {len(labels)} "
                f"labels; {fix}"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise UserError(
                f"IDX file {lpath} has labels in [{labels.min()}, {labels.max()}], expected "
                f"0-{num_classes - 1}; {fix}"
            )
        parts[part] = ImageDataset(
            images=images,
            labels=labels.astype(np.int32),
            num_classes=num_classes,
            name=name,
            class_names=_class_names(name, num_classes),
            source=f"IDX files in {directory}",
        )
    return Split(train=parts["train"], test=parts["test"])


def _idx_dir_status(directory: Path) -> str:
    """'complete', 'partial' (some of the four IDX files) or 'absent'."""
    if not directory.is_dir():
        return "absent"
    found = [_find_idx_file(directory, stem) is not None for stem in _IDX_FILES.values()]
    if all(found):
        return "complete"
    return "partial" if any(found) else "absent"


# --------------------------------------------------------------------------- TFDS


def _tfds_prepare_hint(name: str, tfds_dir: Path) -> str:
    return (
        f"prepare it with `tfds build {name} --data_dir {tfds_dir} --file_format=array_record` "
        f"on a machine with network, then copy {tfds_dir / name} to this machine"
    )


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def load_tfds_split(name: str, data_dir: str | os.PathLike | None = None) -> Split:
    """Read the train and test splits of a prepared TFDS dataset (array_record format).

    Uses `tfds.data_source`, so TensorFlow is not needed. Never downloads: a
    dataset that is not prepared under `data_dir` (default `DEFAULT_TFDS_DIR`)
    raises UserError with the command that prepares it.
    """
    tfds_dir = Path(data_dir).expanduser() if data_dir else DEFAULT_TFDS_DIR
    if not name or ":" in name or name.startswith("/"):
        raise UserError(
            f"TFDS dataset name {name!r} is not supported; use a plain TFDS name such as "
            "'mnist' (namespaced community datasets would need network access)"
        )
    import tensorflow_datasets as tfds  # slow to import: only when TFDS is used

    try:
        builder = tfds.builder(name, data_dir=str(tfds_dir))
    except Exception as e:  # DatasetNotFoundError and friends
        raise UserError(
            f"TFDS dataset '{name}' is unknown and not prepared under {tfds_dir} "
            f"({type(e).__name__}); check the name (see `tfds.list_builders()`) or "
            f"{_tfds_prepare_hint(name, tfds_dir)}"
        ) from None

    def is_prepared() -> bool:
        try:
            return bool(builder.is_prepared())
        except Exception:
            return False

    not_prepared = (
        f"TFDS dataset '{name}' is not prepared under {tfds_dir}; "
        f"{_tfds_prepare_hint(name, tfds_dir)}, {_OFFLINE_HINT}"
    )
    info = builder.info
    label_feature = None
    try:
        label_feature = info.features["label"]
    except Exception:
        pass
    class_label_names = getattr(label_feature, "names", None)

    parts: dict[str, ImageDataset] = {}
    for split in ("train", "test"):
        try:
            source = tfds.data_source(
                name, split=split, data_dir=str(tfds_dir), download=False, try_gcs=False
            )
        except Exception as e:
            if not is_prepared():
                raise UserError(not_prepared) from None
            splits = list(info.splits)
            if split not in splits:
                raise UserError(
                    f"TFDS dataset '{name}' under {tfds_dir} has no '{split}' split (splits: "
                    f"{', '.join(splits)}); jaxdl needs 'train' and 'test' splits, "
                    "pick another dataset"
                ) from None
            raise UserError(
                f"TFDS dataset '{name}' under {tfds_dir} cannot be read without TensorFlow "
                f"({_first_line(e)}); rebuild it in array_record format with "
                f"`tfds build {name} --data_dir {tfds_dir} --file_format=array_record`"
            ) from None
        n = len(source)
        images_list, labels = [], np.empty((n,), np.int64)
        for i in range(n):
            record = source[i]
            if not isinstance(record, dict) or "image" not in record or "label" not in record:
                keys = sorted(record) if isinstance(record, dict) else type(record).__name__
                raise UserError(
                    f"TFDS dataset '{name}' records have features {keys}, but jaxdl image "
                    "datasets need 'image' and 'label'; pick an image classification dataset"
                )
            image = np.asarray(record["image"])
            if image.ndim == 2:
                image = image[..., None]
            images_list.append(image)
            labels[i] = int(np.asarray(record["label"]))
        if n:
            shapes = {im.shape for im in images_list}
            if len(shapes) != 1 or images_list[0].dtype != np.uint8:
                raise UserError(
                    f"TFDS dataset '{name}' {split} images have shapes {sorted(shapes)[:3]} and "
                    f"dtype {images_list[0].dtype}; jaxdl needs same-size uint8 images, "
                    "pick another dataset"
                )
            images = np.stack(images_list)
        else:  # ImageDataset reports the empty split
            images = np.zeros((0, 28, 28, 1), np.uint8)
        if class_label_names:
            num_classes = len(class_label_names)
        else:
            num_classes = int(labels.max()) + 1 if n else 1
        if name in ("mnist", "fashion_mnist") and num_classes == 10:
            names = _class_names(name, num_classes)
        elif class_label_names:
            names = tuple(class_label_names)
        else:
            names = _class_names(name, num_classes)
        parts[split] = ImageDataset(
            images=images,
            labels=labels.astype(np.int32),
            num_classes=num_classes,
            name=name,
            class_names=names,
            source=f"prepared TFDS {name} in {tfds_dir}",
        )
    return Split(train=parts["train"], test=parts["test"])


def _tfds_prepared(name: str, tfds_dir: Path) -> bool:
    """Whether TFDS `name` is prepared (array_record) under `tfds_dir`; no network."""
    if not (tfds_dir / name).is_dir():  # fast path: no tfds import
        return False
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=str(tfds_dir))
        if not builder.is_prepared():
            return False
        return "array_record" in str(builder.info.file_format).lower()
    except Exception:
        return False


# --------------------------------------------------------------------------- synthetic


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


# --------------------------------------------------------------------------- resolver


def _dedupe(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p not in out:
            out.append(p)
    return out


def _idx_dirs(name: str, data_dir: Path | None) -> tuple[list[Path], list[Path]]:
    """(directories derived from data_dir, default directories) to search for IDX files."""
    if name == "mnist":
        subdirs, defaults = ("mnist",), MNIST_IDX_DIRS
    else:
        subdirs, defaults = ("fashion-mnist", "fashion_mnist"), FASHION_MNIST_IDX_DIRS
    given = [data_dir, *(data_dir / s for s in subdirs)] if data_dir else []
    return given, [Path(d).expanduser() for d in defaults]


def _idx_candidates(name: str, data_dir: Path | None) -> list[Path]:
    given, defaults = _idx_dirs(name, data_dir)
    return _dedupe([*given, *defaults])


def _tfds_candidates(data_dir: Path | None) -> list[Path]:
    return _dedupe([*([data_dir] if data_dir else []), Path(DEFAULT_TFDS_DIR).expanduser()])


def _find_local(name: str, data_dir: Path | None) -> tuple[str, Path] | None:
    """('idx', dir) or ('tfds', dir) for the first local copy of mnist/fashion_mnist.

    An explicit data_dir is searched first (IDX files, then a TFDS copy), then the
    default IDX directories, then the default TFDS directory.
    """
    given, defaults = _idx_dirs(name, data_dir)
    order = [("idx", d) for d in given]
    order += [("tfds", data_dir)] if data_dir else []
    order += [("idx", d) for d in defaults]
    order += [("tfds", Path(DEFAULT_TFDS_DIR).expanduser())]
    for kind, d in order:
        # A partial IDX copy or an unprepared / wrong-format TFDS copy is still
        # loaded, so that its UserError names what is missing.
        if kind == "idx" and _idx_dir_status(d) != "absent":
            return kind, d
        if kind == "tfds" and (d / name).is_dir():
            return kind, d
    return None


def mnist_available(data_dir: str | os.PathLike | None = None) -> bool:
    """Whether full MNIST is on local disk (IDX files or a prepared TFDS copy); no network."""
    root = Path(data_dir).expanduser() if data_dir else None
    if any(_idx_dir_status(d) == "complete" for d in _idx_candidates("mnist", root)):
        return True
    return any(_tfds_prepared("mnist", d) for d in _tfds_candidates(root))


def resolve_image_dataset(
    name: str, data_dir: str | os.PathLike | None = None, verbose: bool = True
) -> Split:
    """Load the dataset called `name` from the first local source that has it.

    Names: 'mnist_5k' (embedded), 'mnist' and 'fashion_mnist' (IDX files, then a
    prepared TFDS copy), 'tfds:<name>' (prepared TFDS), 'synthetic'. Never
    downloads; fails within seconds with a UserError when no local copy exists.
    """
    raw = str(name).strip()
    root = Path(data_dir).expanduser() if data_dir else None
    key = raw.lower().replace("-", "_") if not raw.startswith("tfds:") else raw
    if key == "mnist_5k":
        split = mnist_5k_split()
    elif key == "synthetic":
        split = synthetic_split()
    elif key.startswith("tfds:"):
        split = load_tfds_split(key[len("tfds:") :], root)
    elif key in ("mnist", "fashion_mnist"):
        found = _find_local(key, root)
        if found is None:
            idx_dirs = ", ".join(str(d) for d in _idx_candidates(key, root))
            tfds_dirs = ", ".join(str(d) for d in _tfds_candidates(root))
            label = "MNIST" if key == "mnist" else "Fashion-MNIST"
            tfds_dir = root or Path(DEFAULT_TFDS_DIR).expanduser()
            raise UserError(
                f"{label} not found locally (no IDX files in {idx_dirs}; no prepared TFDS "
                f"{key} under {tfds_dirs}); {_how_to_get(key)} "
                f"(a TFDS copy also works: {_tfds_prepare_hint(key, tfds_dir)})"
            )
        kind, where = found
        split = load_idx_split(where, key) if kind == "idx" else load_tfds_split(key, where)
    else:
        raise UserError(
            f"unknown dataset {raw!r}; known datasets: {', '.join(KNOWN_DATASETS)}; "
            "set --config.dataset to one of them"
        )
    if verbose:
        print(
            f"dataset {raw}: {split.train.source} "
            f"({len(split.train)} train / {len(split.test)} test examples)",
            flush=True,
        )
    return split
