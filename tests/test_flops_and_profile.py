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


def _decoder_step_flops(model, counting: bool = True):
    """(matmul FLOPs of a batch-4 train step, the abstract state); `counting=False`: the
    step as it runs, remat's recomputation included."""
    from jaxdl.tasks import language
    from jaxdl.train import create_train_state, make_optimizer, make_train_step

    tokens = jnp.zeros((4, model.max_len + 1), jnp.int32)
    run = flops.counting_model(model) if counting else model
    state = jax.eval_shape(lambda: create_train_state(
        run, make_optimizer("adamw", 1e-3), jax.random.PRNGKey(0), tokens[:1, :-1]))
    step = make_train_step(language.next_token_loss, run)
    return flops.matmul_flops(step, state, {"tokens": tokens}), state


def test_counted_flops_ignore_the_kernel_and_remat_and_match_nanogpts_formula():
    """A GPT step's count is the model's arithmetic: the same with remat and a fused
    attention kernel asked for (counting_model traces XLA's formula, no recomputation;
    without it remat's recomputed forward was counted), and nanoGPT's 6N + 12 L H Q T per
    token exactly, with N the matrices' parameters."""
    from jaxdl.nn.transformer import DecoderLM

    plain = DecoderLM(512, num_layers=2, num_heads=4, dim=64, max_len=32)
    fused = plain.clone(remat="full", attention_impl="cudnn")
    assert flops.counting_model(fused) == plain.clone(attention_impl="xla")
    counted, state = _decoder_step_flops(plain)
    assert _decoder_step_flops(fused)[0] == counted
    with_remat = _decoder_step_flops(plain.clone(remat="full"), counting=False)[0]
    assert with_remat > 1.1 * counted  # the recomputed blocks (measured 1.18x), dropped
    # N of the matrices (the head tied to the embedding), without the position table;
    # nanoGPT's N also holds the norms' gains and the biases, which do no matmul (+1.3%).
    kernels = [x for path, x in jax.tree_util.tree_leaves_with_path(state.params)
               if jax.tree_util.keystr(path).endswith(("kernel']", "embedding']"))]
    n = sum(x.size for x in kernels)
    per_token = flops.flops_per_token_6n(n, 2, 4, 16, 32)
    assert counted / (4 * 32) == pytest.approx(per_token, rel=1e-9)


def test_counting_model_reaches_nested_models():
    from jaxdl.recipes.text2img import text_to_image_model

    config = recipes.get("text2img").get_config()
    model = text_to_image_model(config, 100)
    model = model.clone(unet=model.unet.clone(remat="block", attention_impl="cudnn"))
    counted = flops.counting_model(model)
    assert counted.unet.remat == "none" and counted.unet.attention_impl == "xla"
