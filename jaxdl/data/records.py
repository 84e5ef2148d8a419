"""Datasets larger than memory: array_record files read record by record.

`jaxdl data prepare --source=SOURCE --out DIR` (`jaxdl.data.prepare`) writes any image
source jaxdl reads (`mnist_5k`, `mnist`, `fashion_mnist`, `tfds:NAME`, `synthetic`) as

    DIR/meta.json                  name, source, classes, splits and their sizes, fields
    DIR/<split>/<field>.array_record   one record per example: the raw bytes of its
                                   fixed-shape array (`image` uint8 (H, W, C), `label` int32)

and `--config.dataset=array_record:DIR` trains on it. A text (`--source=text:NAME` for an
embedded corpus, `text:PATH` for a file) is written as its token ids, split as the
language models split it (the first 90% train), in chunks of `TOKEN_CHUNK` ids a record
(`DIR/<split>/tokens.array_record`, the vocabulary in meta.json, or a BPE tokenizer's
ids with its copy in `DIR/tokenizer.json` when prepared with `--tokenizer PATH`), and
`--config.text_path=array_record:DIR` trains the language models on it through
`TokenArray`, which reads only the chunks a batch's windows touch.

Images stay on disk: `RecordArray` is an array-like (`len`, `shape`, `dtype`, indexing
by an int, a slice or an index array) whose indexing reads just those records (one
`ArrayRecordReader`, several records at once), so the loaders (`jaxdl.data.loader`)
batch it exactly as an in-memory array, batch `i` still a pure function of (seed, i).
Labels (4 bytes an example) are read whole: the recipes check their range and the report
counts classes. Files are written with `group_size:1`, so reading one record
decompresses only that record.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np

from jaxdl.data.bpe import FILE, BpeVocab
from jaxdl.data.image_dataset import ImageDataset, Split
from jaxdl.data.vocab import Vocab
from jaxdl.errors import UserError

META = "meta.json"
SPLITS = ("train", "test")
TEXT_SPLITS = ("train", "val")
TOKEN_CHUNK = 4096  # token ids a record
WRITER_OPTIONS = "group_size:1"  # random access: one record per chunk
READER_OPTIONS = "readahead_buffer_size:0"  # random access: read no further than asked
READ_CHUNK = 4096  # records per read: reading all labels at once held ~90 MB of bytes objects


class RecordArray:
    """N fixed-shape records of one field, as an array that reads only what it is indexed by."""

    on_disk = True  # what the datasets and loaders check, without importing this module

    def __init__(self, path: str | Path, shape: tuple, dtype):
        self.path = str(path)
        self.record_shape, self.dtype = tuple(int(d) for d in shape), np.dtype(dtype)
        self._reader, self._lock = None, threading.Lock()
        self._len = int(self._open().num_records())

    def _open(self):
        """One reader (its index of record offsets: ~55 bytes a record) for every read.
        grain's `ArrayRecordDataSource` opens one per reading thread, each with its own
        index: 88 MB more for 200,000 labels, measured."""
        if self._reader is None:
            from array_record.python.array_record_module import ArrayRecordReader

            try:
                self._reader = ArrayRecordReader(self.path, READER_OPTIONS,
                                                 file_reader_buffer_size=32768)
            except Exception as e:  # noqa: BLE001 - the reader's own error types vary
                raise UserError(f"cannot read the array_record file {self.path} ({e}); "
                                "rewrite the dataset with `jaxdl data prepare`") from None
        return self._reader

    def __getstate__(self):  # grain worker processes reopen the file
        state = dict(self.__dict__)
        state["_reader"], state["_lock"] = None, None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state, _lock=threading.Lock())

    def __len__(self) -> int:
        return self._len

    def close(self) -> None:
        """Frees the reader and its record index; indexing again reopens it."""
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    @property
    def shape(self) -> tuple:
        return (self._len, *self.record_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.record_shape)

    @property
    def nbytes(self) -> int:
        return self._len * math.prod(self.record_shape) * self.dtype.itemsize

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, int | np.integer):
            return self[np.array([index])][0]
        if isinstance(index, slice):
            index = np.arange(self._len)[index]
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
            raise UserError(f"a RecordArray is indexed by an int, a slice or a 1-D index array, "
                            f"got {index.dtype} of shape {index.shape}")
        index = np.where(index < 0, index + self._len, index)
        out = np.empty((len(index), *self.record_shape), self.dtype)
        flat = out.reshape(len(index), -1).view(np.uint8)
        for lo in range(0, len(index), READ_CHUNK):  # bounded memory for large reads
            keys = [int(i) for i in index[lo:lo + READ_CHUNK]]
            with self._lock:  # one reader, shared by the loader's threads
                chunk = self._open().read(keys)
            flat[lo:lo + len(keys)] = np.frombuffer(b"".join(chunk), np.uint8).reshape(
                len(keys), -1)
        return out

    def __array__(self, dtype=None, copy=None):
        raise TypeError(f"{self.path} holds {self._len} records read on demand; index it "
                        "(array[idx]) for the records a batch needs, or array[:] for all")

    def __repr__(self) -> str:
        return f"RecordArray({self.path!r}, shape={self.shape}, dtype={self.dtype})"


class TokenArray:
    """A token stream of `n` ids stored `TOKEN_CHUNK` to a record, as a 1-D int32 array
    that reads only the chunks an index (of any shape) touches."""

    on_disk = True

    def __init__(self, path: str | Path, n: int, chunk: int = TOKEN_CHUNK):
        self.chunks = RecordArray(path, (chunk,), "int32")
        self.n, self.chunk, self.dtype = int(n), int(chunk), np.dtype("int32")
        if -(-self.n // self.chunk) != len(self.chunks):
            raise UserError(f"{path} holds {len(self.chunks)} chunks for {self.n} tokens; "
                            "rewrite the dataset with `jaxdl data prepare`")

    def __len__(self) -> int:
        return self.n

    @property
    def shape(self) -> tuple:
        return (self.n,)

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, slice):
            index = np.arange(self.n)[index]
        index = np.asarray(index)
        if not np.issubdtype(index.dtype, np.integer):
            raise UserError(f"a TokenArray is indexed by ints, got {index.dtype}")
        index = np.where(index < 0, index + self.n, index)
        needed, where = np.unique(index // self.chunk, return_inverse=True)
        rows = self.chunks[needed]  # (chunks, chunk)
        return rows[where.reshape(index.shape), index % self.chunk]

    def __array__(self, dtype=None, copy=None):
        raise TypeError(f"a TokenArray of {self.n} tokens is read on demand; index it")


def load_text(directory: str | Path):
    """`(vocab, train_ids, val_ids)` of a text dataset, the ids as `TokenArray`s."""
    directory = Path(directory).expanduser()
    meta = _meta(directory, "text", "the language models read text datasets "
                                    "(jaxdl data prepare --source=text:NAME)")
    if meta["level"] == "bpe":  # prepared with --tokenizer: its copy beside the tokens
        vocab = BpeVocab(directory / FILE)
    else:
        vocab = Vocab(meta["tokens"], level=meta["level"], specials=meta["specials"],
                      unk=meta["unk"])
    ids = [TokenArray(directory / name / "tokens.array_record", meta["splits"][name],
                      meta["chunk"]) for name in TEXT_SPLITS]
    return vocab, *ids


def _meta(directory: Path, kind: str, fix: str) -> dict:
    try:
        meta = json.loads((directory / META).read_text())
    except FileNotFoundError:
        raise UserError(f"no array_record dataset in {directory} (no {META}); write one with "
                        f"`jaxdl data prepare --source=... --out {directory}`") from None
    if meta.get("kind") != kind:
        raise UserError(f"{directory} holds a {meta.get('kind')!r} dataset; {fix}")
    return meta


def load_split(directory: str | Path):
    """The `Split` of an array_record dataset: images as `RecordArray`s, labels in memory."""
    directory = Path(directory).expanduser()
    meta = _meta(directory, "images", "the image recipes read image datasets "
                                      "(jaxdl data prepare --source=mnist_5k)")
    image = meta["fields"]["image"]
    parts = {}
    for name in SPLITS:
        label_file = RecordArray(directory / name / "label.array_record", (), "int32")
        labels = label_file[:]
        label_file.close()  # before the images' reader opens: one record index at a time
        images = RecordArray(directory / name / "image.array_record", image["shape"], "uint8")
        if len(images) != meta["splits"][name] or len(labels) != len(images):
            raise UserError(f"{directory / name} has {len(images)} images and {len(labels)} "
                            f"labels, meta.json says {meta['splits'][name]}; rewrite it with "
                            "`jaxdl data prepare`")
        parts[name] = ImageDataset(images, labels, int(meta["num_classes"]), meta["name"],
                                   tuple(meta["class_names"]), f"array_record {directory}")
    return Split(parts["train"], parts["test"])
