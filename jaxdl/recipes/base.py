"""What a recipe is: a family's default config, `build(config, data) -> Task`, its data, its
evaluators and its predict/sample functions. The runner (`jaxdl.run`) and the `jaxdl`
command know a family only through this interface, so a workdir's `config.json` (which
names its recipe) is all they need to rebuild the run.
"""

import dataclasses
import functools
import sys
from collections.abc import Callable
from typing import Any

import jax
import optax

from jaxdl import options
from jaxdl.data.loader import ArrayLoader
from jaxdl.errors import UserError
from jaxdl.nn.fields import with_fields
from jaxdl.nn.precision import dtype_of
from jaxdl.train import create_train_state, make_eval_step
from jaxdl.train.optim import with_state_dtype
from jaxdl.train.placement import Placement
from jaxdl.train.state import param_logical_specs


def configure_model(model, config):
    """`model` with the config's model knobs set on every module that has the field
    (TextToImage's encoder and UNet alike): `dtype` (jaxdl.nn.precision) and
    `options.MODEL_FIELDS` (remat, attention_impl). The one way a knob reaches a model;
    `Recipe.build` applies it, and so does any builder that outside callers use."""
    fields = {k: config[k] for k in options.MODEL_FIELDS if k in config}
    if config.get("dtype", "float32") != "float32":
        fields["dtype"] = dtype_of(config.dtype)
    return with_fields(model, **fields) if fields else model


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
    extra: dict = dataclasses.field(default_factory=dict)  # family specifics (vocab, ...)
    pretrained: Any = None  # params to start from (host arrays: init_from), else drawn

    def init(self, rng, params=None):
        """The fresh state `rng` draws, with `params` in place of the drawn parameters
        where given (`jaxdl.train.placement.Placement.init_state` places it on a mesh)."""
        return create_train_state(self.model, self.tx, rng, self.example,
                                  ema_decay=self.ema_decay, params=params)

    def init_state(self, seed: int):
        """The initial state on one device (on a mesh: `Placement.init_state`)."""
        return Placement().init_state(self.init, seed, params=self.pretrained)[0]

    def abstract_state(self, seed: int = 0):
        """Shapes and dtypes only: the template a restore needs, nothing computed."""
        return jax.eval_shape(self.init, jax.random.PRNGKey(seed))

    def logical_specs(self):
        """The parameters' logical axis names (`jaxdl.nn.sharding`), for `Placement`."""
        return param_logical_specs(self.model, self.example)


@dataclasses.dataclass
class Context:
    """What the runner hands the recipe's evaluators: where the run lives (`placement`:
    the mesh, compiled evaluation, batch placement), its workdir, and who writes."""
    placement: Placement = dataclasses.field(default_factory=Placement)
    workdir: Any = None  # the run's workdir (Path)
    is_main: bool = True
    verbose: bool = True
    figures: bool = True  # write figures into the workdir (training: yes; `jaxdl eval`: no)

    def eval_step(self, task: Task, **kw) -> Callable:
        """The task's eval step, compiled for the placement."""
        return self.placement.compile_eval(make_eval_step(task.loss_fn, task.model,
                                                          preprocess=task.preprocess, **kw))

    def eval_loader(self, arrays: dict, batch_size: int) -> "ArrayLoader":
        """One unshuffled pass over `arrays` in batches that split over the mesh."""
        n = len(next(iter(arrays.values())))
        return ArrayLoader(arrays, self.placement.eval_batch_size(batch_size, n),
                           shuffle=False, **self.placement.shard)

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
    sample_options: tuple = ()  # `jaxdl sample`'s family flags it takes (text2img: --out, ...)
    predicts = False  # `jaxdl predict` applies (image classifiers)
    throughput_unit = "examples"  # what the loss's `count` counts, for results.json

    options: tuple = ()  # the recipe's own keys (`jaxdl.options`: Option, shared, Default)
    model_options: tuple = ()  # the keys of `options.MODEL` it offers (remat, ...)

    @functools.cached_property
    def table(self) -> dict:
        """Every key of this recipe's config: `options.COMMON`, the model knobs it offers,
        its own keys. The one place a default, rule or doc of its config comes from."""
        model = [o for o in options.MODEL if o.key in self.model_options]
        return options.table(options.COMMON, model, self.options)

    def get_config(self):
        return options.config_of(self.table, recipe=self.name)

    def validate(self, config, *, saved: bool = False) -> None:
        """Every key's type and range, before any work; keys an older workdir's config.json
        lacks are filled in with their defaults first (the shared ones; a family's own
        keys keep what their absence meant, e.g. decoder_lm's NANOGPT). A key the table
        lacks is an error, except in a `saved` config.json (a key another jaxdl version
        wrote): there it is named in one notice and dropped, so the run still loads."""
        options.complete(config, {k: o for k, o in self.table.items() if k not in
                                  {o.key for o in self.options}})
        if saved and (unknown := options.drop_unknown(config, self.table)):
            print(f"note: this run's config.json has keys this jaxdl does not take "
                  f"({', '.join(unknown)}); they are ignored", file=sys.stderr)
        options.validate(config, self.table)

    def check(self, config, data) -> None:
        """Rules that need the data (a prompt that must encode), before training."""

    def load_data(self, config):
        """Everything read from disk or generated; may resolve `auto` keys in `config`."""
        raise NotImplementedError

    def build(self, config, data) -> Task:
        """The family's Task (`build_task`) with the model knobs applied (`configure_model`);
        the optimizer keeps its moments in `opt_state_dtype`."""
        task = self.build_task(config, data)
        task = dataclasses.replace(task, model=configure_model(task.model, config))
        state_dtype = config.opt_state_dtype
        if state_dtype != "float32":
            task = dataclasses.replace(task, tx=with_state_dtype(task.tx,
                                                                 dtype_of(state_dtype)))
        return task

    def build_task(self, config, data) -> Task:
        raise NotImplementedError

    def train_loader(self, config, data, **loader_kw):
        """The training batches; `loader_kw` (`process_index`, `process_count`, `pipeline`)
        go to the loader as they are (`jaxdl.data.loader`)."""
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

    def check_sample(self, num: int | None, **options) -> None:
        """`jaxdl sample`'s values for this family (`options`: the `sample_options` given),
        refused in one line before the run is restored."""

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
