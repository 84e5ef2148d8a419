"""benchmarks/lm_sweep.py and benchmarks/lm_race.py stay runnable: a sweep row calibrated
to a tiny wall budget, and the race's jaxdl side with its curve of validation loss against
training seconds (from `train/seconds` in metrics.jsonl), its table and its figure. The
PyTorch peer needs torch, which CI does not install; `make bench` runs it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import lm_race

ROOT = Path(__file__).resolve().parent.parent
TINY = {"num_layers": 1, "dim": 32, "num_heads": 2, "seq_len": 16, "batch_size": 8,
        "eval_batch_size": 512, "val_windows": 64}


@pytest.mark.slow
def test_a_sweep_row_fits_its_budget_and_reports_its_loss(tmp_path):
    out = tmp_path / "sweep.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.lm_sweep", "--budget", "3",
                           "--rows", "", "--row", f"tiny={json.dumps(TINY)}",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())["rows"]["tiny"]
    assert "error" not in r, r
    assert 1.0 < r["val_loss"] < 4.5 and r["steps"] >= 10
    # the steps were sized from the calibrated step time to the 3 s budget
    assert r["steps"] == max(int(3 / (r["calibrated_step_ms"] / 1000)), 10)
    assert "| tiny | num_layers=1" in proc.stdout
    assert "| row | overrides | val loss |" in proc.stdout


@pytest.mark.slow
def test_the_race_jaxdl_side_curve_table_and_figure(tmp_path):
    overrides = [f"--config.{k}={v}" for k, v in TINY.items()] + [
        "--config.num_steps=100", "--config.batches_per_epoch=50", "--config.sample_tokens=5"]
    j = lm_race.jaxdl_run(0, tmp_path / "run", overrides)
    assert j["steps"] == 100 and 1.0 < j["val_loss"] < 4.5
    seconds = [s for s, _ in j["curve"]]
    assert len(j["curve"]) == 2 and seconds == sorted(seconds) and seconds[0] > 0  # 50, 100
    assert j["curve"][-1] == (j["train_seconds"], j["val_loss"])
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert j["train_seconds"] < results["train_seconds"]  # the evaluations taken out
    assert j["tokens_per_s"] == pytest.approx(100 * 8 * 16 / j["train_seconds"])
    peer = {"val_loss": 1.9, "train_seconds": 10.0, "wall_seconds": 12.0, "tokens_per_s": 1e4,
            "curve": [(5.0, 2.2), (10.0, 1.9)]}
    seeds = {0: {"peer": peer, "jaxdl": j}}
    text = lm_race.table(seeds)
    assert "| 0 | nanoGPT recipe, PyTorch | 1.9000 | 10 | 12 | 10,000 |" in text
    assert f"| mean | jaxdl | {j['val_loss']:.4f} ± 0.0000 |" in text
    lm_race.plot(seeds, str(tmp_path / "race.png"))
    assert (tmp_path / "race.png").read_bytes()[:4] == b"\x89PNG"
