"""Child of tests/test_sharding.py, on 8 fake CPU devices (fixed before JAX starts, hence a
process of its own): 5 train steps of the decoder LM, the CNN and the diffusion UNet on one
device and under each mesh, from the same initial state and batches. Prints one JSON line
`REPORT {...}`: per recipe and mesh, the losses, the largest parameter difference from the
one-device run, and the sharding facts the test asserts."""

import json
import math
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

from jaxdl import recipes
from jaxdl.train import make_train_step, parallel, sharding
from jaxdl.train.checkpoint import Checkpointer
from jaxdl.train.compile import compile_step

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
MESHES_OF = {"image_classifier": ("fsdp8",)}  # see test_sharding


def batches(recipe, config, data):
    loader = recipe.train_loader(config, data)
    out, epoch = [], 0
    while len(out) < STEPS:
        out += list(loader.epoch(epoch))[: STEPS - len(out)]
        epoch += 1
    return out


def train(task, batches, mesh=None):
    state = task.init_state(0)
    fn = make_train_step(task.loss_fn, task.model, preprocess=task.preprocess)
    if mesh is None:
        step, put = compile_step(fn), (lambda b: b)
    else:
        state, step, kw = parallel.place_training(state, fn, mesh,
                                                  shardings=task.state_shardings(mesh))
        put = kw["put_batch"]
    losses = []
    for b in batches:
        state, metrics = step(state, put(b))
        jax.block_until_ready(state)
        losses.append(float(metrics["loss_sum"] / metrics["count"]))
    return state, losses


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


def same_bits(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) and x.dtype == y.dtype
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def restore_across_meshes(task, state, root: Path) -> dict:
    """Save the FSDP-8 state; restore it onto other meshes and one device; save the
    one-device copy and restore that onto FSDP-8 again. True where bitwise equal."""
    want = jax.device_get(state)
    targets = {"data8": parallel.replicated(parallel.make_mesh()),
               "data2_fsdp2_tensor2": task.state_shardings(
                   parallel.make_mesh(data=2, fsdp=2, tensor=2)),
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
    fsdp8 = task.state_shardings(parallel.make_mesh(fsdp=8))
    restored, _, _ = back.restore_latest(template(task, fsdp8))
    back.close()
    out["one_device_to_fsdp8"] = same_bits(restored, want) and all(
        a.sharding == s for a, s in zip(jax.tree.leaves(restored), jax.tree.leaves(fsdp8),
                                        strict=True))
    return out


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
        one, one_losses = train(task, todo)
        report[f"{name}/one"] = {"losses": one_losses}
        for mesh_name, (d, f, t) in MESHES.items():
            if mesh_name not in MESHES_OF.get(name, MESHES):
                continue
            mesh = parallel.make_mesh(data=d, fsdp=f, tensor=t)
            state, losses = train(task, todo, mesh)
            diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                       for a, b in zip(jax.tree.leaves(one.params),
                                       jax.tree.leaves(state.params), strict=True))
            entry = {"losses": losses, "max_param_diff": diff}
            if mesh_name == "fsdp8":
                entry.update(split_facts(state, 8))
                if name == "decoder_lm":
                    report["restore"] = restore_across_meshes(task, state, root)
            report[f"{name}/{mesh_name}"] = entry
            print(name, mesh_name, "done", flush=True)
    print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
