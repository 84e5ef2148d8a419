"""Image data sources: where the examples come from, offline first.

Four kinds of source produce the same `ImageDataset` (uint8 images (N, H, W, C), normally
(N, 28, 28, 1), and int32 labels) grouped in a `Split` (see `jaxdl.data.image_dataset`):

1. **Embedded**: `mnist_5k`, 5,000 real MNIST digits (500 per class) in `embedded/mnist_5k.csv.gz`,
   split 4,000 / 1,000 (fixed, stratified). Always available; loads in well under a second.
2. **IDX files** (`jaxdl.data.idx`): MNIST's format (`train-images-idx3-ubyte[.gz]`, ...) in a
   local directory, e.g. `~/.jaxdl/data/mnist` or Debian's `/usr/share/datasets/fashion-mnist`.
3. **Prepared TFDS** (`jaxdl.data.tfds_source`): array_record files read with
   `tfds.data_source` (no TensorFlow) from a TFDS data dir (default `~/tensorflow_datasets`).
4. **Synthetic**: deterministic, learnable images made on the fly, for tests.

Here: 1, 4, the default directories and `resolve_image_dataset`, which loads a dataset from
the first local source that has it; the public names of the modules above are re-exported.

Offline-first rule: nothing here ever touches the network. A dataset that is not on local disk
is never downloaded; instead a `UserError` says how to get a local copy and that
`--config.dataset=mnist_5k` works offline. Every lookup of a missing dataset fails within seconds.
"""

from __future__ import annotations

import functools
import io
import os
from pathlib import Path

import numpy as np

from jaxdl.data import records, tfds_source
from jaxdl.data.idx import _how_to_get, _idx_dir_status, _read_maybe_gzip, load_idx_split
from jaxdl.data.image_dataset import (
    DIGIT_CLASS_NAMES,
    FASHION_MNIST_CLASS_NAMES,
    ImageDataset,
    Split,
)
from jaxdl.data.synthetic import synthetic_split
from jaxdl.data.tfds_source import _tfds_prepare_hint, _tfds_prepared
from jaxdl.errors import UserError

__all__ = [
    "DEFAULT_TFDS_DIR",
    "DIGIT_CLASS_NAMES",
    "EMBEDDED_MNIST_5K",
    "FASHION_MNIST_CLASS_NAMES",
    "FASHION_MNIST_IDX_DIRS",
    "KNOWN_DATASETS",
    "MNIST_IDX_DIRS",
    "load_csv_digits",
    "load_tfds_split",
    "mnist_5k_split",
    "mnist_available",
    "resolve_image_dataset",
]

# --------------------------------------------------------------------------- constants

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

KNOWN_DATASETS: tuple[str, ...] = ("mnist_5k", "mnist", "fashion_mnist", "synthetic", "tfds:<name>",
                                   "array_record:<dir>")


# --------------------------------------------------------------------------- CSV (embedded)


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


def load_tfds_split(name: str, data_dir: str | os.PathLike | None = None) -> Split:
    """`tfds_source.load_tfds_split`, with `data_dir` defaulting to `DEFAULT_TFDS_DIR`."""
    return tfds_source.load_tfds_split(name, data_dir or DEFAULT_TFDS_DIR)


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
    elif raw.startswith("array_record:"):
        split = records.load_split(raw[len("array_record:"):])
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
