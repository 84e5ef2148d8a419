"""MNIST-format IDX files: reading one file (`read_idx`) and loading a directory of four.

`load_idx_split` loads `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
`t10k-images-idx3-ubyte[.gz]` and `t10k-labels-idx1-ubyte[.gz]` (MNIST, Fashion-MNIST) from
one directory as a `Split`. Nothing here touches the network.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from jaxdl.data.image_dataset import _OFFLINE_HINT, ImageDataset, Split, _class_names
from jaxdl.errors import UserError

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
