"""GPT-2 checkpoints in the Hugging Face layout, in and out, without torch: the golden
directory (tests/golden_hf_gpt2.py: a random GPT2LMHeadModel saved by `save_pretrained`)
imports into DecoderLM with transformers' logits; an export reads back bitwise, with the
golden's tensor names, shapes and dtypes; bad input is one line before any work."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import safe_open

from jaxdl import pretrained, recipes
from jaxdl.errors import UserError
from jaxdl.recipes.decoder_lm import build_model
from tests.golden_hf_gpt2 import GOLDEN, LOGITS

ROOT = Path(__file__).resolve().parents[1]
# Measured gap to transformers' float32 logits (2 layers of 64, logits up to 0.48): 1.8e-7
# on a 2-core Intel Xeon (AVX-512), 2026-12-06; the bound is 1e-6 (the issue asks 1e-5).
LOGITS_ATOL = 1e-6


def _model(options):
    config = recipes.get("decoder_lm").get_config()
    config.update({k: v for k, v in options.items() if k in config})
    config.seq_len = options["max_positions"]
    return build_model(config, options["vocab_size"]), config


def _tensors(directory: Path) -> dict:
    with safe_open(str(directory / "model.safetensors"), "np") as f:
        return {k: (f.get_slice(k).get_shape(), f.get_slice(k).get_dtype()) for k in f.keys()}


def test_the_golden_gpt2_gives_transformers_logits():
    got = pretrained.read_gpt2(f"hf:{GOLDEN}")
    assert got.options["mlp"] == "gelu_tanh" and got.options["num_layers"] == 2
    model, _ = _model(got.options)
    golden = np.load(LOGITS)
    logits = model.apply({"params": jax.tree.map(jnp.asarray, got.params)},
                         jnp.asarray(golden["tokens"], jnp.int32))
    np.testing.assert_allclose(np.asarray(logits), golden["logits"], rtol=0,
                               atol=LOGITS_ATOL)


def test_export_then_import_is_bitwise_with_the_golden_names_shapes_and_dtypes(tmp_path):
    got = pretrained.read_gpt2(f"hf:{GOLDEN}")
    _, config = _model(got.options)
    pretrained.write_gpt2(tmp_path / "out", config, got.params)
    back = pretrained.read_gpt2(f"hf:{tmp_path / 'out'}")
    assert back.options == got.options
    for a, b in zip(jax.tree.leaves(back.params), jax.tree.leaves(got.params), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert _tensors(tmp_path / "out") == _tensors(GOLDEN)


def _golden_copy(tmp_path: Path) -> Path:
    out = tmp_path / "ckpt"
    shutil.copytree(GOLDEN, out)
    return out


@pytest.mark.parametrize("damage, message", [
    ("no_config", "has no config.json; a Hugging Face checkpoint directory has both"),
    ("no_weights", "has no model.safetensors"),
    ("llama", "is a 'llama' checkpoint; jaxdl imports GPT-2 (model_type 'gpt2') only"),
    ("tokenizer_size", "has 10 tokens and the weights 300: a tokenizer of another model"),
    ("not_a_tokenizer", "is not a Hugging Face tokenizer"),
    ("untied", "tie_word_embeddings is false"),
])
def test_bad_checkpoints_are_one_line(tmp_path, damage, message):
    ckpt = _golden_copy(tmp_path)
    config = json.loads((ckpt / "config.json").read_text())
    if damage == "no_config":
        (ckpt / "config.json").unlink()
    elif damage == "no_weights":
        (ckpt / "model.safetensors").unlink()
    elif damage in ("llama", "untied"):
        config.update(model_type="llama") if damage == "llama" else config.update(
            tie_word_embeddings=False)
        (ckpt / "config.json").write_text(json.dumps(config))
    elif damage == "tokenizer_size":
        from tokenizers import Tokenizer, models

        Tokenizer(models.WordLevel({f"t{i}": i for i in range(10)}, unk_token="t0")).save(
            str(ckpt / "tokenizer.json"))
    else:
        (ckpt / "tokenizer.json").write_text('{"not": "a tokenizer"}')
    with pytest.raises(UserError, match=re.escape(message)) as err:
        pretrained.read_gpt2(f"hf:{ckpt}")
    assert "\n" not in str(err.value)


def _jaxdl(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "jaxdl.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


TINY = ["--config.num_layers=2", "--config.dim=32", "--config.num_heads=2",
        "--config.seq_len=16", "--config.batch_size=8", "--config.num_steps=2",
        "--config.batches_per_epoch=2", "--config.warmup_steps=1", "--config.val_windows=8",
        "--config.eval_batch_size=8", "--config.sample_tokens=2", "--config.log_every=1"]


@pytest.mark.slow
def test_jaxdl_export_writes_a_trained_run_and_refuses_what_gpt2_cannot_hold(tmp_path):
    run_dir = tmp_path / "nanogpt"
    trained = _jaxdl("train", "--config=configs/nanogpt_shakespeare_char.py", "--workdir",
                     run_dir, *TINY)
    assert trained.returncode == 0, trained.stderr[-2000:]
    out = _jaxdl("export", "--workdir", run_dir, "--format", "hf", "--out", tmp_path / "hf")
    assert out.returncode == 0 and "Wrote" in out.stdout, out.stderr[-2000:]
    from jaxdl import run

    state = run.load(run_dir).state
    back = pretrained.read_gpt2(f"hf:{tmp_path / 'hf'}")
    assert back.options["mlp"] == "gelu" and back.options["vocab_size"] == 65
    # nanoGPT's recipe has no biases: GPT-2 with zero biases, every other tensor bitwise.
    ours = dict(jax.tree_util.tree_flatten_with_path(state.params)[0])
    for path, value in jax.tree_util.tree_flatten_with_path(back.params)[0]:
        want = np.asarray(ours[path]) if path in ours else np.zeros_like(value)
        assert path in ours or path[-1].key == "bias", path
        assert np.array_equal(value, want), path
    assert len(ours) == 3 + 2 * 8 and not any(p[-1].key == "bias" for p in ours)
    again = _jaxdl("export", "--workdir", run_dir, "--out", tmp_path / "hf")
    assert again.returncode == 2 and "already holds a checkpoint" in again.stderr
    default = tmp_path / "default"  # jaxdl's own recipe: rotary positions, RMSNorm, ...
    (default).mkdir()
    config = json.loads((run_dir / "config.json").read_text())
    config.update(positional="rotary")
    (default / "config.json").write_text(json.dumps(config))
    refused = _jaxdl("export", "--workdir", default, "--out", tmp_path / "hf2")
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert refused.stderr.strip().count("\n") == 0
    assert "cannot express positional='rotary'" in refused.stderr, refused.stderr
    assert not (tmp_path / "hf2").exists()


def _pretrained_dir(root: Path, tokenizer=True) -> Path:
    """A GPT-2 directory of a random 2 x 32 model on the shipped 512-token BPE tokenizer
    (what a user downloads: weights, config.json, tokenizer.json)."""
    from jaxdl.data import bpe

    config = recipes.get("decoder_lm").nanogpt_config()
    config.update(num_layers=2, dim=32, num_heads=2, seq_len=64, use_bias=True,
                  mlp="gelu_tanh")
    model = build_model(config, 512)
    params = model.init(jax.random.PRNGKey(7), jnp.zeros((1, 64), jnp.int32))["params"]
    params = jax.tree.map(np.asarray, jax.device_get(__import__("flax").linen.unbox(params)))
    out = root / "gpt2_tiny"
    pretrained.write_gpt2(out, config, params, tokenizer=bpe.EMBEDDED if tokenizer else None)
    return out


def _init_from(directory: Path, **overrides):
    recipe = recipes.get("decoder_lm")
    config = recipe.get_config()
    config.update({"init_from": f"hf:{directory}", "seq_len": 32, **overrides})
    recipe.validate(config)
    return recipe, config


def test_init_from_takes_the_checkpoints_shape_tokenizer_and_params(tmp_path):
    ckpt = _pretrained_dir(tmp_path)
    recipe, config = _init_from(ckpt)
    data = recipe.load_data(config)
    assert (config.num_layers, config.dim, config.positional, config.mlp, config.use_bias,
            config.tokenizer) == (2, 32, "learned", "gelu_tanh", True,
                                  str((ckpt / "tokenizer.json").resolve()))
    state = recipe.build(config, data).init_state(0)
    want = pretrained.read_gpt2(f"hf:{ckpt}").params
    want["pos"]["table"] = want["pos"]["table"][:32]  # cropped to seq_len, as nanoGPT does
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(want), strict=True):
        assert np.array_equal(np.asarray(a), b)


@pytest.mark.parametrize("overrides, message", [
    ({"num_layers": 6}, "--config.num_layers=6 contradicts the checkpoint"),
    ({"positional": "sinusoidal"}, "--config.positional='sinusoidal' contradicts"),
    ({"seq_len": 128}, "--config.seq_len=128 is longer than the checkpoint's 64 positions"),
])
def test_init_from_with_a_contradicting_shape_names_the_key(tmp_path, overrides, message):
    recipe, config = _init_from(_pretrained_dir(tmp_path), **overrides)
    with pytest.raises(UserError, match=re.escape(message)):
        recipe.load_data(config)


@pytest.mark.parametrize("fsdp, tensor, dtype", [(4, 1, "float32"), (2, 2, "bfloat16")])
def test_init_from_starts_every_mesh_and_dtype_from_the_checkpoint(tmp_path, fsdp, tensor,
                                                                   dtype):
    """The runner's first state from a GPT-2 directory on 4 devices: the checkpoint's params
    bitwise (float32 masters under a bfloat16 compute dtype), split as the mesh asks (the
    token table, 512 x 32: its width along fsdp, its rows along tensor)."""
    from tests.processes import cpu_env

    ckpt = _pretrained_dir(tmp_path)
    r = subprocess.run([sys.executable, "-m", "tests.pretrained_child", str(ckpt), str(fsdp),
                        str(tensor), dtype], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env=cpu_env(4))
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got == {"same": True, "like": True, "dtypes": ["float32"], "compute": dtype,
                   "largest": "['embed']['embedding']", "shape": [512, 32],
                   "shard": [512 // tensor, 32 // fsdp], "devices": 4}, got


def test_a_run_from_a_checkpoint_reports_the_checkpoints_own_val_loss(tmp_path):
    """A fine-tune's before and after from one run: `init_val_loss` is the checkpoint's loss
    on the run's validation windows (computed here from the directory alone), and training
    moves `val_loss` away from it."""
    import optax

    from jaxdl import run
    from jaxdl.data.loader import eval_windows

    ckpt = _pretrained_dir(tmp_path)
    recipe, config = _init_from(ckpt, batch_size=8, num_steps=3, batches_per_epoch=3,
                                warmup_steps=1, val_windows=8, eval_batch_size=8,
                                sample_tokens=4, verbose=False)
    r = run.train(config, tmp_path / "run")
    pre = pretrained.read_gpt2(f"hf:{ckpt}")
    model, _ = _model({**pre.options, "max_positions": 32})
    pre.params["pos"]["table"] = pre.params["pos"]["table"][:32]
    data = recipe.load_data(config)
    windows = np.asarray(eval_windows(data.val_ids, 32, 8))
    logits = model.apply({"params": pre.params}, jnp.asarray(windows[:, :-1]))
    want = float(optax.softmax_cross_entropy_with_integer_labels(logits, windows[:, 1:]).mean())
    # measured: equal (0.0, the same float32 program on a 2-core AMD EPYC, 2026-12-06); the
    # 3 steps lower the loss by 0.13 nats (5.27 -> 5.16 bits/character)
    assert abs(r["init_val_loss"] - want) < 1e-6, (r["init_val_loss"], want)
    assert want - r["val_loss"] > 0.03 and r["init_val_bpc"] > r["val_bpc"], r


def test_init_from_needs_the_checkpoints_tokenizer(tmp_path):
    from jaxdl.data import bpe

    recipe, config = _init_from(_pretrained_dir(tmp_path, tokenizer=False))
    with pytest.raises(UserError, match="has no tokenizer.json; give the one its weights"):
        recipe.load_data(config)
    other = bpe.save(bpe.train("to be or not to be, that is the question\n" * 50, 300),
                     tmp_path / "other")
    recipe, config = _init_from(tmp_path / "gpt2_tiny", tokenizer=str(other))
    with pytest.raises(UserError, match=r"has \d+ tokens and the checkpoint's weights 512"):
        recipe.load_data(config)


def test_jaxdl_sample_from_a_pretrained_directory(tmp_path, capsys):
    from jaxdl import cli

    ckpt = _pretrained_dir(tmp_path)
    assert cli.main(["sample", "--from", f"hf:{ckpt}", "--prompt", "ROMEO:", "--num", "6",
                     "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ROMEO:") and len(out.strip()) > len("ROMEO:")
    assert cli.main(["sample", "--from", f"hf:{ckpt}", "--workdir", str(tmp_path)]) == 2
    assert "one of them" in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_from_a_pretrained_gpt2_killed_with_sigkill_resumes_bitwise(tmp_path):
    import os
    import signal
    import time

    ckpt = _pretrained_dir(tmp_path)
    args = ["--config.recipe=decoder_lm", f"--config.init_from=hf:{ckpt}",
            "--config.seq_len=32", "--config.batch_size=8", "--config.num_steps=8",
            "--config.batches_per_epoch=4", "--config.checkpoint_every=2",
            "--config.warmup_steps=1", "--config.val_windows=8", "--config.eval_batch_size=8",
            "--config.sample_tokens=4", "--config.dropout=0.1"]

    def child(workdir, **env):
        out = open(workdir.parent / f"{workdir.name}.log", "a")  # noqa: SIM115
        return subprocess.Popen([sys.executable, "tests/train_child.py", str(workdir), *args],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(ROOT), **env}), out

    proc, log = child(tmp_path / "whole")
    assert proc.wait(600) == 0, (tmp_path / "whole.log").read_text()[-3000:]
    proc, log = child(tmp_path / "cut", TRAIN_CHILD_PAUSE_AT="5")
    deadline = time.monotonic() + 600
    while "step 5\n" not in (tmp_path / "cut.log").read_text():
        assert proc.poll() is None and time.monotonic() < deadline, (
            tmp_path / "cut.log").read_text()[-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(60) == -signal.SIGKILL
    proc, log = child(tmp_path / "cut")
    assert proc.wait(600) == 0, (tmp_path / "cut.log").read_text()[-3000:]
    # from step 4, or from step 2 where the kill cut step 4's (asynchronous) save short
    assert re.search(r"Resuming from checkpoint step [24] ", (tmp_path / "cut.log").read_text())
    whole, cut = np.load(tmp_path / "whole" / "final.npz"), np.load(tmp_path / "cut" / "final.npz")
    assert len(whole.files) == len(cut.files) > 10
    for key in whole.files:
        assert np.array_equal(whole[key], cut[key]), key
