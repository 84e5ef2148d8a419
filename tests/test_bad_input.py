"""The bad-input catalogue: every item is one line that names the problem and the fix.

One test (or parametrized case) per item, grouped as the table of docs/reliability.md is:
1 batch shape / dtype, 2 label range, 3 longer than the context, 4 too little text,
5 missing / truncated / corrupt files, 6 unknown names and config, 7 checkpoints,
8 unwritable workdir. Most checks call the function that raises (in process, fast); a few
run the real command in a subprocess to check exit status 2 and one line on stderr.
"""

import gzip
import importlib
import json
import logging
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from jaxdl import cli
from jaxdl.config import apply_overrides, parse_args
from jaxdl.data import sources, text
from jaxdl.data.image_dataset import ImageDataset
from jaxdl.data.loader import WindowLoader, eval_windows
from jaxdl.entry import run_experiment
from jaxdl.errors import UserError
from jaxdl.nn.cnn import MyNet
from jaxdl.nn.recurrent import RecurrentLM, make_cell
from jaxdl.nn.transformer import DecoderLM, Encoder, PositionalEncoding, init_cache
from jaxdl.tasks import classify, language
from jaxdl.train import create_train_state, make_train_step
from jaxdl.train.checkpoint import Checkpointer
from jaxdl.workdir import check_workdir

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `experiments` is the repo's top-level package, not installed
    sys.path.insert(0, str(ROOT))
cnn_mnist = importlib.import_module("experiments.cnn_mnist")
transformer_lm = importlib.import_module("experiments.transformer_lm")
rnn_lm = importlib.import_module("experiments.rnn_lm")
KEY = jax.random.PRNGKey(0)


