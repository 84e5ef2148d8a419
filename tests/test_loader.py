"""Deterministic, resumable batching: order from (seed, epoch), padded last batch, positions."""

import numpy as np
import pytest

from jaxdl.data.loader import ArrayLoader, Position, StepLoader, WindowLoader
from jaxdl.errors import UserError


def _data(n=10):
    return {"x": np.arange(n, dtype=np.float32)[:, None], "label": np.arange(n, dtype=np.int32)}


def test_every_example_once_per_epoch_with_padding_masked():
    loader = ArrayLoader(_data(10), 4, seed=3)
    batches = list(loader.epoch(0))
    assert loader.batches_per_epoch == 3 and len(batches) == 3
    assert all(b["x"].shape == (4, 1) for b in batches)  # fixed shape: one compilation
    seen = np.concatenate([b["label"][b["mask"] > 0] for b in batches])
    assert sorted(seen.tolist()) == list(range(10))
    assert batches[-1]["mask"].tolist() == [1, 1, 0, 0]


def test_batch_larger_than_the_dataset_is_padded_to_full_size():
    batches = list(ArrayLoader(_data(3), 8).epoch(0))
    assert len(batches) == 1 and batches[0]["x"].shape == (8, 1)
    assert batches[0]["mask"].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]


def test_order_is_a_function_of_seed_and_epoch():
    a, b = ArrayLoader(_data(), 5, seed=1), ArrayLoader(_data(), 5, seed=1)
    np.testing.assert_array_equal(a.order(2), b.order(2))
    assert not np.array_equal(a.order(0), a.order(1))
    assert not np.array_equal(a.order(0), ArrayLoader(_data(), 5, seed=2).order(0))


def test_resume_mid_epoch_continues_with_the_same_batches():
    loader = ArrayLoader(_data(10), 3, seed=0)
    full = [b["label"] for e in range(2) for b in loader.epoch(e)]
    step = 6  # 4 batches per epoch: epoch 1, batch 2
    pos = loader.position(step)
    assert pos == Position(epoch=1, batch=2)
    resumed = [b["label"] for b in loader.epoch(pos.epoch, pos.batch)]
    for x, y in zip(full[step:], resumed, strict=True):
        np.testing.assert_array_equal(x, y)


def test_process_slices_make_up_the_global_batch():
    whole = list(ArrayLoader(_data(8), 4, seed=0).epoch(0))
    parts = [list(ArrayLoader(_data(8), 4, seed=0, process_index=i, process_count=2).epoch(0))
             for i in range(2)]
    for b, (p0, p1) in zip(whole, zip(*parts, strict=True), strict=True):
        np.testing.assert_array_equal(b["label"], np.concatenate([p0["label"], p1["label"]]))


def test_drop_last_and_errors():
    assert ArrayLoader(_data(10), 4, drop_last=True).batches_per_epoch == 2
    with pytest.raises(UserError, match="empty"):
        ArrayLoader({"x": np.zeros((0, 2))}, 4)
    with pytest.raises(UserError, match="divisible"):
        ArrayLoader(_data(), 5, process_count=2)
    with pytest.raises(UserError, match="equally long"):
        ArrayLoader({"x": np.zeros(3), "y": np.zeros(4)}, 2)


def test_step_loader_cycles_through_shuffled_passes():
    loader = StepLoader(_data(10), 4, batches=3, seed=0)  # 2 full batches per pass
    plain = ArrayLoader(_data(10), 4, seed=0, drop_last=True)
    expected = [b["label"] for p in range(3) for b in plain.epoch(p)]
    got = [b["label"] for e in range(2) for b in loader.epoch(e)]
    assert len(got) == 6
    for x, y in zip(expected, got, strict=True):
        np.testing.assert_array_equal(x, y)
    resumed = list(loader.epoch(1, 2))
    np.testing.assert_array_equal(resumed[0]["label"], expected[5])


def test_each_loader_says_what_its_data_position_depends_on():
    """The checkpoint records `data_position(step)` and refuses a resume where any of it
    changed (jaxdl.train.checkpoint.check_data_position)."""
    arrays = {"x": np.zeros((10, 2), np.float32), "label": np.zeros(10, np.int32)}
    got = ArrayLoader(arrays, 4, seed=3).data_position(5)
    assert got == {"epoch": 1, "batch": 2, "batches_per_epoch": 3, "batch_size": 4,
                   "examples": 10, "seed": 3, "shuffle": True}
    ids = np.arange(100, dtype=np.int32)
    got = WindowLoader(ids, 4, 8, batches_per_epoch=5, seed=1).data_position(7)
    assert got == {"epoch": 1, "batch": 2, "batches_per_epoch": 5, "batch_size": 4,
                   "tokens": 100, "seq_len": 8, "seed": 1}
