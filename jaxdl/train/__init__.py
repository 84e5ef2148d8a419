"""How it is learned, identical for every task: state, step, optimizers, loop, checkpoints."""

from jaxdl.train.optim import make_optimizer, make_schedule, muon_adamw
from jaxdl.train.state import TrainState, create_train_state
from jaxdl.train.step import make_eval_step, make_train_step, reduce_metrics

__all__ = [
    "TrainState",
    "create_train_state",
    "make_eval_step",
    "make_optimizer",
    "make_schedule",
    "muon_adamw",
    "make_train_step",
    "reduce_metrics",
]
from jaxdl.train.parallel import (  # noqa: E402
    check_batch_size,
    compile_sharded_eval_step,
    compile_sharded_train_step,
    data_sharding,
    fit_options,
    initialize_distributed,
    is_main_process,
    local_copy,
    make_mesh,
    make_put_batch,
    needs_blocking,
    pmap_eval_step,
    pmap_train_step,
    process_shard,
    replicate_for_pmap,
    replicate_state,
    replicated,
    shard_batch,
    split_for_pmap,
    unreplicate,
)

__all__ += ["check_batch_size", "compile_sharded_eval_step", "compile_sharded_train_step",
            "data_sharding", "fit_options", "initialize_distributed", "is_main_process",
            "local_copy", "make_mesh", "make_put_batch", "needs_blocking", "pmap_eval_step",
            "pmap_train_step", "process_shard", "replicate_for_pmap", "replicate_state",
            "replicated", "shard_batch", "split_for_pmap", "unreplicate"]
