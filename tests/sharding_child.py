"""Child of tests/test_sharding.py, on 8 fake CPU devices (fixed before JAX starts, hence a
process of its own): 5 train steps of the decoder LM, the CNN and the diffusion UNet on one
device, and the same 5 steps under each mesh, each from the one-device run's state before it
(see `train`). Prints one JSON line `REPORT {...}`: per recipe and mesh, the losses, the
largest relative difference of a step's update from the one-device step's, and the sharding
facts the test asserts."""

import json
import math
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

from jaxdl import recipes
from jaxdl.train import make_mesh, make_train_step, parallel, sharding
from jaxdl.train.checkpoint import Checkpointer
from jaxdl.train.compile import compile_step
from jaxdl.train.placement import Placement

STEPS = 5
ONLY = None  # a debugging knob: the recipes to run (None: all)
TINY = {
    # The default recipe, Muon included: its orthogonalised updates agree across meshes to
    # 2e-6 here, where AdamW's sign-like steps on the zero-initialised output projections
    # reached 4e-5 (measured, AVX2 EPYC).
    "decoder_lm": {"num_layers": 2, "dim": 64, "num_heads": 4, "seq_len": 16, "batch_size": 16,
                   "warmup_steps": 1},
    "image_classifier": {"dataset": "synthetic", "batch_size": 16},
    "text2img": {"dataset": "mnist_5k", "channels": (8, 16), "attention_levels": (1,),
                 "cross_attention_levels": (1,), "num_heads": 2, "groups": 4,
                 "text_layers": 1, "text_dim": 16, "text_heads": 2, "num_timesteps": 50,
                 "batch_size": 16, "warmup_steps": 1},
}
MESHES = {"data8": (8, 1, 1), "fsdp8": (1, 8, 1), "data2_fsdp4": (2, 4, 1),
          "data2_fsdp2_tensor2": (2, 2, 2)}
MESHES_OF = {"image_classifier": ("fsdp8",),  # why: test_sharding.py
             "text2img": ("fsdp8", "data2_fsdp2_tensor2")}


def batches(recipe, config, data):
    loader = recipe.train_loader(config, data)
    out, epoch = [], 0
    while len(out) < STEPS:
        out += list(loader.epoch(epoch))[: STEPS - len(out)]
        epoch += 1
    return out


def train(task, batches, mesh=None, accum=1, follow=None):
    """`(final state, losses, states, update_diff)`; `states`: the state before each step
    and after the last, on the host (without `follow`).

    `follow`: the one-device run's states. Each step on `mesh` then starts from that step's
    one-device state (placed on the mesh: no initialisation compiled per mesh), and
    `update_diff` is the largest, over the steps, of |mesh update - one-device update| /
    |one-device update| (L2 norms over all parameters). Each step is so compared with its
    own counterpart, relative to what it changes: left to run free, Adam's near-sign steps
    on near-zero gradients grow a 1e-6 rounding difference to 5e-4 in the loss within five
    steps (MyNet under (fsdp 8), measured in CI), and one such element alone moves by 2e-3
    (twice the learning rate) in a single step from the same state."""
    fn = make_train_step(task.loss_fn, task.model, preprocess=task.preprocess,
                         grad_accum_steps=accum)
    state = task.init_state(0) if follow is None else follow[0]
    if mesh is None:
        step, put = compile_step(fn), (lambda b: b)
    else:
        state, step, kw = parallel.place_training(state, fn, mesh,
                                                  shardings=shardings_of(task, mesh))
        put = kw["put_batch"]
    losses, states, diff = [], [jax.device_get(state)], 0.0
    for i, b in enumerate(batches):
        if follow is not None:
            state = jax.device_put(follow[i], jax.tree.map(lambda x: x.sharding, state))
        state, metrics = step(state, put(b))
        jax.block_until_ready(state)
        losses.append(float(metrics["loss_sum"] / metrics["count"]))
        if follow is None:
            states.append(jax.device_get(state))
        else:
            diff = max(diff, update_diff(follow[i], follow[i + 1], state))
    return state, losses, states, diff


def update_diff(before, want, got) -> float:
    """|got - want| / |want - before| over all parameters (L2 norms, float32)."""
    def norm(a, b):
        return math.sqrt(sum(
            float(np.sum((np.asarray(x, np.float32) - np.asarray(y, np.float32)) ** 2))
            for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True)))
    return norm(jax.device_get(got), want) / norm(want, before)