def one_line(excinfo, *needles: str) -> str:
    """The UserError's message: a single line holding every needle (the problem and the fix)."""
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, UserError), type(excinfo.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


def cli_error(capsys, code) -> str:
    """After a command-line entry returned/raised `code`: exit 2 and one 'error:' line."""
    assert code == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def run_fails(capsys, module, *args) -> str:
    """`run_experiment` of an experiment module, in process, expected to exit 2."""
    with pytest.raises(SystemExit) as e:
        run_experiment(module.main, module.get_config, "unused", argv=list(args))
    return cli_error(capsys, e.value.code)


def subprocess_fails(*argv, timeout=120) -> str:
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


# ------------------------------------------------------------ 1. batch shape or dtype


@pytest.mark.parametrize("shape, dtype, needles", [
    ((48, 48, 3), jnp.float32, ["(batch, 48, 48, 3)", "got (48, 48, 3)"]),   # rank 3
    ((2, 28, 28, 3), jnp.float32, ["got (2, 28, 28, 3)", "resize to 48x48"]),  # size
    ((2, 48, 48, 1), jnp.float32, ["got (2, 48, 48, 1)", "3 channels"]),       # channels
    ((2, 3, 48, 48), jnp.float32, ["got (2, 3, 48, 48)", "channels last"]),    # NCHW
    ((2, 48, 48, 3), jnp.uint8, ["float images, got uint8", "to_float"]),      # not float
], ids=["rank", "size", "channels", "nchw", "uint8"])
def test_1_mynet_bad_batch(shape, dtype, needles):
    with pytest.raises(UserError) as e:  # eval_shape: raised at trace time, nothing compiles
        jax.eval_shape(MyNet().init, KEY, jnp.zeros(shape, dtype))
    one_line(e, "MyNet expects", *needles)


def test_1_mynet_bad_batch_through_the_train_step_before_compiling():
    model = MyNet()
    state = jax.eval_shape(lambda: create_train_state(model, optax.adam(1e-3), KEY,
                                                      jnp.zeros((1, 48, 48, 3))))
    step = make_train_step(classify.softmax_cross_entropy, model)
    batch = {"image": jax.ShapeDtypeStruct((4, 28, 28, 1), jnp.float32),
             "label": jax.ShapeDtypeStruct((4,), jnp.int32)}
    with pytest.raises(UserError) as e:
        jax.jit(step).trace(state, batch)  # tracing only: the error comes before lowering
    one_line(e, "got (4, 28, 28, 1)", "resize to 48x48")


LMS = {
    "DecoderLM": DecoderLM(11, num_layers=1, num_heads=2, dim=8, max_len=8),
    "RecurrentLM": RecurrentLM("gru", 11, embed_dim=4, hidden_dim=4),
}


@pytest.mark.parametrize("model", LMS, ids=list(LMS))
@pytest.mark.parametrize("tokens, fix", [
    (jnp.zeros((2, 5), jnp.float32), "vocabulary"),
    (jnp.zeros((5,), jnp.int32), "(batch, time)"),
    (jnp.zeros((2, 5, 1), jnp.int32), "(batch, time)"),
], ids=["float", "rank1", "rank3"])
def test_1_lm_bad_tokens(model, tokens, fix):
    with pytest.raises(UserError) as e:
        jax.eval_shape(LMS[model].init, KEY, tokens)
    one_line(e, f"{model} takes integer token ids", str(tuple(tokens.shape)), fix)


def test_1_lm_float_tokens_in_the_loss():
    with pytest.raises(UserError) as e:
        language.split_batch({"tokens": jnp.zeros((2, 9), jnp.float32)})
    one_line(e, "token ids must be integers", "encode text with a vocabulary")


# ------------------------------------------------------------ 2. labels out of range


@pytest.mark.parametrize("labels, needles", [
    (np.array([0, 3, 10]), ["[0, 10]", "10 classes", "build the model with num_classes=11"]),
    (np.array([-1, 3]), ["[-1, 3]", "must lie in [0, 10)"]),
    (np.array([0.0, 1.0]), ["dtype float64", "must be integers", "labels.astype(np.int32)"]),
], ids=["too_high", "negative", "float"])
def test_2_labels_out_of_range(labels, needles):
    with pytest.raises(UserError) as e:
        classify.check_labels(labels, 10)
    one_line(e, *needles)


def test_2_dataset_labels_out_of_range():
    with pytest.raises(UserError) as e:
        ImageDataset(np.zeros((2, 28, 28, 1), np.uint8), np.array([0, 12], np.int32), 10,
                     "mine", tuple("0123456789"), "my arrays")
    one_line(e, "labels must be in [0, 10)", "[0, 12]", "fix the data source")


# ------------------------------------------------------------ 3. longer than the context


def test_3_decoder_forward_longer_than_context():
    with pytest.raises(UserError) as e:
        jax.eval_shape(LMS["DecoderLM"].init, KEY, jnp.zeros((1, 9), jnp.int32))
    one_line(e, "9 tokens is longer than the model's context of 8", "max_len >= 9")


def test_3_encoder_longer_than_context():
    with pytest.raises(UserError) as e:
        jax.eval_shape(Encoder(11, num_layers=1, num_heads=2, dim=8, max_len=4).init, KEY,
                       jnp.ones((1, 6), jnp.int32))
    one_line(e, "longer than the model's context of 4", "crop it")


@pytest.mark.parametrize("kind", ["learned", "sinusoidal"])
def test_3_position_encoding_longer_than_max_len(kind):
    with pytest.raises(UserError) as e:
        jax.eval_shape(PositionalEncoding(8, kind).init, KEY, jnp.zeros((1, 9, 4)))
    one_line(e, "9 positions is longer than", "max_len of 8", "crop it to 8")


def test_3_kv_cache_decode_longer_than_context():
    model = LMS["DecoderLM"]
    params = jax.eval_shape(model.init, KEY, jnp.zeros((1, 8), jnp.int32))["params"]
    cache = init_cache(model, params, 1)
    with pytest.raises(UserError) as e:
        jax.eval_shape(lambda p, c: model.apply({"params": p, "cache": c},
                                                jnp.zeros((1, 9), jnp.int32), decode=True,
                                                mutable=["cache"]), params, cache)
    one_line(e, "longer than", "max_len of 8")


def test_3_generation_prompt_longer_than_context_slides():
    """generate_cached keeps the newest max_len tokens of a long prompt: no error."""
    model, rng = LMS["DecoderLM"], np.random.default_rng(0)
    shapes = jax.eval_shape(model.init, KEY, jnp.zeros((1, 8), jnp.int32))["params"]
    params = jax.tree.map(lambda s: rng.normal(0, 0.5, s.shape).astype(s.dtype), shapes)
    prompt = np.arange(20, dtype=np.int32) % 11
    out = language.generate_cached(model, params, prompt, 3, greedy=True)
    assert out.shape == (3,)
    np.testing.assert_array_equal(out, language.generate_cached(model, params, prompt[-8:], 3,
                                                                greedy=True))


def test_3_generation_with_the_wrong_kind_of_model():
    dec, rnn = LMS["DecoderLM"], LMS["RecurrentLM"]
    with pytest.raises(UserError) as e:
        language.generate(dec, {}, np.arange(3), 4)
    one_line(e, "got DecoderLM", "use generate_cached")
    with pytest.raises(UserError) as e:
        language.generate_cached(rnn, {}, np.arange(3), 4)
    one_line(e, "got RecurrentLM", "use generate")


# ------------------------------------------------------------ 4. too little text


def test_4_text_shorter_than_one_window():
    with pytest.raises(UserError) as e:
        WindowLoader(np.arange(10, dtype=np.int32), 2, 10)
    one_line(e, "training text has 10 tokens", "seq_len + 1 = 11", "lower --config.seq_len")
    with pytest.raises(UserError) as e:
        eval_windows(np.arange(3, dtype=np.int32), 8)
    one_line(e, "validation text has 3 tokens", "--config.val_fraction", "--config.seq_len")


@pytest.mark.parametrize("content", [b"", b"  \n\t\n"], ids=["empty", "whitespace"])
def test_4_empty_text_file(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(UserError) as e:
        text.load_text(path=str(path))
    one_line(e, str(path), "is empty", "pass a text file with some content")


def test_4_short_text_through_the_experiment(tmp_path, capsys):
    path = tmp_path / "short.txt"
    path.write_text("To be, or not to be.\n")
    line = run_fails(capsys, transformer_lm, "--workdir", str(tmp_path / "w"),
                     f"--config.text_path={path}")
    assert "fewer than one window" in line and "--config.seq_len" in line


# ------------------------------------------------------------ 5. missing / corrupt files


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                  *array.shape)
    data += array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def idx_dir(root: Path) -> Path:
    root.mkdir()
    for part, n in (("train", 6), ("t10k", 4)):
        write_idx(root / f"{part}-images-idx3-ubyte", np.zeros((n, 28, 28), np.uint8))
        write_idx(root / f"{part}-labels-idx1-ubyte", np.arange(n) % 10)
    return root


def _truncate(p: Path):
    p.write_bytes(p.read_bytes()[:100])


def _bad_magic(p: Path):
    p.write_bytes(b"PK\x03\x04" + p.read_bytes()[4:])


def _bad_gzip(p: Path):
    p.unlink()
    p.with_name(p.name + ".gz").write_bytes(gzip.compress(bytes(4000))[:30])


@pytest.mark.parametrize("damage, needles", [
    (Path.unlink, ["train-images-idx3-ubyte[.gz] not found", "--config.data_dir",
                   "--config.dataset=mnist_5k"]),
    (_truncate, ["is truncated: expected 4720 bytes, got 100", "re-download it"]),
    (_bad_magic, ["corrupt magic number 0x504b0304", "not an IDX file", "re-download it"]),
    (_bad_gzip, ["truncated or corrupt gzip", "re-download it"]),
], ids=["missing", "truncated", "bad_magic", "corrupt_gzip"])
def test_5_idx_files(tmp_path, damage, needles):
    root = idx_dir(tmp_path / "mnist")
    damage(root / "train-images-idx3-ubyte")
    with pytest.raises(UserError) as e:
        sources.resolve_image_dataset("mnist", data_dir=root, verbose=False)
    one_line(e, *needles)


def _csv_rows(n=3, label=7):
    return "".join(",".join(["0"] * 784 + [str(label)]) + "\n" for _ in range(n)).encode()


@pytest.mark.parametrize("name, content, needles", [
    ("missing.csv", None, ["not found", "check the path"]),
    ("cut.csv.gz", gzip.compress(_csv_rows(50))[:-30], ["truncated or corrupt gzip"]),
    ("cut.csv", _csv_rows(3)[:-700], ["row 3 has", "expected 785", "784 pixel values"]),
    ("text.csv", _csv_rows(2).replace(b"0,", b"x,", 1), ["non-integer value",
                                                        "784 pixel values then the label"]),
    ("binary.csv", bytes(range(256)) * 4, ["row 1 has", "expected 785"]),
    ("label.csv", _csv_rows(2, label=11), ["labels in [11, 11]", "expected digits 0-9"]),
], ids=["missing", "truncated_gzip", "truncated_row", "non_integer", "binary", "label_range"])
def test_5_csv_files(tmp_path, name, content, needles):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError) as e:
        sources.load_csv_digits(path, "mine")
    one_line(e, str(path), *needles)


