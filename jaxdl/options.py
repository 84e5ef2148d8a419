"""One table of every config key: its default, the values it may take, and one line of doc.

    Option("grad_accum_steps", 1, "K: each batch as K microbatches under lax.scan, one update",
           positive_int(1 << 16))

`COMMON` holds the keys every recipe takes (the runner, the mesh, precision); `MODEL`
the model knobs a recipe offers when its models have the field (`remat`,
`attention_impl`) or its loss the choice (`loss_impl`); a recipe lists its own keys in
the same form (`Recipe.options`). The table is read once, here: `config_of` builds a
recipe's default config from it, `complete` fills keys an older workdir's config.json
lacks, `validate` refuses a key the table lacks and checks every value before any work
(the values a key may take are `jaxdl.rules`), and `describe` / `markdown` give
`--help` and docs/options.md. Family keys that several recipes take with their own
defaults (`batch_size`, `learning_rate`, ...) have their rule and doc in `SHARED`, so a
recipe gives only the default.

A violation is one UserError naming the key, the value and what is allowed, e.g.
`config key 'dropout' is 1.5; allowed: numbers in [0.0, 1.0) (e.g. --config.dropout=0.1)`.
"""

import dataclasses
import difflib
from collections.abc import Iterable
from typing import Any

import ml_collections

from jaxdl.config import flatten
from jaxdl.errors import UserError
from jaxdl.rules import BOOL, MESH_SIZE, Check, Choice, Rule, count, positive_int

MAX_SEED = 2**31 - 1
MAX_BATCH = 1 << 20


@dataclasses.dataclass(frozen=True)
class Option:
    """A config key: `key` (dotted for nested ones, `mesh.fsdp`), its default, one line of
    doc and its rule (None: any value of the default's type; for a family key in `SHARED`,
    that entry's rule and doc)."""
    key: str
    default: Any
    doc: str = ""
    rule: Any = None


def _steps(text):
    from jaxdl.train.profile import parse_steps  # raises the one-line error itself

    parse_steps(text)


COMMON = (
    Option("recipe", "", "the family (names the workdir's recipe in config.json)"),
    Option("seed", 0, "seeds the initialisation, the batch order and every random draw",
           Rule(0, MAX_SEED, integer=True, example=0)),
    Option("devices", 1, "1: one device; 0: all devices of all processes (batches split); "
           "n: the first n", count(1 << 16, 1)),
    Option("distributed", False, "join a multi-host run (TPU VMs: nothing else to set)", BOOL),
    Option("mesh.data", -1, "batch split over this axis; -1: the devices left over", MESH_SIZE),
    Option("mesh.fsdp", 1, "batch and the large parameters and their moments split along "
           "this axis (FSDP)", MESH_SIZE),
    Option("mesh.tensor", 1, "attention heads and MLP width split along this axis", MESH_SIZE),
    Option("logical_axis_rules", (), "((logical name, mesh axis or None), ...) replacing "
           "jaxdl.train.sharding's table; (): that table"),
    Option("dtype", "float32", "compute dtype (matmuls, activations); params stay float32",
           Choice("float32", "bfloat16")),
    Option("opt_state_dtype", "float32", "optimizer moments' dtype",
           Choice("float32", "bfloat16")),
    Option("grad_accum_steps", 1, "K: each batch as K microbatches under lax.scan, one update",
           positive_int(1 << 16, 1)),
    Option("log_every", 50, "steps between train/* scalar rows (metrics.jsonl, TensorBoard); "
           "0: none", count(example=50)),
    Option("checkpoint_every", 0, "steps between checkpoints besides each epoch's end; 0: "
           "none", count(example=250)),
    Option("data_threads", 1, "threads building the next batches while a step runs; 0: none",
           count(256, example=1)),
    Option("data_workers", 0, "grain worker processes building batches instead "
           "(jaxdl.data.pipeline)", count(256, example=2)),
    Option("profile_steps", "", "'START:STOP': trace those steps into <workdir>/profile",
           Check(_steps, "'START:STOP' with 0 <= START < STOP", "10:15")),
    Option("verbose", True, "print fit's progress bar and per-epoch lines", BOOL),
)

