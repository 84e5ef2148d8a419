"""Data parallelism: a `data` mesh (jit + NamedSharding), pmap, several processes, checkpoints.

The multi-device checks need fake CPU devices, which XLA fixes when the backend starts,
so they run in child processes (`python tests/test_parallel.py MODE OUT`) with
`--xla_force_host_platform_device_count`; each child is bounded by a timeout and killed.

Optimizers: SGD (MyNet) and momentum SGD (the LM). Adam normalises each gradient by its
own magnitude, so for the few weights whose gradient is a near-cancelling sum (|g| ~ 1e-9)
float summation-order noise between 1 and 8 devices becomes a full `lr`-sized step
(measured: MyNet's fc1 differs by 1.4e-5 after 4 Adam steps, by 1e-9 with SGD). That is
Adam, not sharding; the comparisons check the gradients through optimizers that do not
amplify noise.

Dropout stays on: `fold_in(state.rng, step)` under jit draws the same numbers however
the batch is split (jax's random bits depend on key and shape only; the suite runs
non-partitionable threefry for compile speed, see conftest.py; this holds for both).
MyNet trains without random augmentation;
the test checks instead that an augmented batch is the same on 1 and 8 devices (bitwise
at 2 images per device, within 6e-7 float rounding at 1 per device). Trained with it, the
runs agree to 1.5e-8 for 10 steps and then jump (a near-tie in a max-pool or a rotated
pixel's rounding, decided differently by the 1e-8 noise) to 2e-5 by step 20:
discontinuities amplifying float noise, not different draws. Likewise XLA:CPU's default
YNN-fused convolutions start from ~5x more summation noise (2e-4 after 20 steps), so the
steps use `train_compiler_options()` (what the experiments train with on CPU).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdl.train as par  # the public API: jaxdl.train's exports
from jaxdl.data import sources, transforms
from jaxdl.data import text as textdata
from jaxdl.data.loader import ArrayLoader, WindowLoader
from jaxdl.errors import UserError
from jaxdl.nn import MyNet
from jaxdl.nn.transformer import DecoderLM
from jaxdl.tasks import classify, language
from jaxdl.train import (
    TrainState,
    create_train_state,
    make_eval_step,
    make_optimizer,
    make_train_step,
)
from jaxdl.train.checkpoint import Checkpointer
from jaxdl.train.compile import compile_step, train_compiler_options
from jaxdl.train.loop import fit
from tests.processes import Processes, cpu_env

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
STEPS = 20
TOL = 1e-5

# --------------------------------------------------------------------------- models


def _init(model, tx, seed, example):
    """create_train_state in one compilation (eager init compiles every initializer)."""
    return jax.jit(lambda rng: create_train_state(model, tx, rng, example))(
        jax.random.PRNGKey(seed))


def _lm_setup(dropout=0.1, batch_size=16, seed=0, batches_per_epoch=10, **loader_kw):
    text = textdata.load_text("tinyshakespeare")[:20000]
    vocab = textdata.make_vocab("char", text)
    loader = WindowLoader(vocab.encode(text), batch_size, 16, seed=seed,
                                   batches_per_epoch=batches_per_epoch, **loader_kw)
    model = DecoderLM(len(vocab), num_layers=1, num_heads=2, dim=32, max_len=16,
                      dropout=dropout)
    state = _init(model, make_optimizer("momentum", 0.1), seed, jnp.zeros((1, 16), jnp.int32))
    return model, state, loader, language.next_token_loss


def _mynet_setup(batch_size=8):
    """MyNet on real MNIST digits (28x28x1, made 48x48x3 on device), dropout 0.5, SGD.

    Params are drawn with numpy from PyTorch's default bounds (what MyNet's own init
    draws): jax's init of the 9.4M fc1 weights costs ~10 s of this shared CPU's time.
    """
    split = sources.mnist_5k_split()
    loader = ArrayLoader({"image": split.train.images, "label": split.train.labels}, batch_size)
    model = MyNet(num_classes=10, dropout_rate=0.5)
    shapes = jax.eval_shape(lambda: nn.unbox(model.init(jax.random.PRNGKey(0),
                                                        jnp.zeros((1, 48, 48, 3)))))
    rng = np.random.default_rng(0)
    params = {}
    for name, layer in shapes["params"].items():
        bound = 1.0 / np.sqrt(np.prod(layer["kernel"].shape[:-1]))
        params[name] = {k: jnp.asarray(rng.uniform(-bound, bound, v.shape).astype(np.float32))
                        for k, v in layer.items()}
    tx = make_optimizer("sgd", 0.01)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                       rng=jax.random.PRNGKey(1), tx=tx)
    return model, state, loader, classify.softmax_cross_entropy


def _batches(loader, n):
    out, epoch = [], 0
    while len(out) < n:
        out.extend(loader.epoch(epoch))
        epoch += 1
    return out[:n]


def _run(step, state, batches, put=lambda b: b, block=False):
    for batch in batches:
        state, metrics = step(state, put(batch))
        if block:
            jax.block_until_ready(metrics)
    return state, metrics


def _copy(state):
    """Fresh buffers: a donating step deletes its input state's (device_put may alias them)."""
    return jax.jit(lambda s: jax.tree.map(jnp.copy, s))(state)


