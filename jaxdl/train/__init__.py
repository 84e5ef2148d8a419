"""How it is learned, identical for every task: state, step, optimizers, loop, checkpoints."""

from jaxdl.train.optim import make_optimizer, make_schedule
from jaxdl.train.state import TrainState, create_train_state
from jaxdl.train.step import make_eval_step, make_train_step, reduce_metrics

__all__ = [
    "TrainState",
    "create_train_state",
    "make_eval_step",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "reduce_metrics",
]