MODEL = (
    Option("remat", "none", "recompute block activations in the backward pass: none | "
           "block (keep matmul outputs) | full (jaxdl.nn.remat)", Choice("none", "block", "full")),
    Option("attention_impl", "auto", "auto | xla | cudnn: flash attention on NVIDIA GPUs "
           "(jaxdl.nn.attention)", Choice("auto", "xla", "cudnn")),
    Option("loss_impl", "auto", "auto | plain | chunked: output head and loss by chunks, "
           "never the whole logits (jaxdl.tasks.chunked_loss)",
           Choice("auto", "plain", "chunked")),
)
MODEL_FIELDS = ("remat", "attention_impl")  # set on every module with the field (with_fields)

# Family keys: each recipe that has one gives its default; the rule and doc are these.
SHARED = {o.key: o for o in (
    Option("batch_size", 0, "examples per step (the global batch, over all devices)",
           positive_int(MAX_BATCH, 64)),
    Option("eval_batch_size", 0, "examples per evaluation batch",
           positive_int(MAX_BATCH, 256)),
    Option("epochs", 0, "passes over the training split", positive_int(10**6, 5)),
    Option("num_steps", 0, "train steps", positive_int(10**9, 1000)),
    Option("batches_per_epoch", 0, "steps per curve point and checkpoint",
           positive_int(10**9, 100)),
    Option("eval_every", 0, "steps between evaluations during training; 0: at the end",
           count(example=250)),
    Option("learning_rate", 0.0, "peak step size", Rule(1e-12, 10.0, example=1e-3)),
    Option("min_learning_rate", 0.0, "where the schedule ends", Rule(0.0, 10.0, example=1e-4)),
    Option("weight_decay", 0.0, "weight decay", Rule(0.0, 10.0, example=1e-4)),
    Option("dropout", 0.0, "dropout rate (training only)",
           Rule(0.0, 1.0, open_high=True, example=0.1)),
    Option("grad_clip_norm", 0.0, "clip the gradient's global norm to this; 0: off",
           Rule(0.0, example=1.0)),
    Option("warmup_steps", 0, "linear warmup steps", count(example=100)),
    Option("beta2", 0.0, "Adam's second-moment decay", Rule(0.0, 1.0, open_high=True,
                                                            example=0.99)),
    Option("seq_len", 0, "tokens per training window (the context)",
           positive_int(1 << 16, 64)),
    Option("image_size", 0, "image side in pixels", positive_int(4096, 48)),
    Option("num_layers", 0, "layers", positive_int(1024, 2)),
    Option("num_heads", 0, "attention heads", positive_int(1024, 4)),
    Option("dim", 0, "model width", positive_int(1 << 16, 128)),
    Option("prompt", "", "what `jaxdl sample` starts from by default"),
    Option("optimizer", "adam", "the optimizer (jaxdl.train.optim)"),
    Option("dataset", "auto", "the image source (jaxdl.data.sources)"),
    Option("data_dir", "", "a local IDX directory or TFDS data_dir, where the dataset needs "
           "one"),
)}


@dataclasses.dataclass(frozen=True)
class Default:
    """A recipe's own default for a `COMMON` key (text2img checkpoints every 250 steps)."""
    key: str
    default: Any


def shared(key: str, default, doc: str = "", rule=None) -> Option:
    """A family key with this recipe's default; the rule and doc from `SHARED` unless given."""
    base = SHARED[key]
    return Option(key, default, doc or base.doc, rule or base.rule)


def table(*groups: Iterable[Option]) -> dict[str, Option]:
    """Key -> Option; a key twice in one recipe's table is a bug, raised at import. A
    `Default` changes the default of a key given before it."""
    out = {}
    for option in (o for g in groups for o in g):
        if isinstance(option, Default):
            out[option.key] = dataclasses.replace(out[option.key], default=option.default)
            continue
        if option.key in out:
            raise ValueError(f"config key {option.key!r} is in the table twice")
        out[option.key] = option
    return out


