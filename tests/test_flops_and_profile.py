"""FLOPs, MFU and the profiler: counted right, in results.json, traced where asked."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from jaxdl import recipes
from jaxdl.errors import UserError
from jaxdl.run import train
from jaxdl.train import flops
from jaxdl.train.profile import parse_steps


def test_matmul_flops_count_dots_convolutions_and_loop_trips():
    a, b = jnp.ones((32, 64)), jnp.ones((64, 16))
    assert flops.matmul_flops(lambda a, b: a @ b, a, b) == 2 * 32 * 64 * 16
    batched = jnp.ones((5, 32, 64))
    assert flops.matmul_flops(lambda x: jnp.einsum("bij,jk->bik", x, b), batched) == (
        2 * 5 * 32 * 64 * 16)
    scanned = lambda x: jax.lax.scan(lambda c, xi: (c + (xi @ b).sum(), None), 0.0, x)[0]
    assert flops.matmul_flops(scanned, batched) == 5 * 2 * 32 * 64 * 16  # XLA's: 1 trip
    assert flops.xla_flops(scanned, batched) < 2 * 2 * 32 * 64 * 16
    conv = nn.Conv(8, (3, 3), padding="SAME", use_bias=False)
    x = jnp.ones((2, 10, 10, 4))
    params = conv.init(jax.random.PRNGKey(0), x)
    assert flops.matmul_flops(conv.apply, params, x) == 2 * (2 * 10 * 10 * 8) * (3 * 3 * 4)


def test_a_train_step_costs_forward_plus_two_backward_matmuls():
    """An MLP step: forward 2mkn per layer, backward 2x that, except the input's gradient."""
    m, widths = 8, (5, 16, 4)

    def step(params, x):
        def loss(p):
            h = jnp.tanh(x @ p[0])
            return (h @ p[1]).sum()
        return jax.grad(loss)(params)

    params = [jnp.ones((5, 16)), jnp.ones((16, 4))]
    fwd = [2 * m * k * n for k, n in zip(widths, widths[1:], strict=False)]
    assert flops.matmul_flops(step, params, jnp.ones((m, 5))) == 3 * sum(fwd) - fwd[0]


def test_peaks_are_known_for_the_anchor_accelerators():
    class Dev:
        platform = "gpu"
        device_kind = "NVIDIA H200"
    assert flops.peak_flops(Dev, "bfloat16") == 989e12
    Dev.platform, Dev.device_kind = "tpu", "TPU v5 lite"
    assert flops.peak_flops(Dev, "bfloat16") == 197e12
    Dev.device_kind = "TPU v5p"
    assert flops.peak_flops(Dev, "float32") == 459e12
    Dev.device_kind = "Some New Chip"
    assert flops.peak_flops(Dev, "bfloat16") is None
    assert flops.peak_flops(jax.devices()[0], "float32") > 1e9  # measured on this CPU


@pytest.mark.parametrize("text", ["5", "5:5", "7:3", "a:b", "-1:4"])
def test_bad_profile_steps_are_named(text):
    with pytest.raises(UserError, match=f"'profile_steps' is '{text}'.*START:STOP"):
        parse_steps(text)


def test_a_run_reports_flops_and_mfu_and_writes_the_profile_it_was_asked_for(tmp_path):
    recipe = recipes.get("mlp")
    config = recipe.get_config()
    config.update(epochs=3, profile_steps="40:45")
    results = train(config, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    # digits: 64 inputs -> 64 -> 64 -> 10, batch 32: the step's matmuls, counted by hand.
    fwd = [2 * 32 * k * n for k, n in [(64, 64), (64, 64), (64, 10)]]
    assert saved["model_flops_per_step"] == 3 * sum(fwd) - fwd[0]
    assert saved["flops_per_step"] >= saved["model_flops_per_step"]  # XLA counts more ops
    assert 0 < saved["mfu"] < 1 and saved["peak_flops"] > 0
    assert saved["mfu"] == pytest.approx(results["mfu"])
    traces = list((tmp_path / "profile").rglob("*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 1000