def _max_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _is_replicated_on(tree, mesh) -> bool:
    return all(x.sharding.is_equivalent_to(par.replicated(mesh), x.ndim)
               for x in jax.tree.leaves(tree))


# --------------------------------------------------------------------------- child modes


def _child_jit(family: str, out: Path):
    """1 device (plain jit) vs the 8-device `data` mesh: 20 steps, same params."""
    extra = {}
    if family == "mynet":
        model, state0, loader, loss = _mynet_setup()
        pre = transforms.make_preprocess(size=48, augment=False)
    else:
        model, state0, loader, loss = _lm_setup(dropout=0.1)
        pre = None
    options = train_compiler_options()  # the CPU train path fit uses (YNN dots and reductions only)
    batches = _batches(loader, STEPS)
    step_fn = make_train_step(loss, model, preprocess=pre)
    state1, m1 = _run(compile_step(step_fn, compiler_options=options), _copy(state0), batches)

    mesh = par.make_mesh()
    assert mesh.devices.size == 8 and par.needs_blocking(mesh)
    step8 = par.compile_sharded_train_step(step_fn, mesh, compiler_options=options)
    state8, m8 = _run(step8, par.replicate_state(_copy(state0), mesh), batches,
                      par.make_put_batch(mesh), par.needs_blocking(mesh))
    eval8 = par.compile_sharded_eval_step(make_eval_step(loss, model, preprocess=pre), mesh)
    e1 = jax.jit(make_eval_step(loss, model, preprocess=pre))(state1, batches[0])
    e8 = eval8(state8, par.shard_batch(batches[0], mesh))
    if family == "mynet":  # augmentation draws the same numbers on 1 and 8 devices
        aug = transforms.make_preprocess(size=48, augment=True)
        key = jax.random.fold_in(state0.rng, 7)
        one = jax.jit(aug, static_argnums=2)(batches[0], key, True)["image"]
        eight = jax.jit(aug, static_argnums=2, out_shardings=par.data_sharding(mesh))(
            par.shard_batch(batches[0], mesh), par.replicate_state(key, mesh), True)["image"]
        extra["augment_diff"] = float(np.max(np.abs(np.asarray(one) - np.asarray(eight))))
    _write(out, param_diff=_max_diff(state1.params, state8.params),
           metric_diff=abs(float(m1["loss_sum"]) - float(m8["loss_sum"])),
           eval_diff=abs(float(e1["loss_sum"]) - float(e8["loss_sum"])),
           count=float(m8["count"]), step=int(state8.step),
           replicated=_is_replicated_on(state8, mesh), **extra)


def _child_pmap(out: Path):
    """The pmap wrapper and the jit mesh path take the same 20 steps (dropout-free LM)."""
    model, state0, loader, loss = _lm_setup(dropout=0.0)
    batches = _batches(loader, STEPS)
    mesh = par.make_mesh()
    jit_step = par.compile_sharded_train_step(make_train_step(loss, model), mesh)
    s_jit, m_jit = _run(jit_step, par.replicate_state(_copy(state0), mesh), batches,
                        par.make_put_batch(mesh), True)
    p_step = par.pmap_train_step(loss, model)
    s_pmap, m_pmap = _run(p_step, par.replicate_for_pmap(state0), batches,
                          par.split_for_pmap, True)
    p_eval = par.pmap_eval_step(loss, model)(s_pmap, par.split_for_pmap(batches[0]))
    j_eval = par.compile_sharded_eval_step(make_eval_step(loss, model), mesh)(
        s_jit, par.shard_batch(batches[0], mesh))
    s_pmap, m_pmap, p_eval = par.unreplicate((s_pmap, m_pmap, p_eval))
    _write(out, param_diff=_max_diff(s_jit.params, s_pmap.params),
           metric_diff=abs(float(m_jit["loss_sum"]) - float(m_pmap["loss_sum"])),
           eval_diff=abs(float(j_eval["loss_sum"]) - float(p_eval["loss_sum"])),
           count=float(m_pmap["count"]), step=int(s_pmap.step))