def config_of(options: dict[str, Option], **values) -> ml_collections.ConfigDict:
    """The default config of a table, with `values` (recipe=...) set."""
    c = ml_collections.ConfigDict()
    for o in options.values():
        _set(c, o.key, values.get(o.key, o.default))
    return c


def complete(config, options: dict[str, Option]) -> None:
    """Fill in the keys `config` lacks (an older workdir's config.json) with defaults."""
    for o in options.values():
        if _get(config, o.key) is _MISSING:
            _set(config, o.key, o.default)


def validate(config, options: dict[str, Option]) -> None:
    """A key the table lacks (a typo in a config file would otherwise train on the default
    silently), then the first key (in the table's order) whose value breaks its rule: a
    UserError."""
    if unknown := unknown_keys(config, options):
        key = next((k for k in unknown if k.startswith("mesh.")), unknown[0])
        if key.startswith("mesh."):
            raise UserError(f"config key {key!r} is not a mesh axis; the axes are "
                            "data, fsdp, tensor (e.g. --config.mesh.fsdp=8)")
        near = difflib.get_close_matches(key, options, n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise UserError(f"config key {key!r} is not one the {config.get('recipe')} recipe "
                        f"takes ({hint}`--help` lists them); set a known key or remove it")
    for o in options.values():
        value, rule = _get(config, o.key), o.rule
        if value is _MISSING or rule is None or rule.ok(value):
            continue
        example = f" (e.g. --config.{o.key}={rule.example!r})" if rule.example is not None \
            else ""
        raise UserError(f"config key {o.key!r} is {value!r}; allowed: {rule.describe()}"
                        f"{example}")
    k = config.get("grad_accum_steps", 1)
    if config.get("batch_size", k) % k:
        raise UserError(f"config key 'grad_accum_steps' is {k}, which does not split "
                        f"batch_size {config.batch_size} into equal microbatches; use a "
                        f"divisor of {config.batch_size} (e.g. --config.grad_accum_steps=1)")


def unknown_keys(config, options: dict[str, Option]) -> list[str]:
    """The dotted keys of `config` that no option of the table names, sorted."""
    return sorted(k for k in flatten(config.to_dict()) if k not in options)


def drop_unknown(config, options: dict[str, Option]) -> list[str]:
    """Remove the keys `unknown_keys` names from `config`; returns them."""
    unknown = unknown_keys(config, options)
    for key in unknown:
        parent, _, leaf = key.rpartition(".")
        del (_get(config, parent) if parent else config)[leaf]
    return unknown


def describe(options: dict[str, Option], values=None) -> str:
    """`--help`: one line per key, its value (or default), what it may be and its doc."""
    width = max(len(k) for k in options)
    lines = []
    for o in options.values():
        value = o.default if values is None else _get(values, o.key)
        allowed = f" [{o.rule.describe()}]" if o.rule is not None else ""
        lines.append(f"  --config.{o.key:<{width}} = {value!r}  {o.doc}{allowed}")
    return "\n".join(lines)


def markdown_rows(options: Iterable[Option]) -> list[str]:
    """Rows of docs/options.md's tables: key, default, allowed values, doc."""
    rows = ["| key | default | allowed | what it does |", "|---|---|---|---|"]
    for o in options:
        allowed = o.rule.describe() if o.rule is not None else f"any {type(o.default).__name__}"
        doc = o.doc.replace("|", "\\|")
        rows.append(f"| `{o.key}` | `{o.default!r}` | {allowed.replace('|', '/')} | {doc} |")
    return rows


_MISSING = object()


def _get(config, key: str):
    node = config
    for part in key.split("."):
        if not hasattr(node, "get") or part not in node:
            return _MISSING
        node = node[part]
    return node


def _set(config, key: str, value) -> None:
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
        if p not in node:
            node[p] = ml_collections.ConfigDict()
        node = node[p]
    node[leaf] = value
