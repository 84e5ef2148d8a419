"""Config files (`--config=configs/NAME.py`) and the generic runner behind `jaxdl train`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxdl import recipes
from jaxdl.config import load_config_file, parse_args
from jaxdl.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.py"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_file_names_a_recipe_and_documents_its_command(path):
    config = load_config_file(str(path))
    recipe = recipes.get(config.recipe)
    assert set(recipe.get_config().to_dict()) == set(config.to_dict())  # no stray keys
    doc = path.read_text().split('"""')[1]
    assert f"--config=configs/{path.name}" in doc and "Result" in doc


def test_config_file_then_overrides(tmp_path):
    config, workdir = parse_args(["--config=configs/fashion_mnist_cnn.py", "--workdir",
                                  str(tmp_path), "--config.epochs=1"], None, "unused")
    assert (config.recipe, config.dataset, config.epochs) == ("image_classifier",
                                                              "fashion_mnist", 1)
    with pytest.raises(UserError, match="no config given; pass --config=FILE.py"):
        parse_args(["--workdir", str(tmp_path)], None, "unused")
    with pytest.raises(UserError, match="config file .*nope.py not found"):
        parse_args(["--config=configs/nope.py"], None, "unused")
    (tmp_path / "bad.py").write_text("x = 1\n")
    with pytest.raises(UserError, match="has no get_config"):
        parse_args([f"--config={tmp_path / 'bad.py'}"], None, "unused")
    with pytest.raises(UserError, match="--workdir is empty"):
        parse_args(["--config=configs/dates_small.py", "--workdir="], None, "unused")


def test_jaxdl_train_runs_a_config_file(tmp_path):
    workdir = tmp_path / "dates"
    proc = subprocess.run(
        [sys.executable, "-m", "jaxdl.cli", "train", "--config=configs/dates_small.py",
         "--workdir", str(workdir), "--config.num_train=300", "--config.num_test=40",
         "--config.num_steps=6", "--config.batches_per_epoch=3", "--config.warmup_steps=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((workdir / "results.json").read_text())
    assert results["recipe"] == "seq2seq" and results["step"] == 6
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["dim"] == 32 and saved["num_train"] == 300


def test_jaxdl_train_a_recipes_default_config(tmp_path):
    from jaxdl import run

    with pytest.raises(SystemExit) as e:  # a recipe that does not exist: one line, exit 2
        run.main(["--config.recipe=nope", "--workdir", str(tmp_path / "x")])
    assert e.value.code == 2
    results = run.main(["--config.recipe=mlp", "--workdir", str(tmp_path / "mlp"),
                        "--config.epochs=1", "--config.problem=breast_cancer"])
    assert results["recipe"] == "mlp" and results["problem"] == "breast_cancer"


def test_grad_accum_steps_is_a_config_key_of_every_recipe(tmp_path):
    """Through the runner: K=4 microbatches train the MLP as the whole batches do."""
    from jaxdl import run

    for name in recipes.RECIPES:
        assert recipes.get(name).get_config().grad_accum_steps == 1
    base = ["--config.recipe=mlp", "--config.epochs=2", "--config.problem=breast_cancer"]
    plain = run.main([*base, "--workdir", str(tmp_path / "k1")])
    accum = run.main([*base, "--workdir", str(tmp_path / "k4"), "--config.grad_accum_steps=4"])
    assert accum["test_loss"] == pytest.approx(plain["test_loss"], rel=1e-5)
    with pytest.raises(SystemExit):  # batch 32 is not 3 equal microbatches: one line, exit 2
        run.main([*base, "--workdir", str(tmp_path / "k3"), "--config.grad_accum_steps=3"])
    assert not (tmp_path / "k3" / "config.json").exists()  # refused before any work
