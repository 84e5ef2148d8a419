"""Every family trains data-parallel through the one runner: on 4 fake CPU devices the
per-step losses (1e-4 absolute, see LOSS_ATOL) and the final evaluation (run on the mesh
too, 1e-5) equal one device's (float summation order differs, nothing else: the step's randomness is
`fold_in(rng, step)` under jit, the same however the batch is split)."""

from pathlib import Path

import numpy as np
import pytest

from tests.processes import child_report

HERE = Path(__file__).resolve().parent
FAMILIES = ("mlp", "image_classifier", "rnn_lm", "decoder_lm", "seq2seq", "text2img")
TOL = 1e-5
# Per-step losses: float32 reordering differences grow as a loss falls 100x in 8 steps (the
# synthetic images' 2.30 -> 0.025 differed by 1.2e-5 at the end on an AVX2 EPYC), so
# absolute 1e-4, 4e-5 of the first loss.
LOSS_ATOL = 1e-4


def _report(out: Path, family: str) -> dict:
    return child_report([HERE / "recipes_parallel_child.py", out, family], devices=4)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_four_devices_give_one_devices_losses_and_metrics(tmp_path, family):
    """One child per family (its own process: the device count is fixed at JAX's start), so
    pytest-xdist spreads the families over its workers."""
    report = _report(tmp_path, family)
    assert sorted(report) == [f"{family}/1", f"{family}/4"], sorted(report)
    one, four = report[f"{family}/1"], report[f"{family}/4"]
    assert one["num_devices"] == 1 and four["num_devices"] == 4, family
    assert len(one["losses"]) >= 4 and len(one["losses"]) == len(four["losses"]), family
    np.testing.assert_allclose(four["losses"], one["losses"], rtol=TOL, atol=LOSS_ATOL,
                               err_msg=family)
    assert one["eval"] and set(one["eval"]) == set(four["eval"]), family
    for key, value in one["eval"].items():
        assert four["eval"][key] == pytest.approx(value, rel=TOL, abs=TOL), (family, key)