def split_facts(state, ways: int) -> dict:
    """Which large leaves are not split `ways` ways, and the bytes per device vs the whole."""
    unsplit, small = [], 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        shard = math.prod(leaf.sharding.shard_shape(leaf.shape))
        if leaf.size > sharding.MIN_SHARD_SIZE and shard * ways != leaf.size:
            unsplit.append(jax.tree_util.keystr(path))
        if shard == leaf.size:
            small += leaf.size * leaf.dtype.itemsize
    return {"unsplit": unsplit, "unsharded_bytes": small, **sharding.state_bytes(state)}


def template(task, shardings):
    """The abstract state placed as `shardings` (a tree, or one sharding for every leaf)."""
    abstract = task.abstract_state()
    if not isinstance(shardings, type(abstract)):
        shardings = jax.tree.map(lambda _: shardings, abstract)
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract, shardings)


def shardings_of(task, mesh):
    return Placement(mesh).state_shardings(task.abstract_state(), task.logical_specs())


def same_bits(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) and x.dtype == y.dtype
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def restore_across_meshes(task, state, root: Path) -> dict:
    """Save the FSDP-8 state; restore it onto other meshes and one device; save the
    one-device copy and restore that onto FSDP-8 again. True where bitwise equal."""
    want = jax.device_get(state)
    targets = {"data8": parallel.replicated(make_mesh()),
               "data2_fsdp2_tensor2": shardings_of(
                   task, make_mesh(data=2, fsdp=2, tensor=2)),
               "one_device": jax.sharding.SingleDeviceSharding(jax.devices()[0])}
    ckpt = Checkpointer(root / "fsdp8")
    ckpt.save(5, state, {})
    ckpt.wait()
    out = {}
    for name, shardings in targets.items():
        restored, _, _ = ckpt.restore_latest(template(task, shardings))
        out[name] = same_bits(restored, want)
        if name == "one_device":
            single = restored
    ckpt.close()
    back = Checkpointer(root / "one")
    back.save(5, single, {})
    back.wait()
    fsdp8 = shardings_of(task, make_mesh(fsdp=8))
    restored, _, _ = back.restore_latest(template(task, fsdp8))
    back.close()
    out["one_device_to_fsdp8"] = same_bits(restored, want) and all(
        a.sharding == s for a, s in zip(jax.tree.leaves(restored), jax.tree.leaves(fsdp8),
                                        strict=True))
    return out


def with_options(recipe, tiny, data, todo) -> dict:
    """bfloat16 compute, remat of each block and 2 microbatches per step, on one device and
    on (data 2, fsdp 2, tensor 2): the microbatches are split from a batch that is already
    sharded over data and fsdp, so a wrong split would train on other examples."""
    config = recipe.get_config()
    config.update({**tiny, "dtype": "bfloat16", "remat": "block"})
    task = recipe.build(config, data)
    _, one_losses, follow, _ = train(task, todo, accum=2)
    _, losses, _, diff = train(task, todo, make_mesh(data=2, fsdp=2, tensor=2),
                               accum=2, follow=follow)
    return {"decoder_lm_options/one": {"losses": one_losses},
            "decoder_lm_options/data2_fsdp2_tensor2": {"losses": losses,
                                                       "update_diff": diff}}


def main(root: Path) -> None:
    assert jax.device_count() == 8, jax.devices()
    report = {}
    for name, tiny in TINY.items():
        if ONLY and name not in ONLY:
            continue
        recipe = recipes.get(name)
        config = recipe.get_config()
        config.update(tiny)
        data = recipe.load_data(config)
        task = recipe.build(config, data)
        todo = batches(recipe, config, data)
        _, one_losses, follow, _ = train(task, todo)
        report[f"{name}/one"] = {"losses": one_losses}
        for mesh_name, (d, f, t) in MESHES.items():
            if mesh_name not in MESHES_OF.get(name, MESHES):
                continue
            mesh = make_mesh(data=d, fsdp=f, tensor=t)
            state, losses, _, diff = train(task, todo, mesh, follow=follow)
            entry = {"losses": losses, "update_diff": diff}
            if mesh_name == "fsdp8":
                entry.update(split_facts(state, 8))
                if name == "decoder_lm":
                    report["restore"] = restore_across_meshes(task, state, root)
            report[f"{name}/{mesh_name}"] = entry
            print(name, mesh_name, "done", flush=True)
        if name == "decoder_lm":  # the other options on the 3-axis mesh, against one device
            report.update(with_options(recipe, tiny, data, todo))
    print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
