"""Experiment configs: `get_config()` ConfigDicts, command-line overrides, and the workdir files.

    python -m experiments.cnn_mnist --workdir runs/x --config.epochs=1 --config.dataset=mnist_5k
    python -m experiments.cnn_mnist --config=configs/fashion_mnist_cnn.py --workdir runs/f

`--config=FILE.py` (ml_collections' `config_flags` convention) takes the config from the
file's `get_config()`; `--config.KEY=VALUE` overrides apply after it.
Overrides are parsed as Python literals (`1e-3`, `True`, `(64, 64)`), else taken as
strings; a key the config lacks is a one-line error listing the keys it has.
The entries that use it, and how they end, are `jaxdl.entry`; a workdir's own files
(`config.json`, `results.json`) are `jaxdl.workdir`.
"""

import ast
import importlib.util
from collections.abc import Callable
from pathlib import Path

import ml_collections

from jaxdl.errors import UserError

USAGE = ("usage: python -m experiments.NAME [--config=FILE.py] [--workdir DIR] "
         "[--config.KEY=VALUE ...]")


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, str]):
    """Set dotted keys from strings; unknown keys and wrong types raise UserError."""
    flat = flatten(config.to_dict())
    for key, text in overrides.items():
        if key not in flat:
            raise UserError(f"unknown config key {key!r}; known keys: {', '.join(sorted(flat))}")
        value = _parse_value(text)
        old = flat[key]
        if isinstance(old, str) and not isinstance(value, str):
            value = text  # a string field keeps the text as typed (e.g. --config.cell=1)
        if isinstance(old, tuple) and isinstance(value, list):
            value = tuple(value)
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        try:
            if (value is None and old is not None) or (  # ConfigDict would accept these
                    isinstance(value, bool) and isinstance(old, int | float)
                    and not isinstance(old, bool)):
                raise TypeError(key)
            node[leaf] = value
        except TypeError:
            raise UserError(f"config key {key!r} expects {_a(type(old).__name__)}, got {text!r}; "
                            f"e.g. --config.{key}={old!r}") from None
    return config


def load_config_file(path: str) -> ml_collections.ConfigDict:
    """`get_config()` of a Python config file (`--config=configs/NAME.py`)."""
    file = Path(path).expanduser()
    if not file.is_file() or file.suffix != ".py":
        raise UserError(f"config file {file} not found; pass a .py file with get_config(), "
                        "e.g. --config=configs/fashion_mnist_cnn.py")
    spec = importlib.util.spec_from_file_location(f"_jaxdl_config_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
        raise UserError(f"config file {file} has no get_config(); define one that returns "
                        "an ml_collections.ConfigDict")
    return module.get_config()


def parse_args(argv: list[str], get_config: Callable[[], ml_collections.ConfigDict] | None,
               default_workdir: str, usage: str = USAGE,
               describe: Callable[[ml_collections.ConfigDict], str] = str):
    """Parse `--config=FILE.py`, `--workdir DIR` and `--config.KEY=VALUE` (also with a space
    instead of `=`). Without `get_config` (the generic runner) a config file is required."""
    overrides, workdir, config_file = {}, default_workdir, None
    args, help_asked = list(argv), False
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            help_asked = True
            continue
        name, eq, value = arg.partition("=")
        if not eq and name.startswith("--") and args and not args[0].startswith("--"):
            value, eq = args.pop(0), "="
        if name == "--workdir" and eq:
            workdir = value
        elif name == "--config" and eq:
            config_file = value
        elif name.startswith("--config.") and eq:
            overrides[name[len("--config."):]] = value
        else:
            raise UserError(f"unrecognised argument {arg!r}; {usage.splitlines()[0]}")
    if config_file is None and get_config is None:
        if help_asked:
            print(usage)
            raise SystemExit(0)
        raise UserError("no config given; pass --config=FILE.py (e.g. "
                        "--config=configs/fashion_mnist_cnn.py) or --config.recipe=NAME")
    config = load_config_file(config_file) if config_file is not None else get_config()
    if help_asked:  # the config's keys, after the overrides given with --help
        print(usage)
        print(describe(apply_overrides(config, overrides)))
        raise SystemExit(0)
    if not workdir:
        raise UserError("--workdir is empty; pass a directory for the run, e.g. "
                        "--workdir runs/x")
    return apply_overrides(config, overrides), workdir if "://" in workdir else Path(workdir)


def without(config: ml_collections.ConfigDict, keys) -> ml_collections.ConfigDict:
    """A copy of `config` without `keys`: an experiment's config less its own keys
    (`OWN_KEYS`) is the config of the recipe runs it makes, which refuse any key their
    recipe does not take."""
    return ml_collections.ConfigDict({k: v for k, v in config.to_dict().items()
                                      if k not in keys})


def flatten(d: dict, prefix: str = "") -> dict:
    """A nested dict's leaves by dotted key (`{"mesh.fsdp": 8, ...}`)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _a(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun
