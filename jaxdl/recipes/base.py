"""What a recipe is: a family's default config, `build(config, data) -> Task`, its data, its
evaluators and its predict/sample functions. The runner (`jaxdl.run`) and the `jaxdl`
command know a family only through this interface, so a workdir's `config.json` (which
names its recipe) is all they need to rebuild the run.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import optax

from jaxdl.data.loader import ArrayLoader
from jaxdl.errors import UserError
from jaxdl.nn import count_params  # noqa: F401  (re-exported: recipes.count_params)
from jaxdl.nn.precision import dtype_of, with_dtype
from jaxdl.recipes import schema
from jaxdl.train import create_train_state, make_eval_step, parallel, sharding
from jaxdl.train.compile import compile_eval
from jaxdl.train.optim import with_state_dtype
from jaxdl.train.profile import parse_steps
from jaxdl.train.state import param_logical_specs


def base_config(recipe: str) -> ml_collections.ConfigDict:
    """The keys every recipe has; the runner reads them."""
    c = ml_collections.ConfigDict()
    c.recipe = recipe  # which family: names the workdir's recipe in config.json
    c.seed = 0  # seeds the initialisation, the batch order and every random draw
    c.devices = 1  # 1: one device; 0: all devices of all processes (batches split); n: first n
    c.distributed = False  # join a multi-host run (TPU VMs: nothing else to set)
    c.log_every = 50  # steps between train/* scalar rows (metrics.jsonl, TensorBoard)
    c.checkpoint_every = 0  # steps between checkpoints besides each epoch end (0: none)
    c.grad_accum_steps = 1  # K: each batch as K microbatches under lax.scan, one update
    c.dtype = "float32"  # compute dtype: float32 | bfloat16 (params stay float32)
    c.opt_state_dtype = "float32"  # optimizer moments: float32 | bfloat16
    c.data_threads = 1  # threads building the next batches while a step runs (0: none)
    c.data_workers = 0  # grain worker processes building batches instead (jaxdl.data.pipeline)
    c.profile_steps = ""  # "START:STOP": trace those steps into <workdir>/profile
    # The mesh (jaxdl.train.sharding): batch over data x fsdp, large parameters and their
    # moments split along fsdp, heads and MLP width along tensor; -1: the devices left.
    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    c.logical_axis_rules = ()  # ((logical name, mesh axis or None), ...); (): the default table
    return c


@dataclasses.dataclass
class Task:
    """A built run: the model, what it learns, how, and its initial state."""
    model: Any
    loss_fn: Callable  # task_loss(params, batch, rng, model, train) -> (loss, metrics)
    tx: optax.GradientTransformation
    example: Any  # example model input(s): an array or a tuple of positional inputs
    preprocess: Callable | None = None  # on device, inside the step: (batch, rng, train)
    learning_rate: Callable | float | None = None  # the schedule, for the logs
    ema_decay: float | None = None
    jit_init: bool = False  # initialise in one compiled call (big models) or op by op
    extra: dict = dataclasses.field(default_factory=dict)  # family specifics (vocab, ...)

    def _init(self, rng):
        return create_train_state(self.model, self.tx, rng, self.example,
                                  ema_decay=self.ema_decay)

    def init_state(self, seed: int, shardings=None):
        """The initial state; with `shardings` (`state_shardings`) it is created in one
        compiled call directly in its shards, never whole on one device (FSDP)."""
        rng = jax.random.PRNGKey(seed)
        if shardings is not None:
            return jax.jit(self._init, out_shardings=shardings)(rng)
        return jax.jit(self._init)(rng) if self.jit_init else self._init(rng)

    def abstract_state(self, seed: int = 0):
        """Shapes and dtypes only: the template a restore needs, nothing computed."""
        return jax.eval_shape(self._init, jax.random.PRNGKey(seed))

    def state_shardings(self, mesh, rules=sharding.LOGICAL_AXIS_RULES):
        """A `NamedSharding` per state leaf on `mesh` from the model's logical axis names
        (`jaxdl.train.sharding`): FSDP along `fsdp`, tensor parallelism along `tensor`."""
        return sharding.state_shardings(self.abstract_state(), param_logical_specs(
            self.model, self.example), mesh, rules)


@dataclasses.dataclass
class Context:
    """Where the runner's evaluators run: the mesh (or None), the workdir, who writes."""
    mesh: Any = None
    workdir: Any = None  # the run's workdir (Path)
    is_main: bool = True
    verbose: bool = True
    figures: bool = True  # write figures into the workdir (training: yes; `jaxdl eval`: no)
    rules: Any = sharding.LOGICAL_AXIS_RULES  # places activation constraints on the mesh

    def put_batch(self, batch):
        return batch if self.mesh is None else parallel.shard_batch(batch, self.mesh)

    def compile_eval(self, fn: Callable) -> Callable:
        """`fn(state, batch) -> out` jitted for this context's mesh (XLA's eval options)."""
        if self.mesh is None:
            return compile_eval(fn)
        return parallel.compile_sharded_eval_step(fn, self.mesh, rules=self.rules)

    def eval_step(self, task: Task, **kw) -> Callable:
        return self.compile_eval(make_eval_step(task.loss_fn, task.model,
                                                preprocess=task.preprocess, **kw))

    def local(self, tree):
        """The whole of `tree` on this process's first device, for what runs per process
        (generation, figures). Arrays split across processes (FSDP over hosts) are
        gathered, so every process calls this, also where only process 0 draws."""
        return tree if self.mesh is None else parallel.local_copy(tree)

    @property
    def shard(self) -> dict:
        """An eval loader's keywords: on a mesh each process loads its slice of a batch."""
        return {} if self.mesh is None else parallel.process_shard()

    def eval_loader(self, arrays: dict, batch_size: int) -> "ArrayLoader":
        """One unshuffled pass over `arrays` in batches that split over the mesh."""
        n = len(next(iter(arrays.values())))
        return ArrayLoader(arrays, self.eval_batch_size(batch_size, n), shuffle=False,
                           **self.shard)

    def eval_batch_size(self, size: int, n: int) -> int:
        """At most `n` (no batch larger than the split) and a multiple of the devices."""
        k = 1 if self.mesh is None else self.mesh.devices.size
        size = max(min(size, n), 1)
        return -(-size // k) * k

    def say(self, text: str) -> None:
        """Print from process 0 (through tqdm, so a running progress bar stays whole)."""
        if self.is_main and self.verbose:
            from tqdm.auto import tqdm

            tqdm.write(text)


class Recipe:
    """One family. Subclasses set `name`, `description` and implement the methods below."""

    name = ""
    description = ""
    samples = False  # `jaxdl sample` applies
    batch_samples = False  # `jaxdl sample` takes several --prompt and --samples K
    predicts = False  # `jaxdl predict` applies (image classifiers)
    throughput_unit = "examples"  # what the loss's `count` counts, for results.json

    rules: dict = {}  # the recipe's own key rules (`jaxdl.recipes.schema.Rule`), beside RULES

    def get_config(self) -> ml_collections.ConfigDict:
        raise NotImplementedError

    def validate(self, config) -> None:
        """Every key's type and range (schema.RULES and `rules`), before any work."""
        schema.validate(config, {**schema.RULES, **self.rules})
        parse_steps(config.get("profile_steps", ""))
        for axis, size in (config.get("mesh") or {}).items():
            if axis not in parallel.MESH_AXES or isinstance(size, bool) or not isinstance(
                    size, int) or not (size == -1 or size >= 1):
                raise UserError(f"config key 'mesh.{axis}' is {size!r}; allowed: the axes "
                                f"{', '.join(parallel.MESH_AXES)}, each an integer >= 1 or -1 "
                                "(the devices left over), e.g. --config.mesh.fsdp=8")
        k = config.get("grad_accum_steps", 1)
        if config.get("batch_size", k) % k:
            raise UserError(f"config key 'grad_accum_steps' is {k}, which does not split "
                            f"batch_size {config.batch_size} into equal microbatches; use a "
                            f"divisor of {config.batch_size} (e.g. --config.grad_accum_steps=1)")

    def check(self, config, data) -> None:
        """Rules that need the data (a prompt that must encode), before training."""

    def load_data(self, config):
        """Everything read from disk or generated; may resolve `auto` keys in `config`."""
        raise NotImplementedError

    def build(self, config, data) -> Task:
        """The family's Task (`build_task`) at the config's precision: the model computes in
        `dtype` (jaxdl.nn.precision), the optimizer keeps its moments in `opt_state_dtype`."""
        task = self.build_task(config, data)
        dtype, state_dtype = config.get("dtype", "float32"), config.get("opt_state_dtype",
                                                                         "float32")
        if dtype != "float32":
            task = dataclasses.replace(task, model=with_dtype(task.model, dtype_of(dtype)))
        if state_dtype != "float32":
            task = dataclasses.replace(task, tx=with_state_dtype(task.tx,
                                                                 dtype_of(state_dtype)))
        return task

    def build_task(self, config, data) -> Task:
        raise NotImplementedError

    def train_loader(self, config, data, *, process_index: int = 0, process_count: int = 1):
        raise NotImplementedError

    def training_length(self, config) -> dict:
        """fit's `epochs` or `num_steps`."""
        if "epochs" in config:
            return {"epochs": config.epochs}
        return {"num_steps": config.num_steps}

    def evaluators(self, config, task: Task, data, ctx: Context) -> list:
        """fit's periodic evaluators (`jaxdl.train.loop.Evaluator`)."""
        return []

    def evaluate(self, config, task: Task, data, state, ctx: Context) -> dict:
        """The final metrics: in `results.json` after training and in `eval.json` from
        `jaxdl eval` (same checkpoint, same numbers)."""
        raise NotImplementedError

    def report(self, config, task: Task, data, state, history: list, ctx: Context,
               writer) -> dict:
        """After training: figures, TensorBoard images/text, and results beyond `evaluate`."""
        return {}

    def sample(self, config, task: Task, data, state, *, prompt, num, seed, out) -> str:
        raise UserError(f"`jaxdl sample` does not apply to a {self.name} run; "
                        "use `jaxdl eval` or `jaxdl predict`")

    def predict(self, config, task: Task, data, state, images: list) -> list:
        raise UserError(f"`jaxdl predict` applies to image classifiers, not to a {self.name} "
                        "run; use `jaxdl sample` or `jaxdl eval`")


def steady_rate(history: list[dict]) -> float:
    """`count` per second over the epochs after the first (which includes compilation)."""
    steady = history[1:] if len(history) > 1 else history
    return sum(r["count"] for r in steady) / max(sum(r["seconds"] for r in steady), 1e-9)


def steady_step_rate(history: list[dict]) -> float:
    """Train steps per second over the epochs after the first (or the one there is)."""
    steps = [r["step"] - p for r, p in zip(history, [0] + [r["step"] for r in history],
                                            strict=False)]
    pairs = list(zip(steps, (r["seconds"] for r in history), strict=True))
    steady = pairs[1:] if len(pairs) > 1 else pairs
    return sum(s for s, _ in steady) / max(sum(t for _, t in steady), 1e-9)
