"""array_record datasets (`jaxdl data prepare`, `--config.dataset=array_record:DIR`) and
the grain pipeline the loaders build their batches through."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxdl import cli
from jaxdl.data import pipeline, prepare, records, sources
from jaxdl.data.image_dataset import ImageDataset, Split
from jaxdl.data.loader import ArrayLoader, StepLoader, WindowLoader
from jaxdl.errors import UserError
from tests.processes import child_report

HERE = Path(__file__).resolve().parent


def _batches(loader, epoch=0, **options):
    loader.pipeline.update(options)
    return list(loader.epoch(epoch))


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
        for x, y in zip(a, b, strict=True))


def test_prepare_writes_mnist_5k_that_reads_back_bitwise_and_batches_the_same(tmp_path, capsys):
    out = tmp_path / "mnist_5k"
    assert cli.main(["data", "prepare", "--source=mnist_5k", "--out", str(out)]) == 0
    assert f"--config.dataset=array_record:{out}" in capsys.readouterr().out
    meta = json.loads((out / "meta.json").read_text())
    assert meta["splits"] == {"train": 4000, "test": 1000} and meta["num_classes"] == 10
    disk = sources.resolve_image_dataset(f"array_record:{out}")
    mem = sources.resolve_image_dataset("mnist_5k")
    assert isinstance(disk.train.images, records.RecordArray)
    assert disk.train.images.shape == mem.train.images.shape == (4000, 28, 28, 1)
    for part in ("train", "test"):
        a, b = getattr(disk, part), getattr(mem, part)
        assert np.array_equal(a.images[:], b.images) and np.array_equal(a.labels, b.labels)
        assert a.class_names == b.class_names
    idx = np.array([3, 0, 3999, -1, 17])
    assert np.array_equal(disk.train.images[idx], mem.train.images[idx])
    assert np.array_equal(disk.train.images[7], mem.train.images[7])
    assert np.array_equal(disk.train.images[10:20:3], mem.train.images[10:20:3])
    disk.train.images.close()  # frees its reader; the next read reopens it
    assert np.array_equal(disk.train.images[idx], mem.train.images[idx])
    # The training loader's batches: the same on disk as in memory (padded last batch too).
    on_disk = ArrayLoader({"image": disk.train.images, "label": disk.train.labels}, 96, seed=3)
    in_mem = ArrayLoader({"image": mem.train.images, "label": mem.train.labels}, 96, seed=3)
    assert _same(_batches(on_disk, 1), _batches(in_mem, 1))
    with pytest.raises(TypeError, match="read on demand"):
        np.asarray(disk.train.images)  # nothing materialises it by accident


def test_prepare_and_load_errors_are_one_line(tmp_path, capsys):
    out = tmp_path / "d"
    assert cli.main(["data", "prepare", "--source=synthetic", "--out", str(out)]) == 0
    assert cli.main(["data", "prepare", "--source=synthetic", "--out", str(out)]) == 2
    assert "already holds a dataset" in capsys.readouterr().err
    assert cli.main(["data", "prepare", "--source=nope", "--out", str(tmp_path / "e")]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    with pytest.raises(UserError, match="no array_record dataset in .*jaxdl data prepare"):
        sources.resolve_image_dataset(f"array_record:{tmp_path / 'missing'}")
    (out / "train" / "image.array_record").write_bytes(b"not a record file")  # damaged
    with pytest.raises(UserError, match=r"has 0 images and 256 labels.*jaxdl data prepare"):
        sources.resolve_image_dataset(f"array_record:{out}")


def test_a_prepared_text_gives_the_language_models_the_same_windows_and_trains(tmp_path):
    from jaxdl import recipes, run
    from jaxdl.config import apply_overrides

    out = tmp_path / "shakespeare"
    assert cli.main(["data", "prepare", "--source=text:tinyshakespeare", "--out", str(out)]) == 0
    recipe = recipes.get("decoder_lm")
    config = recipe.get_config()
    mem = recipe.load_data(config)
    config.text_path = f"array_record:{out}"
    disk = recipe.load_data(config)
    assert isinstance(disk.train_ids, records.TokenArray) and disk.vocab.tokens == mem.vocab.tokens
    assert len(disk.train_ids) == len(mem.train_ids) == 1_003_854
    assert np.array_equal(disk.val_ids[:], mem.val_ids)
    idx = np.array([[0, 4095, 4096], [1_003_853, 12, 8191]])  # across chunk edges
    assert np.array_equal(disk.train_ids[idx], mem.train_ids[idx])
    assert _same(_batches(recipe.train_loader(config, disk), 3),
                 _batches(recipe.train_loader(config, mem), 3))
    with pytest.raises(TypeError, match="read on demand"):
        np.asarray(disk.train_ids)
    tiny = {"num_layers": "1", "dim": "32", "num_heads": "2", "seq_len": "16",
            "batch_size": "8", "num_steps": "3", "batches_per_epoch": "3", "val_windows": "8",
            "eval_batch_size": "8", "sample_tokens": "4", "text_path": f"array_record:{out}"}
    results = run.train(apply_overrides(recipe.get_config(), tiny), tmp_path / "run")
    assert results["step"] == 3 and np.isfinite(results["val_loss"])
    with pytest.raises(UserError, match="holds char-level tokens.*--level word"):
        rnn = recipes.get("rnn_lm")  # a char-level dataset for a word-level run
        rnn.load_data(apply_overrides(rnn.get_config(), {"level": "word",
                                                         "text_path": f"array_record:{out}"}))


def test_the_pipeline_keeps_every_loaders_batches_however_they_are_built():
    rng = np.random.default_rng(0)
    arrays = {"x": rng.standard_normal((50, 3)).astype(np.float32),
              "y": rng.integers(0, 5, 50).astype(np.int32)}
    for make in (lambda: ArrayLoader(arrays, 8, seed=1),
                 lambda: StepLoader(arrays, 8, batches=9, seed=1),
                 lambda: WindowLoader(np.arange(500), 4, 16, batches_per_epoch=7, seed=2)):
        plain = _batches(make(), 2, threads=0)
        assert _same(_batches(make(), 2, threads=4, prefetch=3), plain)
        assert _same(_batches(make(), 2, workers=2), plain)  # grain worker processes
        assert _same(list(make().epoch(2, start=3)), plain[3:])  # a resumed epoch
    assert list(pipeline.batches(lambda b: {"b": b}, 4, 4)) == []


@pytest.mark.slow
def test_a_200k_record_dataset_trains_without_being_loaded_whole(tmp_path):
    """200,000 images of 28x28 (157 MB in memory) on disk; the image classifier's loader and
    train step run 20 steps on them, and the process's peak RSS grows by less than half the
    images' size. What does grow is O(N) but small: the images' reader index (~60 bytes a
    record, 12 MB here) and the labels; measured 5-21 MB on 2 idle cores, 46 MB in CI under
    `pytest -n 2` before the labels' reader was closed before the images' opened."""
    rng = np.random.default_rng(0)

    def part(n):
        return ImageDataset(rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
                            rng.integers(0, 10, n).astype(np.int32), 10, "noise",
                            tuple(map(str, range(10))), "random bytes")

    prepare.write_split(tmp_path / "big", Split(part(200_000), part(1000)), "random bytes")
    r = child_report([HERE / "records_child.py", tmp_path / "big", 20], timeout=300)
    assert r["images"] == 200_000 and r["image_bytes"] == 156_800_000
    assert len(r["losses"]) == 20 and all(np.isfinite(r["losses"]))
    assert r["peak_growth"] < r["image_bytes"] / 2, r["peak_growth"]


def test_a_text_prepared_with_a_tokenizer_gives_its_ids_and_brings_it_to_the_run(tmp_path):
    """`--tokenizer PATH`: the ids equal a run's on the text with `--config.tokenizer`, the
    tokenizer is kept in the dataset and becomes the run's; mismatches are one line."""
    from jaxdl import recipes, run
    from jaxdl.config import apply_overrides
    from jaxdl.data import bpe

    out = tmp_path / "shakespeare_bpe"
    assert cli.main(["data", "prepare", "--source=text:tinyshakespeare", "--tokenizer",
                     str(bpe.EMBEDDED), "--out", str(out)]) == 0
    assert (out / "tokenizer.json").read_bytes() == bpe.EMBEDDED.read_bytes()
    recipe = recipes.get("decoder_lm")
    mem = recipe.load_data(apply_overrides(recipe.get_config(),
                                           {"tokenizer": str(bpe.EMBEDDED)}))
    config = apply_overrides(recipe.get_config(), {"text_path": f"array_record:{out}"})
    disk = recipe.load_data(config)
    assert disk.level == mem.level == "bpe" and len(disk.vocab) == len(mem.vocab) == 512
    assert len(disk.train_ids) == len(mem.train_ids) and len(disk.val_ids) == len(mem.val_ids)
    idx = np.arange(0, len(mem.train_ids), 997)
    assert np.array_equal(disk.train_ids[idx], mem.train_ids[idx])
    assert np.array_equal(disk.val_ids[:], mem.val_ids)
    assert config.tokenizer == str((out / "tokenizer.json").resolve())  # config.json's
    tiny = {"num_layers": "1", "dim": "32", "num_heads": "2", "seq_len": "16",
            "batch_size": "8", "num_steps": "2", "batches_per_epoch": "2", "val_windows": "8",
            "eval_batch_size": "8", "sample_tokens": "4", "text_path": f"array_record:{out}"}
    results = run.train(apply_overrides(recipe.get_config(), tiny), tmp_path / "run")
    assert results["step"] == 2 and results["tokenizer"] == config.tokenizer
    assert json.loads((tmp_path / "run" / "config.json").read_text())["tokenizer"] == (
        config.tokenizer)

    other = bpe.save(bpe.train("the cat sat on the mat\n" * 50, 300), tmp_path / "other")
    with pytest.raises(UserError, match="another tokenizer than --config.tokenizer"):
        recipe.load_data(apply_overrides(recipe.get_config(), {
            "text_path": f"array_record:{out}", "tokenizer": str(other)}))
    with pytest.raises(UserError, match="nope.json does not exist"):
        recipe.load_data(apply_overrides(recipe.get_config(), {
            "text_path": f"array_record:{out}", "tokenizer": str(tmp_path / "nope.json")}))
    with pytest.raises(UserError, match="holds BPE tokens.*asks for word-level"):
        rnn = recipes.get("rnn_lm")
        rnn.load_data(apply_overrides(rnn.get_config(), {"level": "word",
                                                         "text_path": f"array_record:{out}"}))
    chars = tmp_path / "chars"
    assert cli.main(["data", "prepare", "--source=text:tinyshakespeare", "--out",
                     str(chars)]) == 0
    with pytest.raises(UserError, match="holds char-level tokens.*--tokenizer PATH"):
        recipe.load_data(apply_overrides(recipe.get_config(), {
            "text_path": f"array_record:{chars}", "tokenizer": str(bpe.EMBEDDED)}))
    with pytest.raises(UserError, match="--tokenizer tokenizes texts"):
        prepare.prepare("synthetic", tmp_path / "x", tokenizer=bpe.EMBEDDED)
    with pytest.raises(UserError, match="--tokenizer and --level word"):
        prepare.prepare("text:tinyshakespeare", tmp_path / "y", level="word",
                        tokenizer=bpe.EMBEDDED)
