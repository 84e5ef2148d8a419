"""Deterministic, resumable batching of in-memory arrays and token streams.

The order of epoch `e` is `default_rng([seed, e]).permutation(n)`: a pure function
of (seed, epoch), so the data position is just (epoch, batch index) and a resumed
run sees exactly the batches an uninterrupted run would. For language models,
`WindowLoader` draws random contiguous windows of a token stream (offsets a pure function
of (seed, epoch, batch)) and `eval_windows` cuts a split into non-overlapping windows, to
batch with `ArrayLoader(shuffle=False)`. Every batch has the same
shape (one compilation): a short last batch is padded and carries `mask` = 0 on
the padding, which the task losses exclude. With several processes, each yields
only its slice of every global batch (`process_index`-th of `process_count`). The
arrays may be `jaxdl.data.records.RecordArray`s (a dataset on disk): a batch reads only
its rows. Batches are built through grain (`jaxdl.data.pipeline`; `loader.pipeline`
sets threads, prefetch and worker processes), which keeps their order.
"""

import dataclasses
from collections.abc import Iterator, Mapping

import numpy as np

from jaxdl.data import pipeline
from jaxdl.errors import UserError

PIPELINE = {"threads": 1, "prefetch": 2, "workers": 0}  # jaxdl.data.pipeline's defaults


@dataclasses.dataclass(frozen=True)
class Position:
    epoch: int
    batch: int  # index of the next batch within the epoch


def _position(loader, step: int) -> dict:
    pos = loader.position(step)
    return {"epoch": int(pos.epoch), "batch": int(pos.batch),
            "batches_per_epoch": int(loader.batches_per_epoch)}


class ArrayLoader:
    """Batches of a dict of equal-length numpy arrays, with a `mask` key added."""

    def __init__(self, arrays: Mapping[str, np.ndarray], batch_size: int, *, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False, process_index: int = 0,
                 process_count: int = 1, pipeline: dict | None = None):
        lengths = {k: len(v) for k, v in arrays.items()}
        if not lengths or len(set(lengths.values())) != 1:
            raise UserError(f"loader arrays must be non-empty and equally long, got {lengths}")
        self.n = next(iter(lengths.values()))
        if self.n == 0:
            raise UserError("the dataset is empty; check the data source or its split")
        if batch_size <= 0 or batch_size % process_count:
            raise UserError(f"batch size {batch_size} must be positive and divisible by the "
                            f"process count {process_count}; change --config.batch_size")
        if drop_last and self.n < batch_size:
            raise UserError(f"{self.n} examples are fewer than one batch of {batch_size}; "
                            "lower --config.batch_size")
        self.arrays = dict(arrays)
        self.batch_size = batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.process_index, self.process_count = process_index, process_count
        # where batches are built: threads, workers, prefetch (jaxdl.data.pipeline)
        self.pipeline = {**PIPELINE, **(pipeline or {})}

    @property
    def batches_per_pass(self) -> int:
        """Batches in one pass over the data (an epoch, unless a subclass says otherwise)."""
        full, rest = divmod(self.n, self.batch_size)
        return full if (self.drop_last or not rest) else full + 1

    @property
    def batches_per_epoch(self) -> int:
        return self.batches_per_pass

    def position(self, step: int) -> Position:
        """Where a run that has taken `step` steps continues."""
        return Position(*divmod(int(step), self.batches_per_epoch))

    def data_position(self, step: int) -> dict:
        """What a checkpoint records of the data after `step` steps: the position and what
        it depends on, so a resume with another batch size, dataset or seed is refused."""
        return {**_position(self, step), "batch_size": self.batch_size, "examples": self.n,
                "seed": self.seed, "shuffle": self.shuffle}

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict]:
        """This process's part of batches `start..` of `epoch` (built through grain)."""
        order = self.order(epoch)
        return pipeline.batches(lambda b: self.batch(order, b), start, self.batches_per_pass,
                                **self.pipeline)

    def batch(self, order: np.ndarray, b: int) -> dict:
        """Batch `b` of a pass in `order`, padded to full size with `mask` = 0 on padding."""
        local = self.batch_size // self.process_count
        lo = self.process_index * local
        idx = order[b * self.batch_size:(b + 1) * self.batch_size]
        mask = np.zeros(self.batch_size, np.float32)
        mask[:len(idx)] = 1.0
        if len(idx) < self.batch_size:  # pad with the first examples, masked out
            idx = np.concatenate([idx, np.resize(order, self.batch_size - len(idx))])
        idx, mask = idx[lo:lo + local], mask[lo:lo + local]
        batch = {k: v[idx] for k, v in self.arrays.items()}
        batch["mask"] = mask
        return batch


