"""Tests for jaxdl.data.sources: embedded, IDX, CSV, TFDS and synthetic sources.

Everything runs offline: an autouse fixture makes any socket connection fail,
and the default dataset locations are pointed at empty temporary directories.
"""

from __future__ import annotations

import gzip
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxdl.data import sources as S
from jaxdl.data.idx import load_idx_split, read_idx
from jaxdl.data.image_dataset import ImageDataset, Split
from jaxdl.data.synthetic import synthetic_split
from jaxdl.errors import UserError

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail loudly if anything tries to reach the network."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Point every default dataset location at (empty) temporary directories."""
    defaults = tmp_path / "defaults"
    monkeypatch.setattr(S, "MNIST_IDX_DIRS", (defaults / "mnist_idx",))
    monkeypatch.setattr(S, "FASHION_MNIST_IDX_DIRS", (defaults / "fashion-mnist",))
    monkeypatch.setattr(S, "DEFAULT_TFDS_DIR", defaults / "tensorflow_datasets")
    return defaults


def write_idx(path: Path, arr: np.ndarray, gz: bool | None = None) -> Path:
    """Write `arr` as an IDX file (gzip-compressed when gz or path ends in .gz)."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}
    code = codes[arr.dtype]
    header = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    if gz if gz is not None else path.suffix == ".gz":
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def make_idx_dir(directory: Path, n_train: int = 30, n_test: int = 10, gz: bool = True) -> dict:
    rng = np.random.default_rng(1)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test)[::-1] % 10).astype(np.uint8),
    }
    for i, (stem, arr) in enumerate(arrays.items()):
        # Mix compressed and plain files when gz is True.
        name = f"{stem}.gz" if gz and i % 2 == 0 else stem
        write_idx(directory / name, arr)
    return arrays


def csv_gz(path: Path, rows: list[list[int]]) -> Path:
    text = "\n".join(",".join(str(v) for v in row) for row in rows) + "\n"
    path.write_bytes(gzip.compress(text.encode()))
    return path


# ----------------------------------------------------------------------------- embedded


def test_mnist_5k_split_sizes_and_types():
    split = S.mnist_5k_split()
    assert len(split.train) == 4000 and len(split.test) == 1000
    for ds in (split.train, split.test):
        assert ds.images.shape[1:] == (28, 28, 1) and ds.images.dtype == np.uint8
        assert ds.labels.dtype == np.int32 and ds.labels.shape == (len(ds),)
        assert ds.num_classes == 10
        assert ds.class_names == tuple(str(i) for i in range(10))
        assert ds.name == "mnist_5k"
        assert "embedded mnist_5k" in ds.source and "mnist_5k.csv.gz" in ds.source
    np.testing.assert_array_equal(np.bincount(split.test.labels, minlength=10), [100] * 10)
    np.testing.assert_array_equal(np.bincount(split.train.labels, minlength=10), [400] * 10)


def test_mnist_5k_split_deterministic_and_seeded():
    a, b = S.mnist_5k_split(seed=0), S.mnist_5k_split(seed=0)
    np.testing.assert_array_equal(a.train.images, b.train.images)
    np.testing.assert_array_equal(a.test.labels, b.test.labels)
    c = S.mnist_5k_split(seed=1)
    assert not np.array_equal(a.test.images, c.test.images)
    np.testing.assert_array_equal(np.bincount(c.test.labels, minlength=10), [100] * 10)


def test_mnist_5k_train_test_disjoint_and_complete():
    split = S.mnist_5k_split()
    train_rows = {row.tobytes() for row in split.train.images.reshape(len(split.train), -1)}
    test_rows = {row.tobytes() for row in split.test.images.reshape(len(split.test), -1)}
    assert not train_rows & test_rows
    # Real MNIST has (almost) no exact duplicates: both parts keep their rows.
    assert len(train_rows) + len(test_rows) >= 4990


def test_mnist_5k_pixels_look_like_mnist():
    split = S.mnist_5k_split()
    mean = split.train.images.mean() / 255.0
    assert abs(mean - 0.13) < 0.03
    assert split.train.images.max() == 255 and split.train.images.min() == 0
    # Digits are centred: the border is (nearly) blank, the centre is not.
    img = split.train.images[..., 0].astype(np.float64)
    assert img[:, :2, :].mean() < 2.0 and img[:, 10:18, 10:18].mean() > 60.0


def test_mnist_5k_loads_fast_and_is_cached():
    S._embedded_mnist_5k.cache_clear()
    start = time.perf_counter()
    S.mnist_5k_split()
    first = time.perf_counter() - start
    start = time.perf_counter()
    S.mnist_5k_split()
    second = time.perf_counter() - start
    assert first < 2.0
    assert second < 0.5
    assert S._embedded_mnist_5k.cache_info().hits >= 1


def test_mnist_5k_bad_fraction():
    with pytest.raises(UserError, match="test_fraction"):
        S.mnist_5k_split(test_fraction=1.5)


# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, (7,), dtype=np.uint8)
    suffix = ".gz" if gz else ""
    p_img = write_idx(tmp_path / f"images{suffix}", images, gz=gz)
    p_lab = write_idx(tmp_path / f"labels{suffix}", labels, gz=gz)
    if gz:
        assert p_img.read_bytes()[:2] == b"\x1f\x8b"
    out = read_idx(p_img)
    assert out.dtype == np.uint8 and out.shape == (7, 28, 28)
    np.testing.assert_array_equal(out, images)
    np.testing.assert_array_equal(read_idx(str(p_lab)), labels)


def test_read_idx_big_endian_int32(tmp_path):
    arr = np.array([[1, -2, 70000], [3, 4, 2**30]], dtype=np.int32)
    out = read_idx(write_idx(tmp_path / "ints", arr))
    assert out.dtype == np.int32 and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_load_idx_split_round_trip(tmp_path):
    arrays = make_idx_dir(tmp_path / "mnist")
    split = load_idx_split(tmp_path / "mnist", "mnist")
    assert len(split.train) == 30 and len(split.test) == 10
    assert split.train.images.shape == (30, 28, 28, 1) and split.train.images.dtype == np.uint8
    assert split.train.labels.dtype == np.int32
    np.testing.assert_array_equal(split.train.images[..., 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(split.test.labels, arrays["t10k-labels-idx1-ubyte"])
    assert split.train.class_names == tuple(str(i) for i in range(10))
    assert str(tmp_path / "mnist") in split.train.source


def test_load_idx_split_fashion_class_names(tmp_path):
    make_idx_dir(tmp_path / "f", gz=False)
    split = load_idx_split(tmp_path / "f", "fashion_mnist")
    assert split.test.class_names == S.FASHION_MNIST_CLASS_NAMES
    assert split.test.class_names[0] == "T-shirt/top" and split.test.class_names[9] == "Ankle boot"


def test_read_idx_truncated(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(UserError) as err:
        read_idx(path)
    msg = str(err.value)
    assert str(path) in msg and "truncated" in msg and "re-download" in msg
    assert f"expected {16 + 5 * 784} bytes, got 1000" in msg
    assert "\n" not in msg


def test_read_idx_truncated_gzip(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.ones((50, 28, 28), np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as err:
        read_idx(path)
    assert str(path) in str(err.value) and "re-download" in str(err.value)


def test_read_idx_bad_magic(tmp_path):
    path = tmp_path / "labels.idx"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(UserError) as err:
        read_idx(path)
    msg = str(err.value)
    assert str(path) in msg and "magic" in msg and "re-download" in msg


def test_read_idx_trailing_bytes(tmp_path):
    path = write_idx(tmp_path / "labels", np.zeros((4,), np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00\x00")
    with pytest.raises(UserError, match="expected 12 bytes"):
        read_idx(path)


def test_read_idx_missing(tmp_path):
    path = tmp_path / "nope-idx3-ubyte.gz"
    with pytest.raises(UserError) as err:
        read_idx(path)
    assert str(path) in str(err.value) and "not found" in str(err.value)


def test_load_idx_split_missing_dir_and_file(tmp_path):
    with pytest.raises(UserError) as err:
        load_idx_split(tmp_path / "absent", "mnist")
    assert str(tmp_path / "absent") in str(err.value)
    assert "--config.dataset=mnist_5k" in str(err.value)

    make_idx_dir(tmp_path / "partial")
    (tmp_path / "partial" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError) as err:
        load_idx_split(tmp_path / "partial", "fashion_mnist")
    msg = str(err.value)
    assert str(tmp_path / "partial" / "t10k-labels-idx1-ubyte") in msg
    assert "apt-get install -y dataset-fashion-mnist" in msg


def test_load_idx_split_count_mismatch(tmp_path):
    make_idx_dir(tmp_path / "d", gz=False)
    write_idx(tmp_path / "d" / "train-labels-idx1-ubyte", np.zeros((29,), np.uint8))
    with pytest.raises(UserError, match="30 images but .* 29 labels"):
        load_idx_split(tmp_path / "d", "mnist")


# ----------------------------------------------------------------------------- CSV


def test_load_csv_digits_round_trip(tmp_path):
    rows = [[(i * 7 + j) % 256 for j in range(784)] + [i % 10] for i in range(12)]
    ds = S.load_csv_digits(csv_gz(tmp_path / "d.csv.gz", rows), "tiny")
    assert len(ds) == 12 and ds.images.shape == (12, 28, 28, 1) and ds.name == "tiny"
    assert ds.images[3, 0, 5, 0] == (3 * 7 + 5) % 256 and ds.images[3, 1, 0, 0] == (21 + 28) % 256
    np.testing.assert_array_equal(ds.labels, np.arange(12) % 10)


def test_load_csv_truncated_gzip(tmp_path):
    rows = [[i % 256 for i in range(784)] + [1]] * 50
    path = csv_gz(tmp_path / "d.csv.gz", rows)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])
    with pytest.raises(UserError) as err:
        S.load_csv_digits(path, "d")
    assert str(path) in str(err.value) and "gzip" in str(err.value)


def test_load_csv_wrong_columns(tmp_path):
    rows = [[0] * 785, [0] * 785, [0] * 700]
    path = csv_gz(tmp_path / "d.csv.gz", rows)
    with pytest.raises(UserError) as err:
        S.load_csv_digits(path, "d")
    msg = str(err.value)
    assert str(path) in msg and "row 3 has 700 columns, expected 785" in msg


def test_load_csv_bad_values(tmp_path):
    path = csv_gz(tmp_path / "a.csv.gz", [[300] + [0] * 783 + [1]])
    with pytest.raises(UserError, match="pixel values"):
        S.load_csv_digits(path, "a")
    path = csv_gz(tmp_path / "b.csv.gz", [["x"] + [0] * 783 + [1]])
    with pytest.raises(UserError, match="non-integer"):
        S.load_csv_digits(path, "b")
    path = csv_gz(tmp_path / "c.csv.gz", [[0] * 784 + [12]])
    with pytest.raises(UserError, match="labels"):
        S.load_csv_digits(path, "c")
    with pytest.raises(UserError, match="not found"):
        S.load_csv_digits(tmp_path / "missing.csv.gz", "m")


def test_load_csv_empty(tmp_path):
    path = tmp_path / "empty.csv.gz"
    path.write_bytes(gzip.compress(b""))
    with pytest.raises(UserError, match="empty"):
        S.load_csv_digits(path, "empty")


# ----------------------------------------------------------------------------- TFDS


class JaxdlTestDigits(tfds.core.GeneratorBasedBuilder):
    """A tiny image dataset that TFDS can prepare offline without TensorFlow.

    (Image features need TensorFlow to encode PNGs, so images are stored as uint8
    Tensors; records still come back as {'image': (28, 28, 1) uint8, 'label': int}.)
    """

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(names=[f"c{i}" for i in range(4)]),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(20, 0), "test": self._generate_examples(8, 1)}

    def _generate_examples(self, n, seed):
        for i in range(n):
            image = np.full((28, 28, 1), seed * 100 + i, dtype=np.uint8)
            yield i, {"image": image, "label": i % 4}


def test_tfds_prepared_array_record_dataset(tmp_path, isolated, capsys):
    JaxdlTestDigits(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    split = S.load_tfds_split("jaxdl_test_digits", data_dir=tmp_path)
    assert len(split.train) == 20 and len(split.test) == 8
    assert split.train.images.shape == (20, 28, 28, 1) and split.train.images.dtype == np.uint8
    assert split.train.num_classes == 4 and split.train.class_names == ("c0", "c1", "c2", "c3")
    # Same multiset of examples as generated (TFDS shuffles the order).
    assert sorted(split.train.images[:, 0, 0, 0].tolist()) == list(range(20))
    for ds in (split.train, split.test):
        np.testing.assert_array_equal(ds.labels, (ds.images[:, 0, 0, 0] % 100) % 4)
    assert "prepared TFDS jaxdl_test_digits" in split.train.source
    assert S._tfds_prepared("jaxdl_test_digits", tmp_path)

    split2 = S.resolve_image_dataset("tfds:jaxdl_test_digits", data_dir=tmp_path)
    assert len(split2.test) == 8
    assert "prepared TFDS jaxdl_test_digits" in capsys.readouterr().out


def test_tfds_mock_data_works_with_data_source(tmp_path):
    # tfds.testing.mock_data patches tfds.data_source without TensorFlow.
    with tfds.testing.mock_data(num_examples=12, data_dir=str(tmp_path)):
        split = S.load_tfds_split("mnist", data_dir=tmp_path)
    assert len(split.train) == 12 and len(split.test) == 12
    assert split.train.images.shape == (12, 28, 28, 1) and split.train.images.dtype == np.uint8
    assert split.train.num_classes == 10 and split.train.class_names[3] == "3"
    assert split.train.labels.min() >= 0 and split.train.labels.max() < 10


def test_tfds_unprepared_fails_fast_offline(tmp_path):
    start = time.perf_counter()
    with pytest.raises(UserError) as err:
        S.load_tfds_split("mnist", data_dir=tmp_path)
    assert time.perf_counter() - start < 10
    msg = str(err.value)
    assert "TFDS dataset 'mnist' is not prepared under" in msg and str(tmp_path) in msg
    assert f"tfds build mnist --data_dir {tmp_path}" in msg
    assert "--config.dataset=mnist_5k" in msg and "\n" not in msg


def test_tfds_unknown_and_namespaced_names(tmp_path):
    with pytest.raises(UserError, match="unknown"):
        S.load_tfds_split("no_such_dataset_xyz", data_dir=tmp_path)
    with pytest.raises(UserError, match="not supported"):
        S.load_tfds_split("huggingface:mnist", data_dir=tmp_path)


# ----------------------------------------------------------------------------- resolver


def test_resolve_unknown_name_lists_known():
    with pytest.raises(UserError) as err:
        S.resolve_image_dataset("cifar99")
    msg = str(err.value)
    assert "cifar99" in msg
    for known in ("mnist_5k", "mnist", "fashion_mnist", "synthetic", "tfds:<name>"):
        assert known in msg


def test_resolve_fashion_mnist_missing_mentions_apt_get(tmp_path, isolated):
    empty = tmp_path / "empty"
    empty.mkdir()
    start = time.perf_counter()
    with pytest.raises(UserError) as err:
        S.resolve_image_dataset("fashion_mnist", data_dir=empty)
    assert time.perf_counter() - start < 10
    msg = str(err.value)
    assert "apt-get install -y dataset-fashion-mnist" in msg
    assert str(empty) in msg and "--config.dataset=mnist_5k" in msg and "\n" not in msg


def test_resolve_mnist_missing_says_how_to_get(tmp_path, isolated):
    with pytest.raises(UserError) as err:
        S.resolve_image_dataset("mnist", data_dir=tmp_path)
    msg = str(err.value)
    assert "--config.dataset=mnist_5k" in msg and "tfds build mnist" in msg
    assert not S.mnist_available(tmp_path)
    assert not S.mnist_available()


def test_resolve_mnist_from_idx_dir(tmp_path, isolated, capsys):
    make_idx_dir(tmp_path / "mnist")
    assert S.mnist_available(tmp_path / "mnist")
    assert S.mnist_available(tmp_path)  # data_dir/mnist is searched too
    split = S.resolve_image_dataset("mnist", data_dir=tmp_path)
    assert len(split.train) == 30 and split.train.name == "mnist"
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "IDX files in" in out[0]
    # The default location is used when no data_dir is given.
    make_idx_dir(S.MNIST_IDX_DIRS[0], n_train=12, n_test=4)
    assert S.mnist_available()
    assert len(S.resolve_image_dataset("mnist", verbose=False).test) == 4
    assert capsys.readouterr().out == ""


def test_resolve_fashion_mnist_default_dir(isolated):
    make_idx_dir(S.FASHION_MNIST_IDX_DIRS[0], gz=True)
    split = S.resolve_image_dataset("fashion_mnist", verbose=False)
    assert split.train.class_names == S.FASHION_MNIST_CLASS_NAMES and len(split.test) == 10


def test_resolve_partial_idx_dir_names_missing_file(tmp_path, isolated):
    make_idx_dir(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(UserError, match="train-images-idx3-ubyte"):
        S.resolve_image_dataset("mnist", data_dir=tmp_path, verbose=False)


def test_resolve_mnist_5k(capsys):
    split = S.resolve_image_dataset("mnist_5k")
    assert len(split.train) == 4000
    assert "embedded mnist_5k" in capsys.readouterr().out


def test_synthetic_split_deterministic_and_learnable(capsys):
    split = S.resolve_image_dataset("synthetic")
    assert "synthetic" in capsys.readouterr().out
    assert len(split.train) == 256 and len(split.test) == 64
    assert split.train.images.shape == (256, 28, 28, 1) and split.train.images.dtype == np.uint8
    again = synthetic_split()
    np.testing.assert_array_equal(split.train.images, again.train.images)
    np.testing.assert_array_equal(split.test.labels, again.test.labels)
    assert not np.array_equal(synthetic_split(seed=1).train.images, again.train.images)
    # A nearest-class-mean classifier separates the classes.
    x_tr = split.train.images.reshape(256, -1).astype(np.float64)
    x_te = split.test.images.reshape(64, -1).astype(np.float64)
    means = np.stack([x_tr[split.train.labels == c].mean(0) for c in range(10)])
    pred = np.argmin(((x_te[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (pred == split.test.labels).mean() > 0.9
    small = synthetic_split(num_train=20, num_test=6, num_classes=3, size=16)
    assert small.train.images.shape == (20, 16, 16, 1) and small.train.num_classes == 3
    with pytest.raises(UserError):
        synthetic_split(num_classes=100, size=28)


# ----------------------------------------------------------------------------- containers


def _dataset(images, labels, num_classes=10):
    return ImageDataset(
        images=images,
        labels=labels,
        num_classes=num_classes,
        name="t",
        class_names=tuple(str(i) for i in range(num_classes)),
        source="test",
    )


def test_image_dataset_validation():
    images = np.zeros((3, 28, 28, 1), np.uint8)
    ds = _dataset(images, np.array([0, 1, 9], np.int32))
    assert len(ds) == 3
    with pytest.raises(UserError, match="labels must be in"):
        _dataset(images, np.array([0, 1, 10], np.int32))
    with pytest.raises(UserError, match="labels must be in"):
        _dataset(images, np.array([0, -1, 2], np.int32))
    with pytest.raises(UserError, match="dataset t is empty"):
        _dataset(np.zeros((0, 28, 28, 1), np.uint8), np.zeros((0,), np.int32))
    with pytest.raises(UserError, match="uint8"):
        _dataset(images.astype(np.float32), np.array([0, 1, 2], np.int32))
    with pytest.raises(UserError, match="shape"):
        _dataset(np.zeros((3, 28, 28), np.uint8), np.array([0, 1, 2], np.int32))
    with pytest.raises(UserError, match="int32"):
        _dataset(images, np.array([0, 1, 2], np.int64))
    with pytest.raises(UserError, match="3 images but 2 labels"):
        _dataset(images, np.array([0, 1], np.int32))
    with pytest.raises(UserError, match="class names"):
        ImageDataset(images, np.array([0, 1, 2], np.int32), 10, "t", ("a",), "test")


def test_split_requires_matching_datasets():
    a = _dataset(np.zeros((2, 28, 28, 1), np.uint8), np.array([0, 1], np.int32))
    b = _dataset(np.zeros((2, 28, 28, 1), np.uint8), np.array([0, 1], np.int32), num_classes=2)
    with pytest.raises(UserError, match="classes"):
        Split(train=a, test=b)
    assert len(Split(train=a, test=a).test) == 2


def test_resolve_mnist_unprepared_tfds_copy_in_data_dir(tmp_path, isolated):
    # data_dir/mnist without IDX files is taken as a TFDS copy, which is not prepared.
    (tmp_path / "mnist" / "3.0.1").mkdir(parents=True)
    make_idx_dir(S.MNIST_IDX_DIRS[0])  # the explicit data_dir wins over default IDX dirs
    with pytest.raises(UserError) as err:
        S.resolve_image_dataset("mnist", data_dir=tmp_path, verbose=False)
    assert f"TFDS dataset 'mnist' is not prepared under {tmp_path}" in str(err.value)
    assert len(S.resolve_image_dataset("mnist", verbose=False).train) == 30


def test_an_unusable_tfds_copy_is_skipped_with_one_line(tmp_path, isolated, capsys):
    """`auto` (mnist_available) finds a TFDS copy it cannot use: it says which and why,
    rather than falling back to the embedded subset in silence."""
    version = tmp_path / "mnist" / "3.0.1"
    version.mkdir(parents=True)
    (version / "dataset_info.json").write_text("{damaged")
    assert not S.mnist_available(tmp_path)
    out = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(out) == 1 and out[0].startswith(f"Skipping the TFDS copy {tmp_path / 'mnist'}: "
                                               "it "), out
