"""Child of test_pretrained: a decoder-LM run's state started from a GPT-2 directory
(`init_from`) as the runner makes it, under a mesh and a compute dtype given on the
command line; prints one JSON line: whether every parameter is the checkpoint's, their
dtypes, the model's compute dtype, how the largest parameter is split, and whether
`Placement.like` places the checkpoint as the state holds it.

    python -m tests.pretrained_child DIR FSDP TENSOR DTYPE   # 4 fake CPU devices
"""

import json
import sys

import jax
import numpy as np

from jaxdl import pretrained, recipes
from jaxdl.train.placement import Placement


def main(directory: str, fsdp: int, tensor: int, dtype: str) -> dict:
    recipe = recipes.get("decoder_lm")
    config = recipe.get_config()
    config.update({"init_from": f"hf:{directory}", "seq_len": 32, "batch_size": 8,
                   "dtype": dtype})
    config.mesh.update(fsdp=fsdp, tensor=tensor)
    recipe.validate(config)  # the steps of jaxdl.run.train, up to the first state
    placement = Placement.for_run(config.batch_size, devices=config.devices,
                                  distributed=config.distributed,
                                  rules=config.logical_axis_rules, **config.mesh)
    data = recipe.load_data(config)
    recipe.check(config, data)
    task = recipe.build(config, data)
    state, _ = placement.init_state(task.init, config.seed, task.logical_specs(),
                                    params=task.pretrained)
    want = pretrained.read_gpt2(config.init_from).params
    want["pos"]["table"] = want["pos"]["table"][:config.seq_len]
    got = jax.tree_util.tree_flatten_with_path(state.params)[0]
    same = all(np.array_equal(np.asarray(a), b)
               for (_, a), b in zip(got, jax.tree.leaves(want), strict=True))
    placed = placement.like(want, state.params)  # how the final report evaluates the start
    like = all(a.sharding == b.sharding and np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(jax.tree.leaves(placed), jax.tree.leaves(state.params),
                               strict=True))
    path, big = max(got, key=lambda kv: kv[1].size)
    return {"same": same, "like": like, "dtypes": sorted({str(a.dtype) for _, a in got}),
            "compute": jax.numpy.dtype(task.model.dtype).name,
            "largest": jax.tree_util.keystr(path), "shape": list(big.shape),
            "shard": list(big.addressable_shards[0].data.shape),
            "devices": len(big.sharding.device_set)}


if __name__ == "__main__":
    directory, fsdp, tensor, dtype = sys.argv[1:5]
    print(json.dumps(main(directory, int(fsdp), int(tensor), dtype)))
