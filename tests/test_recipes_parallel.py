"""Every family trains data-parallel through the one runner: on 4 fake CPU devices the
per-step losses and the final evaluation (run on the mesh too) equal one device's within
1e-5 (float summation order differs, nothing else: the step's randomness is
`fold_in(rng, step)` under jit, the same however the batch is split)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
FAMILIES = ("mlp", "image_classifier", "rnn_lm", "decoder_lm", "seq2seq", "text2img")
TOL = 1e-5


def _report(out: Path) -> dict:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(HERE / "recipes_parallel_child.py"), str(out)],
                          env=env, capture_output=True, text=True, timeout=900,
                          cwd=HERE.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT "))
    return json.loads(line[len("REPORT "):])


@pytest.mark.slow
def test_four_devices_give_one_devices_losses_and_metrics(tmp_path):
    """One test over every family (one child, which pytest-xdist must not run twice)."""
    report = _report(tmp_path)
    for family in FAMILIES:
        one, four = report[f"{family}/1"], report[f"{family}/4"]
        assert one["num_devices"] == 1 and four["num_devices"] == 4, family
        assert len(one["losses"]) >= 4 and len(one["losses"]) == len(four["losses"]), family
        np.testing.assert_allclose(four["losses"], one["losses"], rtol=TOL, atol=TOL,
                                   err_msg=family)
        assert one["eval"] and set(one["eval"]) == set(four["eval"]), family
        for key, value in one["eval"].items():
            assert four["eval"][key] == pytest.approx(value, rel=TOL, abs=TOL), (family, key)
