"""One of the 2 processes of tests/test_sharding.py's multi-process FSDP run: a tiny decoder
LM through the runner, its state split 8 ways over the 4 CPU devices of each of the two
processes (`mesh.fsdp=8`: every process holds half of every large leaf, and orbax writes
each process's shards), checkpointing every 2 steps:

    JAX_COORDINATOR_ADDRESS=127.0.0.1:PORT JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=P \\
        python tests/fsdp_process_child.py WORKDIR

The coordinator binds to 127.0.0.1 only (`FSDP_CHILD_BIND`). Prints `step N` before each
train step; `FSDP_CHILD_PAUSE_AT=N` sleeps there (so the test can SIGKILL the run after a
checkpoint and before the end).
"""

import os
import sys

from jaxdl.train import initialize_distributed
from jaxdl.train.placement import Placement
from tests.processes import announcing

STEPS = 8
TINY = {"num_layers": 2, "dim": 64, "num_heads": 4, "seq_len": 16, "batch_size": 16,
        "num_steps": STEPS, "batches_per_epoch": 4, "warmup_steps": 1, "dropout": 0.1,
        "checkpoint_every": 2, "log_every": 1, "val_windows": 16, "eval_batch_size": 16,
        "sample_tokens": 4, "distributed": True, "mesh.data": 1, "mesh.fsdp": 8}


def main(workdir: str) -> None:
    assert initialize_distributed(
        coordinator_bind_address=os.environ["FSDP_CHILD_BIND"], initialization_timeout=60)
    from jaxdl import recipes, run
    from jaxdl.config import apply_overrides

    Placement.train = announcing(Placement.train, os.environ.get("FSDP_CHILD_PAUSE_AT"))
    config = apply_overrides(recipes.get("decoder_lm").get_config(),
                             {k: repr(v) for k, v in TINY.items()})
    results = run.train(config, workdir)
    print(f"done step {results['step']} mesh {results['mesh']}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