@pytest.mark.parametrize("kind", ["missing", "directory", "not_utf8"])
def test_5_text_files(tmp_path, kind):
    path = tmp_path / "corpus.txt"
    if kind == "directory":
        path.mkdir()
    elif kind == "not_utf8":
        path.write_bytes("caf\u00e9 latin-1".encode("latin-1"))
    with pytest.raises(UserError) as e:
        text.load_text(path=str(path))
    if kind == "not_utf8":
        one_line(e, str(path), "is not UTF-8 text", "at byte 3", "convert it to UTF-8")
    else:
        one_line(e, str(path), "not found", "--config.text_path")


# ------------------------------------------------------------ 6. unknown names, config


def test_6_unknown_dataset_and_names():
    with pytest.raises(UserError) as e:
        sources.resolve_image_dataset("imagenet", verbose=False)
    one_line(e, "unknown dataset 'imagenet'", "mnist_5k", "set --config.dataset")
    with pytest.raises(UserError) as e:
        text.load_text("war_and_peace")
    one_line(e, "unknown embedded text", "tinyshakespeare", "--config.text_path")
    with pytest.raises(UserError) as e:
        make_cell("transformer", 4)
    one_line(e, "unknown cell 'transformer'", "rnn, lstm, gru", "--config.cell")


def test_6_unknown_config_key_and_argument():
    with pytest.raises(UserError) as e:
        apply_overrides(cnn_mnist.get_config(), {"nope": "1"})
    one_line(e, "unknown config key 'nope'", "known keys: augment, batch_size")
    with pytest.raises(UserError) as e:
        parse_args(["--epochs=3"], cnn_mnist.get_config, "w")
    one_line(e, "unrecognised argument '--epochs=3'", "--config.KEY=VALUE")


def test_6_a_config_files_unknown_key_is_refused_naming_the_nearest(tmp_path, capsys):
    """A typo in a config file (`learnig_rate`) once trained on the default learning rate in
    silence; the command line refused only its own overrides. The runner's check of the
    table refuses it, from a file or from Python, before anything is written."""
    from jaxdl import recipes, run

    config_file = tmp_path / "typo.py"
    config_file.write_text("from jaxdl import recipes\n\ndef get_config():\n"
                           "    config = recipes.get('mlp').get_config()\n"
                           "    config.learnig_rate = 0.5\n    return config\n")
    workdir = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        cli.main(["train", f"--config={config_file}", "--workdir", str(workdir)])
    line = cli_error(capsys, e.value.code)
    assert "config key 'learnig_rate' is not one the mlp recipe takes" in line, line
    written = lambda: sorted(workdir.rglob("*")) if workdir.exists() else []  # noqa: E731
    assert "did you mean 'learning_rate'?" in line and written() == [], line
    config = recipes.get("seq2seq").get_config()
    config.mesh.fsdp, config.zzz = 2, 1
    with pytest.raises(UserError) as e:
        run.train(config, workdir)
    one_line(e, "config key 'zzz' is not one the seq2seq recipe takes", "`--help` lists them")
    assert written() == []