class StepLoader(ArrayLoader):
    """An ArrayLoader for step-based training: an "epoch" is `batches` batches.

    Batches run through the data's own shuffled passes (drop_last), so the data position
    stays a pure function of the step and `fit` resumes exactly.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], batch_size: int, batches: int, **kw):
        super().__init__(arrays, batch_size, drop_last=True, **kw)
        self._batches = batches

    @property
    def batches_per_epoch(self) -> int:
        return self._batches

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict]:
        def make(b: int) -> dict:
            data_pass, index = divmod(epoch * self._batches + b, self.batches_per_pass)
            return self.batch(self.order(data_pass), index)

        return pipeline.batches(make, start, self._batches, **self.pipeline)


def _tokens(ids):
    """Token ids as an int32 array, or as they are when on disk (a `TokenArray`, indexed
    per batch)."""
    return ids if getattr(ids, "on_disk", False) else np.asarray(ids, np.int32)


def _check_length(ids: np.ndarray, seq_len: int, what: str) -> None:
    if seq_len < 1:
        raise UserError(f"seq_len must be >= 1, got {seq_len}; set --config.seq_len")
    if len(ids) < seq_len + 1:
        more = ", raise --config.val_fraction" if what.startswith("validation") else ""
        raise UserError(f"the {what} has {len(ids)} tokens, fewer than one window of "
                        f"seq_len + 1 = {seq_len + 1}; use a longer text{more} or lower "
                        "--config.seq_len")


class WindowLoader:
    """Random contiguous windows `tokens` (batch, seq_len + 1) of `ids`, and `mask` (batch,).

    Batch b of epoch e starts its windows at `default_rng([seed, e, b])`-drawn offsets, so
    the data position is a pure function of the step (exact resume). With several
    processes, each yields only its slice of every global batch.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, *,
                 batches_per_epoch: int = 100, seed: int = 0, process_index: int = 0,
                 process_count: int = 1, pipeline: dict | None = None):
        self.ids = _tokens(ids)
        _check_length(self.ids, seq_len, "training text")
        if batch_size <= 0 or batch_size % process_count:
            raise UserError(f"batch size {batch_size} must be positive and divisible by the "
                            f"process count {process_count}; change --config.batch_size")
        if batches_per_epoch < 1:
            raise UserError(f"batches_per_epoch must be >= 1, got {batches_per_epoch}")
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed
        self.batches_per_epoch = batches_per_epoch
        self.process_index, self.process_count = process_index, process_count
        self._offsets = np.arange(seq_len + 1)
        self.pipeline = {**PIPELINE, **(pipeline or {})}

    def position(self, step: int) -> Position:
        return Position(*divmod(int(step), self.batches_per_epoch))

    def data_position(self, step: int) -> dict:
        """As `ArrayLoader.data_position`, for a token stream."""
        return {**_position(self, step), "batch_size": self.batch_size,
                "tokens": len(self.ids), "seq_len": self.seq_len, "seed": self.seed}

    def starts(self, epoch: int, batch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch, batch])
        return rng.integers(0, len(self.ids) - self.seq_len, size=self.batch_size)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict]:
        local = self.batch_size // self.process_count
        lo = self.process_index * local

        def make(b: int) -> dict:
            starts = self.starts(epoch, b)[lo:lo + local]
            return {"tokens": self.ids[starts[:, None] + self._offsets],
                    "mask": np.ones(local, np.float32)}

        return pipeline.batches(make, start, self.batches_per_epoch, **self.pipeline)


def eval_windows(ids: np.ndarray, seq_len: int, max_windows: int = 0) -> np.ndarray:
    """Non-overlapping windows (n, seq_len + 1) from the start of `ids`; at most `max_windows`.

    Window k covers ids[k*seq_len : k*seq_len + seq_len + 1], so every id after the first
    is predicted exactly once (each window from a fresh state).
    """
    ids = _tokens(ids)
    _check_length(ids, seq_len, "validation text")
    n = (len(ids) - 1) // seq_len
    if max_windows:
        n = min(n, max_windows)
    return ids[np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)]
