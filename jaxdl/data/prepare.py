"""`jaxdl data prepare`: write an image source or a text as an array_record dataset, in
the layout `jaxdl.data.records` reads (its docstring has the layout). Writing is apart
from reading so that the sources, which read datasets, and this module, which reads the
sources, import one way."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from jaxdl.data import bpe, sources
from jaxdl.data import text as textdata
from jaxdl.data.records import META, SPLITS, TEXT_SPLITS, TOKEN_CHUNK, WRITER_OPTIONS
from jaxdl.errors import UserError


def write_field(path: Path, array: np.ndarray, chunk: int = 4096) -> None:
    """One record per row of `array` (its raw bytes), in an array_record file at `path`."""
    from array_record.python.array_record_module import ArrayRecordWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = ArrayRecordWriter(str(path), WRITER_OPTIONS)
    try:
        for lo in range(0, len(array), chunk):
            for row in np.ascontiguousarray(array[lo:lo + chunk]):
                writer.write(row.tobytes())
    finally:
        writer.close()


def write_split(out: str | Path, split, source: str) -> dict:
    """Write an image `Split` (train and test) under `out`; returns what meta.json holds."""
    out = Path(out)
    train = split.train
    fields = {"image": {"shape": list(train.images.shape[1:]), "dtype": "uint8"},
              "label": {"shape": [], "dtype": "int32"}}
    meta = {"kind": "images", "name": train.name, "source": source,
            "num_classes": train.num_classes, "class_names": list(train.class_names),
            "fields": fields, "splits": {}}
    for name in SPLITS:
        part = getattr(split, name)
        write_field(out / name / "image.array_record", part.images)
        write_field(out / name / "label.array_record", part.labels.astype(np.int32))
        meta["splits"][name] = len(part)
    (out / META).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def prepare(source: str, out: str | Path, data_dir: str | None = None, *,
            level: str = "char", val_fraction: float = 0.1,
            tokenizer: str | Path | None = None) -> dict:
    """`jaxdl data prepare`: the image source or text `source` as an array_record dataset
    (a text's tokens: characters or words at `level`, or a BPE `tokenizer`'s)."""
    if tokenizer and not str(source).startswith("text:"):
        raise UserError(f"--tokenizer tokenizes texts; {source} is not one (give "
                        "--source=text:NAME or text:PATH)")
    if tokenizer and level != "char":
        raise UserError(f"--tokenizer and --level {level} both choose the tokens; give one")
    out = Path(out)
    if (out / META).exists():
        raise UserError(f"{out} already holds a dataset ({out / META}); choose another --out "
                        "or remove it first")
    if str(source).startswith("text:"):
        return prepare_text(source, out, level, val_fraction, tokenizer)
    if str(source).startswith("array_record:"):
        raise UserError(f"{source} is an array_record dataset already; give the source it was "
                        "written from (e.g. --source=mnist_5k)")
    split = sources.resolve_image_dataset(source, data_dir=data_dir)
    return write_split(out, split, f"{split.train.source}, via jaxdl data prepare")


def write_text(out: str | Path, vocab, train_ids: np.ndarray, val_ids: np.ndarray,
               source: str) -> dict:
    """A tokenised text's train and validation ids under `out`, `TOKEN_CHUNK` a record."""
    out = Path(out)
    meta = {"kind": "text", "source": source, "level": vocab.level,
            "specials": vocab.num_specials, "unk": vocab.has_unk, "chunk": TOKEN_CHUNK,
            "splits": {}}
    if vocab.level == "bpe":  # the dataset keeps its tokenizer: DIR/tokenizer.json
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(vocab.path, out / bpe.FILE)
    else:
        meta["tokens"] = list(vocab.tokens[vocab.first:])
    for name, ids in zip(TEXT_SPLITS, (train_ids, val_ids), strict=True):
        ids = np.asarray(ids, np.int32)
        padded = np.zeros(-(-len(ids) // TOKEN_CHUNK) * TOKEN_CHUNK, np.int32)
        padded[:len(ids)] = ids
        write_field(out / name / "tokens.array_record", padded.reshape(-1, TOKEN_CHUNK))
        meta["splits"][name] = len(ids)
    (out / META).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def prepare_text(source: str, out: Path, level: str = "char",
                 val_fraction: float = 0.1, tokenizer: str | Path | None = None) -> dict:
    """`--source=text:NAME|PATH`: the text tokenised at `level` (or by `tokenizer`) and
    split as the LMs do, so the ids equal a run's on the text itself."""
    name = source[len("text:"):]
    path = "" if name in textdata.EMBEDDED_TEXTS else name
    text = textdata.load_text(name if not path else "tinyshakespeare", path)
    if tokenizer:
        vocab = bpe.BpeVocab(tokenizer)
        train, val = bpe.encode_split(vocab, text, val_fraction)
    else:
        vocab = textdata.make_vocab(level, text)
        train, val = textdata.train_val_split(vocab.encode(text), val_fraction)
    return write_text(out, vocab, train, val, f"{source}, via jaxdl data prepare")