def _child_checkpoint(out: Path):
    """A 1-device checkpoint restores onto the 8-device mesh (and back), then trains on."""
    model, state0, loader, loss = _lm_setup(dropout=0.1)
    batches = _batches(loader, 4)
    step_fn = make_train_step(loss, model)
    saved, _ = _run(jax.jit(step_fn), state0, batches[:3])
    ckpt = Checkpointer(out / "ckpt")
    ckpt.save(3, saved, {"note": "one device"})
    ckpt.close()

    mesh = par.make_mesh()
    template = par.replicate_state(_copy(state0), mesh)
    ckpt = Checkpointer(out / "ckpt")
    restored, meta, step = ckpt.restore_latest(template)
    ckpt.close()
    replicated = _is_replicated_on(restored, mesh)
    exact = _max_diff(saved, restored) == 0.0
    one = jax.jit(step_fn)(saved, batches[3])[0]
    eight = par.compile_sharded_train_step(step_fn, mesh)(restored,
                                                         par.shard_batch(batches[3], mesh))[0]
    # and back: a mesh state saved, restored onto one device
    ckpt = Checkpointer(out / "ckpt8")
    ckpt.save(4, eight, {})
    ckpt.close()
    ckpt = Checkpointer(out / "ckpt8")
    back, _, _ = ckpt.restore_latest(jax.device_put(state0, jax.devices()[0]))
    ckpt.close()
    _write(out, replicated=replicated, exact=exact, step=step, meta=meta,
           next_diff=_max_diff(one.params, eight.params),
           back_devices=sorted({len(x.devices()) for x in jax.tree.leaves(back)}),
           back_diff=_max_diff(back, eight))


def _child_errors(out: Path):
    mesh = par.make_mesh()
    messages = {}
    for name, call in {
        "shard": lambda: par.shard_batch({"x": np.zeros((12, 3))}, mesh),
        "check": lambda: par.check_batch_size(10, mesh),
        "pmap": lambda: par.split_for_pmap({"x": np.zeros((12, 3))}),
        "devices": lambda: par.make_mesh(9),
    }.items():
        try:
            call()
            messages[name] = None
        except UserError as e:
            messages[name] = str(e)
    _write(out, messages=messages, blocking=par.needs_blocking(mesh),
           blocking_no_mesh=par.needs_blocking(), mesh4=par.make_mesh(4).devices.size)


def _child_process(out: Path):
    """One of several processes: fit() on its own slice of every batch (env gives its id)."""
    assert par.initialize_distributed(
        coordinator_bind_address=os.environ["JAXDL_TEST_BIND"], initialization_timeout=60)
    assert jax.process_count() == 2 and jax.local_device_count() == 2
    mesh = par.make_mesh()
    model, state, loader, loss = _lm_setup(dropout=0.1, batches_per_epoch=STEPS,
                                            **par.process_shard())
    state = par.replicate_state(state, mesh)
    step = par.compile_sharded_train_step(make_train_step(loss, model), mesh)
    opts = par.fit_options(mesh)
    assert opts["block_every_step"]
    state, history = fit(state, step, loader, workdir=out / "run", num_steps=STEPS,
                         verbose=par.is_main_process(), **opts)
    params = jax.tree.map(np.asarray, jax.device_get(state.params))
    if par.is_main_process():
        flat = {jax.tree_util.keystr(k): v
                for k, v in jax.tree_util.tree_leaves_with_path(params)}
        np.savez(out / "params.npz", **flat)
        _write(out, step=int(state.step), count=history[-1]["count"],
               loss=history[-1]["loss"])


def _write(out: Path, **result):
    (out / "result.json").write_text(json.dumps(result))


# --------------------------------------------------------------------------- the parent side


