"""How it is learned, identical for every task: state, step, optimizers, loop, checkpoints.

The public API is exported here; each name has one home module (listed in
docs/recipes.md, "The public API")."""

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
from jaxdl.train.compile import compile_step  # noqa: E402
from jaxdl.train.guards import NonFiniteLoss, Preempted  # noqa: E402
from jaxdl.train.loop import Evaluator, evaluate, fit, predict  # noqa: E402
from jaxdl.train.placement import Placement  # noqa: E402

__all__ += ["Evaluator", "NonFiniteLoss", "Placement", "Preempted", "compile_step", "evaluate",
            "fit", "predict"]
from jaxdl.train.mesh import (  # noqa: E402
    check_batch_size,
    initialize_distributed,
    is_main_process,
    make_mesh,
    process_shard,
)
from jaxdl.train.parallel import (  # noqa: E402
    compile_sharded_eval_step,
    compile_sharded_train_step,
    data_sharding,
    fit_options,
    local_copy,
    make_put_batch,
    needs_blocking,
    replicate_state,
    replicated,
    shard_batch,
)
from jaxdl.train.pmap import (  # noqa: E402
    pmap_eval_step,
    pmap_train_step,
    replicate_for_pmap,
    split_for_pmap,
    unreplicate,
)

__all__ += ["check_batch_size", "compile_sharded_eval_step", "compile_sharded_train_step",
            "data_sharding", "fit_options", "initialize_distributed", "is_main_process",
            "local_copy", "make_mesh", "make_put_batch", "needs_blocking", "pmap_eval_step",
            "pmap_train_step", "process_shard", "replicate_for_pmap", "replicate_state",
            "replicated", "shard_batch", "split_for_pmap", "unreplicate"]