def test_6_a_saved_config_with_a_key_this_version_lacks_loads_with_one_notice(tmp_path,
                                                                               capsys):
    """A workdir another jaxdl version wrote (a key since removed) still loads: the key is
    named once on stderr and ignored."""
    from jaxdl import recipes, run

    config = recipes.get("mlp").get_config()
    config.update({"hidden_sizes": (8,)})
    saved = {**config.to_dict(), "retired_key": 3, "mesh": {**config.mesh, "pipe": 2}}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    r = run.load(tmp_path, restore=False)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "note: this run's config.json has keys this jaxdl does " \
        "not take (mesh.pipe, retired_key); they are ignored" in err, err
    assert "retired_key" not in r.config and "pipe" not in r.config.mesh
    assert tuple(r.config.hidden_sizes) == (8,)


@pytest.mark.parametrize("key, text, expects, example", [
    ("epochs", "five", "int", "--config.epochs=5"),
    ("epochs", "1.5", "int", "--config.epochs=5"),
    ("epochs", "True", "int", "--config.epochs=5"),
    ("batch_size", "None", "int", "--config.batch_size=64"),
    ("augment", "yes", "bool", "--config.augment=True"),
    ("learning_rate", "fast", "float", "--config.learning_rate=0.001"),
])
def test_6_wrong_config_value_type(key, text, expects, example):
    with pytest.raises(UserError) as e:
        apply_overrides(cnn_mnist.get_config(), {key: text})
    article = "an" if expects == "int" else "a"
    one_line(e, f"config key {key!r} expects {article} {expects}, got {text!r}", example)


@pytest.mark.parametrize("argv, needles", [
    (["nope"], ["invalid choice: 'nope'", "'info', 'eval', 'sample', 'predict'",
               "jaxdl --help"]),
    ([], ["required: command", "jaxdl --help"]),
    (["info"], ["required: --workdir", "jaxdl info --help"]),
], ids=["unknown_command", "no_command", "no_workdir"])
def test_6_jaxdl_cli_usage_errors(capsys, argv, needles):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    line = cli_error(capsys, e.value.code)
    assert all(n in line for n in needles), line


def test_6_jaxdl_cli_unknown_or_foreign_workdir(tmp_path, capsys):
    line = cli_error(capsys, cli.main(["info", "--workdir", str(tmp_path / "nope")]))
    assert "config.json not found" in line and "pass the --workdir of" in line
    (tmp_path / "config.json").write_text(json.dumps(cnn_mnist.get_config().to_dict()))
    line = cli_error(capsys, cli.main(["sample", "--workdir", str(tmp_path), "--prompt", "a"]))
    assert "`jaxdl sample` does not apply to" in line and "of the image_classifier recipe" in line
    assert "it applies to runs of rnn_lm, decoder_lm, seq2seq, text2img" in line
    (tmp_path / "config.json").write_text(json.dumps(rnn_lm.get_config().to_dict()))
    line = cli_error(capsys, cli.main(["predict", "--workdir", str(tmp_path), "x.png"]))
    assert "`jaxdl predict` does not apply" in line and "image_classifier" in line
    (tmp_path / "config.json").write_text(json.dumps({"epochs": 5}))
    line = cli_error(capsys, cli.main(["eval", "--workdir", str(tmp_path)]))
    assert "names no recipe" in line


def test_6_end_to_end_subprocesses(tmp_path):
    """The real commands: one experiment and the `jaxdl` CLI, each one line and exit 2."""
    line = subprocess_fails("-m", "experiments.cnn_mnist", "--workdir", str(tmp_path / "w"),
                            "--config.dataset=nope")
    assert "unknown dataset 'nope'" in line and "set --config.dataset" in line
    line = subprocess_fails("-m", "jaxdl.cli", "nope", timeout=60)
    assert "invalid choice: 'nope'" in line and "jaxdl --help" in line


def test_6_model_rejects_the_configured_image_size(tmp_path, capsys):
    line = run_fails(capsys, cnn_mnist, "--workdir", str(tmp_path / "w"),
                     "--config.dataset=synthetic", "--config.image_size=32")
    assert "got (1, 32, 32, 3)" in line and "resize to 48x48" in line


# ------------------------------------------------------------ 7. checkpoints


def _state(shape=(3, 4), fill=0.0):
    return {"w": jnp.full(shape, fill), "b": jnp.zeros(4)}


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def two_steps(tmp_path):
    directory = tmp_path / "checkpoints"
    ckpt = Checkpointer(directory, async_save=False)
    for step in (1, 2):
        ckpt.save(step, _state(fill=float(step)), {"step": step})
    ckpt.close()
    return directory


