"""Command-line overrides and the one-line error contract of experiments."""

import subprocess
import sys

import ml_collections
import pytest

from jaxdl.config import apply_overrides, parse_args
from jaxdl.errors import UserError


def _cfg():
    c = ml_collections.ConfigDict()
    c.lr = 1e-3
    c.epochs = 5
    c.name = "mnist"
    c.sizes = (1, 2)
    c.flag = True
    c.model = ml_collections.ConfigDict({"width": 8})
    return c


def test_overrides_parse_literals_and_nested_keys(tmp_path):
    cfg, workdir = parse_args(["--workdir", str(tmp_path), "--config.lr=0.5", "--config.epochs",
                               "2", "--config.name=1", "--config.sizes=(3,4)",
                               "--config.flag=False", "--config.model.width=16"], _cfg, "x")
    assert (cfg.lr, cfg.epochs, cfg.name, cfg.sizes, cfg.flag) == (0.5, 2, "1", (3, 4), False)
    assert cfg.model.width == 16 and workdir == tmp_path


def test_unknown_key_and_bad_type_are_user_errors():
    with pytest.raises(UserError, match="unknown config key 'lrr'.*known keys: epochs"):
        apply_overrides(_cfg(), {"lrr": "1"})
    with pytest.raises(UserError, match="expects an int"):
        apply_overrides(_cfg(), {"epochs": "'five'"})
    with pytest.raises(UserError, match="unrecognised argument"):
        parse_args(["--epochs=3"], _cfg, "x")


def _run(*args):
    return subprocess.run([sys.executable, "-m", "experiments.cnn_mnist", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, needle", [
    (["--config.epoch=3"], "unknown config key 'epoch'"),
    (["--config.dataset=imagenet"], "unknown dataset 'imagenet'"),
])
def test_cli_errors_are_one_line_exit_2(tmp_path, args, needle):
    proc = _run("--workdir", str(tmp_path / "w"), *args)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_config_json_is_written_only_once_the_config_is_checked(tmp_path):
    proc = _run("--workdir", str(tmp_path / "w"), "--config.dataset=nope")
    assert proc.returncode == 2 and "unknown dataset 'nope'" in proc.stderr
    assert not (tmp_path / "w" / "config.json").exists()  # a refused run describes nothing
