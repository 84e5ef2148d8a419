"""Prepared TFDS datasets, read with `tfds.data_source` (array_record files, no TensorFlow).

`load_tfds_split` never downloads: a dataset that is not prepared in the given TFDS data dir
raises UserError with the `tfds build` command that prepares it. tensorflow_datasets is slow
to import, so it is imported only when a TFDS dataset is actually used.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxdl.data.image_dataset import _OFFLINE_HINT, ImageDataset, Split, _class_names
from jaxdl.errors import UserError


def _tfds_prepare_hint(name: str, tfds_dir: Path) -> str:
    return (
        f"prepare it with `tfds build {name} --data_dir {tfds_dir} --file_format=array_record` "
        f"on a machine with network, then copy {tfds_dir / name} to this machine"
    )


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def load_tfds_split(name: str, data_dir: str | os.PathLike) -> Split:
    """Read the train and test splits of a prepared TFDS dataset (array_record format).

    Uses `tfds.data_source`, so TensorFlow is not needed. Never downloads: a
    dataset that is not prepared under `data_dir` raises UserError with the
    command that prepares it. (`sources.load_tfds_split` defaults `data_dir` to
    `sources.DEFAULT_TFDS_DIR`.)
    """
    tfds_dir = Path(data_dir).expanduser()
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


def _tfds_prepared(name: str, tfds_dir: Path, *, say=print) -> bool:
    """Whether TFDS `name` is prepared (array_record) under `tfds_dir`; no network. A copy
    that is there but cannot be used is skipped with one line (`say`) naming it and why."""
    if not (tfds_dir / name).is_dir():  # fast path: no tfds import
        return False
    copy = tfds_dir / name
    try:
        import tensorflow_datasets as tfds

        builder = tfds.builder(name, data_dir=str(tfds_dir))
        if not builder.is_prepared():
            why = "it is not prepared (no complete version in it)"
        elif "array_record" not in str(builder.info.file_format).lower():
            why = (f"it is in {builder.info.file_format} format, which jaxdl cannot read "
                   "without TensorFlow (rebuild it with --file_format=array_record)")
        else:
            return True
    except Exception as e:  # noqa: BLE001 - reported: the copy is skipped, with the cause
        why = f"it cannot be read ({_first_line(e)})"
    say(f"Skipping the TFDS copy {copy}: {why}.")
    return False