def _restore_latest(directory: Path, template):
    ckpt = Checkpointer(directory)
    try:
        return ckpt.restore_latest(template)
    finally:
        ckpt.close()


@pytest.mark.parametrize("template, named", [
    (_state(shape=(5, 4)), "parameter w has shape (3, 4) in the checkpoint, (5, 4) in this model"),
    ({"w": jnp.zeros((3, 4))}, "the checkpoint has parameter b, which this model lacks"),
    ({**_state(), "c": jnp.zeros(2)}, "parameter c of this model is not in the checkpoint"),
], ids=["shape", "fewer_params", "more_params"])
def test_7_checkpoint_from_a_different_model(two_steps, template, named, capfd):
    before = _files(two_steps)
    capfd.readouterr()
    with pytest.raises(UserError) as e:
        _restore_latest(two_steps, template)
    msg = one_line(e, "checkpoint step 2", "does not match this model", named,
                   "use a fresh --workdir or the config it was saved with")
    assert "strict" not in msg.lower()  # orbax's advice (strict=False) is not the user's fix
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # no fall-back notice, no orbax noise
    assert _files(two_steps) == before  # nothing deleted or rewritten


def test_7_mismatch_is_found_before_reading_arrays(tmp_path, capfd):
    """Restoring a mismatched tree makes orbax fail one read while others are in flight, and
    their callbacks print 'Event loop is closed' / 'Exception ignored in: <coroutine ...>'
    tracebacks on stderr; the shapes are compared from the metadata first, so nothing is read."""
    directory = tmp_path / "checkpoints"
    big = {f"a{i}": jnp.full((600, 600), float(i)) for i in range(8)}
    ckpt = Checkpointer(directory, async_save=False)
    ckpt.save(1, big, {})
    ckpt.close()
    before = _files(directory)
    capfd.readouterr()
    with pytest.raises(UserError) as e:
        _restore_latest(directory, {**big, "a0": jnp.zeros((5, 4))})
    one_line(e, "parameter a0 has shape (600, 600) in the checkpoint, (5, 4) in this model")
    time.sleep(0.2)  # let any stray background callback print
    assert capfd.readouterr() == ("", "")
    assert _files(directory) == before


def _garble(step_dir: Path):
    for p in (step_dir / "state").rglob("*"):
        if p.is_file():
            p.write_bytes(b"garbage")


def _assert_fell_back(restored, capfd, why: str):
    state, meta, step = restored
    assert step == 1 and meta == {"step": 1} and float(state["w"][0, 0]) == 1.0
    out, err = capfd.readouterr()  # a notice about what was restored: on stderr
    assert "Checkpoint step 2 is unreadable" in err and "falling back to step 1" in err, err
    assert why in err, err
    assert out == ""


def test_7_corrupt_latest_checkpoint_falls_back_and_says_so(two_steps, capfd):
    _garble(two_steps / "2")
    before = _files(two_steps)
    _assert_fell_back(_restore_latest(two_steps, _state()), capfd, "Expecting value")
    assert _files(two_steps) == before  # kept for inspection


def test_7_corrupt_meta_of_a_fitting_checkpoint_falls_back(two_steps, capfd):
    """The arrays' tree fits; the step's JSON is damaged: corrupt, not another model."""
    (two_steps / "2" / "meta" / "metadata").write_text("{not json")
    _assert_fell_back(_restore_latest(two_steps, _state()), capfd, "unreadable (")


def test_7_corrupt_step_whose_error_mentions_shape_falls_back(two_steps, capfd, monkeypatch):
    """Once the metadata says the tree fits, a ValueError from the restore is damage, even
    when its text says 'shape' or 'structure' (the old check took those for a model mismatch)."""
    real = ocp.CheckpointManager.restore

    def restore(self, step, *args, **kwargs):
        if step == 2:
            raise ValueError("corrupt chunk: stored shape and tree structure unreadable")
        return real(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "restore", restore)
    before = _files(two_steps)
    _assert_fell_back(_restore_latest(two_steps, _state()), capfd, "corrupt chunk: stored shape")
    assert _files(two_steps) == before


