"""benchmarks/accelerator.py stays runnable: its LM and generation workers at --quick shapes
on the CPU (the GPU run is the same code at full shapes; the PyTorch side needs torch, not
in CI; the CNN worker runs in `make bench`'s precision rows). benchmarks/gpu_race.py: its
jaxdl side at --quick shapes."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_accelerator_benchmark_runs_at_quick_shapes_and_writes_its_figures(tmp_path):
    sides = "jaxdl,torch" if importlib.util.find_spec("torch") else "jaxdl"
    out = tmp_path / "acc.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.accelerator", "--quick",
                           "--cases", "lm,generate", "--sides", sides, "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(out.read_text())
    lm, gen = got["lm"]["jaxdl"], got["generate"]["jaxdl"]
    assert "error" not in lm and lm["tokens_per_s"] > 0 and 0 < lm["mfu"] < 1, lm
    assert lm["model_flops_per_step"] > 0 and lm["batch"] == 4
    assert set(lm["variants"]) == {"plain_loss", "chunked_loss"}  # + GPU candidates on GPUs
    assert 0 < lm["mfu_6n"] < 1 and lm["profile"]["ops"] and lm["profile"]["total_ms"] > 0
    for batch in ("batch1", "batch4"):
        assert gen[batch]["tokens_per_s"] > 0, gen
        assert gen[batch]["cache_copies"] == 0 and gen[batch]["cache_updates"] > 0, gen
    assert got["device"]["platform"] == "cpu" and "table" in got
    assert "| GPT-2 small, nanoGPT architecture, bf16 train (tokens/s) |" in proc.stdout
    assert "worker wall times: lm/jaxdl" in proc.stdout


def test_jaxdl_trains_without_tensorflow_datasets(tmp_path):
    """The GPU machine has no tensorflow-datasets: it is imported only for a `tfds:` source."""
    code = ("import sys; sys.modules['tensorflow_datasets'] = None  # any import now fails\n"
            "from jaxdl import cli\n"
            f"cli.main(['train', '--config.recipe=mlp', '--config.epochs=1', '--workdir', "
            f"{str(tmp_path / 'run')!r}])\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["recipe"] == "mlp"


@pytest.mark.slow
def test_the_gpu_race_runs_its_jaxdl_sides_at_quick_shapes(tmp_path):
    """jaxdl's recipe config through the runner, its curve read back from the workdir (the
    nanoGPT config takes the same path; both configs load in tests/test_configs.py)."""
    out = tmp_path / "race.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_race", "--quick", "--sides",
                           "jaxdl_recipe", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(out.read_text())
    r = got["jaxdl_recipe"]
    assert "error" not in r, r
    assert [step for _, step, _ in r["curve"]] == [20, 40]  # evaluations at 20 and 40
    assert r["val_loss"] < 4.2 and 0 < r["train_seconds"] < r["wall_seconds"]
    assert "| jaxdl's own recipe |" in got["table"] and "goal_met" not in got
