"""Prompts and their tokens, the text-to-image experiment end to end on a tiny config, and
`jaxdl sample` from the workdir it leaves (embedded mnist_5k only)."""

import json
import shutil

import jax
import numpy as np
import pytest

from experiments import diffusion_text2img
from jaxdl import cli, run
from jaxdl.config import apply_overrides
from jaxdl.data import prompts
from jaxdl.data.vocab import BOS_ID
from jaxdl.errors import UserError
from jaxdl.evaluators import fid
from jaxdl.recipes import text2img
from tests.workdir_checks import check_event_files, check_info_and_eval, check_png


def test_prompt_templates_split_and_fit():
    for name in ("fashion", "digits"):
        train, held = prompts.prompts(name, "train"), prompts.prompts(name, "held_out")
        assert len(train) == len(held) == 10
        assert not {p for row in train for p in row} & {p for row in held for p in row}
        tok = prompts.PromptTokenizer(name, "char", 48)
        table = tok.table("held_out")
        assert table.shape == (10, len(held[0]), 48) and (table[..., 0] == BOS_ID).all()
        assert tok.decode(table[3, 1]) == held[3][1]
    assert "an ankle boot" in prompts.prompts("fashion", "train")[9]
    assert "the number 7 written by hand" in prompts.prompts("digits", "held_out")[7]
    assert prompts.prompt_set_for("fashion_mnist") == "fashion"
    assert prompts.prompt_set_for("mnist_5k") == "digits"
    assert max(len(p) for row in prompts.prompts("fashion") for p in row) < 64


def test_shift_prompts_keeps_bos_and_words_in_order():
    tok = prompts.PromptTokenizer("fashion", "char", 40)
    tokens = tok.encode_batch(["an ankle boot", "a bag", ""] * 20)
    moved = np.asarray(prompts.shift_prompts(jax.numpy.asarray(tokens), jax.random.PRNGKey(0)))
    assert (moved[:, 0] == BOS_ID).all()
    assert [tok.decode(m) for m in moved] == [tok.decode(t) for t in tokens]
    first = (moved[:, 1:] != 0).argmax(1)
    assert len(set(first[0::3].tolist())) > 5 and first[0::3].max() <= 40 - 1 - 13


def test_tokenizer_empty_prompt_and_bad_prompts():
    tok = prompts.PromptTokenizer("fashion", "char", 16)
    empty = tok.encode("")
    assert empty[0] == BOS_ID and not empty[1:].any()  # unconditional: BOS only
    np.testing.assert_array_equal(tok.encode("  An  Ankle BOOT "), tok.encode("an ankle boot"))
    with pytest.raises(UserError, match=r"characters '!é'.*use only letters, digits"):
        tok.encode("a café!")
    with pytest.raises(UserError, match="at most 15; shorten"):
        tok.encode("a photo of an ankle boot")
    with pytest.raises(UserError, match="must be a string"):
        tok.encode(None)
    with pytest.raises(UserError, match="char or word"):
        prompts.PromptTokenizer("fashion", "byte")
    words = prompts.PromptTokenizer("fashion", "word", 16)
    unk = words.encode("an ankle hat")  # unseen word -> <unk>, not an error
    assert unk[3] == prompts.OFFSET and words.decode(unk) == "an ankle <unk>"


TINY = {"dataset": "mnist_5k", "image_size": "28", "channels": "(8, 8)",
        "attention_levels": "()", "cross_attention_levels": "(1,)", "num_heads": "2",
        "groups": "4", "text_layers": "1", "text_dim": "16", "text_heads": "2",
        "num_timesteps": "50", "batch_size": "16", "num_steps": "12", "eval_every": "12",
        "warmup_steps": "2", "eval_steps": "3", "grid_per_class": "2", "fid_samples": "20",
        "classifier_epochs": "1", "test_loss_images": "0"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("t2i")
    config = apply_overrides(diffusion_text2img.get_config(), TINY)
    diffusion_text2img.main(config, workdir)
    return workdir


def test_tiny_run_writes_results_and_grid(tiny_run):
    saved = json.loads((tiny_run / "results.json").read_text())
    assert 0.0 <= saved["prompt_accuracy"] <= 1.0 and saved["classifier_fid"] >= 0.0
    assert saved["fid_samples"] == 20 and saved["num_steps"] == 12
    assert set(saved["prompt_accuracy_per_class"]) == set(prompts.DIGIT_WORDS)
    check_png(tiny_run / "samples.png", min_width=16, min_height=16)
    assert json.loads((tiny_run / "config.json").read_text())["dataset"] == "mnist_5k"


def test_workdir_serves_info_eval_and_event_files(tiny_run, capsys):
    results = check_info_and_eval(tiny_run, capsys, "text2img")
    assert [e["step"] for e in results["evaluations"]] == [12]
    events = check_event_files(tiny_run, ("train/loss", "grid/prompt_accuracy",
                                          "eval/prompt_accuracy"))
    assert "samples" in events.Tags()["images"]


def test_resumed_run_keeps_earlier_evaluations_and_evaluates_only_new_steps(tiny_run, tmp_path):
    workdir = tmp_path / "resumed"
    shutil.copytree(tiny_run, workdir)
    config = apply_overrides(diffusion_text2img.get_config(), {**TINY, "num_steps": "24"})
    results = diffusion_text2img.main(config, workdir)
    assert [e["step"] for e in results["evaluations"]] == [12, 24]
    assert results["num_steps"] == 24


def test_guidance_zero_equals_unconditional_on_the_trained_model(tiny_run):
    r = run.load(tiny_run)
    assert r.step == 12
    tok, params = r.task.extra["tokenizer"], r.state.ema_params
    fn = r.recipe.sampler(r.config, r.task)
    prompt = np.repeat(tok.encode("the number 7 written by hand")[None], 4, 0)
    empty = np.repeat(tok.empty[None], 4, 0)
    rng = jax.random.PRNGKey(5)
    w0 = text2img.generate(fn, params, prompt, rng, 0.0, batch_size=4)
    unconditional = text2img.generate(fn, params, empty, rng, 1.0, batch_size=4)
    np.testing.assert_allclose(w0, unconditional, atol=1e-5)
    assert w0.shape == (4, 28, 28, 1) and 0.0 <= w0.min() and w0.max() <= 1.0


def test_cli_sample_writes_png_and_rejects_bad_prompts(tiny_run, tmp_path, capsys):
    out = tmp_path / "seven.png"
    argv = ["sample", "--workdir", str(tiny_run), "--prompt", "a handwritten 7", "--num", "4",
            "--out", str(out), "--steps", "2"]
    assert cli.main(argv) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote 4 samples" in capsys.readouterr().out
    assert cli.main([*argv[:4], "seven " * 70, *argv[5:]]) == 2  # word level (the default)
    err = capsys.readouterr().err
    assert "has 70 word tokens" in err and "shorten the prompt" in err
    assert cli.main(["sample", "--workdir", str(tmp_path), "--num", "2"]) == 2
    assert "config.json not found" in capsys.readouterr().err


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20_000, 3))
    b = rng.normal(size=(20_000, 3)) * 2.0 + 1.0  # N(1, 4 I): 3 * 1 + 3 * (1 + 4 - 2 * 2)
    assert fid.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert fid.frechet_distance(a, b) == pytest.approx(6.0, rel=0.03)