def test_7_every_checkpoint_corrupt(two_steps):
    for step in ("1", "2"):
        _garble(two_steps / step)
    before = _files(two_steps)
    with pytest.raises(UserError) as e:
        _restore_latest(two_steps, _state())
    one_line(e, "no readable checkpoint", "steps [2, 1]", "move the directory away")
    assert _files(two_steps) == before


# ------------------------------------------------------------ 8. workdir not writable


def _unwritable(tmp_path: Path, how: str) -> Path:
    """Paths no process can make a directory of, root included (chmod does not stop root)."""
    (tmp_path / "a_file").write_text("")
    return tmp_path / "a_file" / "run" if how == "under_a_file" else tmp_path / "a_file"


@pytest.mark.parametrize("how", ["under_a_file", "is_a_file"])
def test_8_workdir_not_writable(tmp_path, how):
    workdir = _unwritable(tmp_path, how)
    with pytest.raises(UserError) as e:
        check_workdir(workdir)
    one_line(e, f"workdir {workdir} is not writable", "pass a writable --workdir")


def test_8_workdir_not_writable_end_to_end(tmp_path):
    workdir = _unwritable(tmp_path, "under_a_file")
    line = subprocess_fails("-m", "experiments.transformer_lm", "--workdir", str(workdir))
    assert "is not writable" in line and "pass a writable --workdir" in line
    assert (tmp_path / "a_file").read_text() == ""  # nothing overwritten


def test_quiet_stderr_drops_only_the_closed_loop_tracebacks():
    """orbax's closed-loop noise (interleaved by threads) goes; everything else, progress
    bars and real tracebacks included, passes through unchanged."""
    import io

    from jaxdl.train.noise import QuietStderr

    out = io.StringIO()
    writer = [0]  # which thread writes, as `threading.get_ident` would say
    q = QuietStderr(out, thread=lambda: writer[0])

    def write(thread, text):
        writer[0] = thread
        q.write(text)

    write(0, "Epoch 1:  50%\r")
    write(1, "Traceback (most recent call last):\n  File a\n")
    write(2, "Traceback (most recent call last):\n")
    write(2, "  File b\nRuntimeError: Event loop is closed\n")
    write(1, "  File c\n")
    write(1, "RuntimeError: Event loop is closed\n")
    write(0, "error: one line\n")
    write(3, "Traceback (most recent call last):\n  File d\nValueError: real\n")
    assert out.getvalue() == ("Epoch 1:  50%\rerror: one line\n"
                              "Traceback (most recent call last):\n  File d\nValueError: real\n")
    # The command's own error line, written while a noise traceback was half printed:
    out = io.StringIO()
    q = QuietStderr(out, thread=lambda: writer[0])
    write(1, "Traceback (most recent call last):\n  File a\n    self._check_closed()\n")
    write(0, "error: no space left on the device; step 30 is kept\n")
    write(1, "    raise RuntimeError('Event loop is closed')\nRuntimeError: Event loop is closed\n")
    assert out.getvalue() == "error: no space left on the device; step 30 is kept\n"


def test_unretrieved_failed_read_tasks_are_dropped_others_logged(capfd):
    """A truncated checkpoint fails several concurrent reads; asyncio logs the unretrieved
    ones when they are collected, outside `quiet_orbax` (CI saw it). Those alone are dropped."""
    import asyncio
    import gc

    from jaxdl.train.noise import command_line_filters

    async def fail(text):
        raise ValueError(text)

    def leave_unretrieved(text):
        loop = asyncio.new_event_loop()
        task = loop.create_task(fail(text))
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        del task
        gc.collect()

    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger("asyncio").addHandler(handler)
    try:
        with command_line_filters():
            leave_unretrieved("OUT_OF_RANGE: Error reading [tensorstore_spec='{}']")
            assert capfd.readouterr().err == ""
            leave_unretrieved("a real bug")
            err = capfd.readouterr().err
    finally:
        logging.getLogger("asyncio").removeHandler(handler)
    assert "Task exception was never retrieved" in err and "a real bug" in err