def _child(mode: str, tmp_path: Path, *args: str, devices: int = 8,
           timeout: float = 150) -> dict:
    try:
        proc = subprocess.run([sys.executable, str(HERE), mode, str(tmp_path), *args],
                              env=cpu_env(devices), cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:  # subprocess.run has killed it
        pytest.fail(f"{mode} child timed out after {timeout} s:\n{e.stdout}\n{e.stderr}")
    assert proc.returncode == 0, f"{mode} child failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return json.loads((tmp_path / "result.json").read_text())


@pytest.mark.parametrize("family", ["mynet", "decoder_lm"])
def test_eight_devices_train_like_one(tmp_path, family):
    r = _child("jit", tmp_path, family)
    assert r["step"] == STEPS and r["replicated"]
    assert r["param_diff"] < TOL and r.get("augment_diff", 0.0) < TOL, r
    assert r["metric_diff"] < 1e-3 * max(1.0, r["count"]) and r["eval_diff"] < 1e-2, r


def test_pmap_wrapper_agrees_with_the_jit_path(tmp_path):
    r = _child("pmap", tmp_path, timeout=120)
    assert r["step"] == STEPS and r["count"] == 16 * 16
    assert r["param_diff"] < TOL and r["metric_diff"] < 1e-2 and r["eval_diff"] < 1e-2, r


def test_one_device_checkpoint_restores_onto_the_mesh(tmp_path):
    r = _child("checkpoint", tmp_path, timeout=120)
    assert r["replicated"] and r["exact"] and r["step"] == 3
    assert r["meta"] == {"note": "one device"}
    assert r["next_diff"] < TOL and r["back_devices"] == [1] and r["back_diff"] == 0.0, r


def test_batch_size_must_divide_over_devices(tmp_path):
    r = _child("errors", tmp_path, timeout=90)
    m = r["messages"]
    assert "12" in m["shard"] and "8 devices" in m["shard"] and "--config.batch_size" in m["shard"]
    assert "10" in m["check"] and "multiple of 8" in m["check"]
    assert "12" in m["pmap"] and "--config.batch_size" in m["pmap"]
    assert "9" in m["devices"] and "--config.devices" in m["devices"]
    assert all("\n" not in v for v in m.values())
    assert r["blocking"] and r["blocking_no_mesh"] and r["mesh4"] == 4


def test_single_device_helpers_in_process():
    mesh = par.make_mesh(1)
    assert mesh.axis_names == ("data", "fsdp", "tensor") and not par.needs_blocking(mesh)
    assert dict(mesh.shape) == {"data": 1, "fsdp": 1, "tensor": 1}
    batch = par.shard_batch({"x": np.arange(6.0).reshape(3, 2)}, mesh)
    np.testing.assert_array_equal(batch["x"], np.arange(6.0).reshape(3, 2))
    assert par.process_shard() == {"process_index": 0, "process_count": 1}
    assert par.initialize_distributed(num_processes=1) is False


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path):
    """2 processes x 2 CPU devices on loopback, each feeding its half of every batch."""
    with Processes([HERE, "process", tmp_path], tmp_path / "proc", devices=2) as procs:
        assert procs.finish(150) == [0, 0], procs.text()
    r = json.loads((tmp_path / "result.json").read_text())
    assert r["step"] == STEPS and r["count"] == 16 * 16 * STEPS  # global tokens in the epoch
    assert (tmp_path / "run" / "checkpoints" / str(STEPS)).is_dir()

    # the same run in this (single-device) process
    model, state, loader, loss = _lm_setup(dropout=0.1, batches_per_epoch=STEPS)
    state, _ = fit(state, compile_step(make_train_step(loss, model)), loader,
                   workdir=tmp_path / "one", num_steps=STEPS, verbose=False)
    theirs = np.load(tmp_path / "params.npz")
    ours = {jax.tree_util.keystr(k): np.asarray(v)
            for k, v in jax.tree_util.tree_leaves_with_path(state.params)}
    assert sorted(theirs.files) == sorted(ours)
    diff = max(float(np.max(np.abs(theirs[k] - ours[k]))) for k in ours)
    assert diff < TOL, diff


if __name__ == "__main__":  # a child: python tests/test_parallel.py MODE OUT [ARG]
    mode, out_dir, *rest = sys.argv[1:]
    out_path = Path(out_dir)
    {"jit": lambda: _child_jit(rest[0], out_path), "pmap": lambda: _child_pmap(out_path),
     "checkpoint": lambda: _child_checkpoint(out_path),
     "errors": lambda: _child_errors(out_path),
     "process": lambda: _child_process(out_path)}[mode]()
