"""Experiment configs: `get_config()` ConfigDicts, command-line overrides, and the workdir files.

    python -m experiments.cnn_mnist --workdir runs/x --config.epochs=1 --config.dataset=mnist_5k
    python -m experiments.cnn_mnist --config=configs/fashion_mnist_cnn.py --workdir runs/f

`--config=FILE.py` (ml_collections' `config_flags` convention) takes the config from the
file's `get_config()`; `--config.KEY=VALUE` overrides apply after it.
Overrides are parsed as Python literals (`1e-3`, `True`, `(64, 64)`), else taken as
strings; a key the config lacks is a one-line error listing the keys it has.
`run_experiment` turns any `UserError` into that one line on stderr and exit status 2
(a diverged loss, `jaxdl.train.guards.NonFiniteLoss`, is one). A preempted run
(`jaxdl.train.guards.Preempted`, raised by `fit` after it saved a checkpoint) is a
`SystemExit` with status 0 (130 after Ctrl-C): it passes through, so the process exits
and the scheduler can restart the same command, which resumes.
"""

import ast
import importlib.util
import json
import os
import sys
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
    flat = _flatten(config.to_dict())
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
               default_workdir: str, usage: str = USAGE):
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
    if help_asked:
        print(usage)
        print(config)
        raise SystemExit(0)
    if not workdir:
        raise UserError("--workdir is empty; pass a directory for the run, e.g. "
                        "--workdir runs/x")
    return apply_overrides(config, overrides), workdir if "://" in workdir else Path(workdir)


def write_json(path: str | Path, data: dict) -> Path:
    """Write atomically (a temporary name, then a rename): a kill mid-write leaves the old
    file, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)
    return path


def _json_default(value):
    if isinstance(value, tuple | set):
        return list(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def save_config(config: ml_collections.ConfigDict, workdir: Path) -> Path:
    return write_json(Path(workdir) / "config.json", config.to_dict())


def load_config(workdir: str | Path) -> ml_collections.ConfigDict:
    path = Path(workdir) / "config.json"
    if not path.exists():
        raise UserError(f"{path} not found; pass the --workdir of a finished or running experiment")
    return ml_collections.ConfigDict(read_json(path))


def read_json(path: str | Path) -> dict:
    """A small JSON file of a workdir; a damaged one is a one-line error naming it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path} is damaged (not valid JSON); restore it or use a fresh "
                        "--workdir") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is damaged (holds a {type(data).__name__}, not an object); "
                        "restore it or use a fresh --workdir")
    return data


def write_results(workdir: Path, results: dict) -> Path:
    return write_json(Path(workdir) / "results.json", results)


def check_workdir(workdir: Path) -> None:
    """Fail before any work if the workdir cannot be written."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / ".write_probe"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"workdir {workdir} is not writable ({e.strerror}); "
                        "pass a writable --workdir") from None


def run_experiment(main: Callable, get_config: Callable, default_workdir: str,
                   argv: list[str] | None = None):
    """Command-line entry: parse, check the workdir, run `main(config, workdir)` (which saves
    config.json once the data has resolved its `auto` keys)."""
    argv = sys.argv[1:] if argv is None else argv
    return run_main(lambda: parse_args(argv, get_config, default_workdir), main)


def run_main(parse: Callable, main: Callable):
    """`main(*parse())` with the one-line error contract.

    UserError: its message on stderr, exit status 2. `Preempted` (a SystemExit, status 0)
    is deliberately not caught: after fit's checkpoint the process ends cleanly.
    """
    from jaxdl import storage
    from jaxdl.train.noise import command_line_filters

    mirror = None
    try:
        with command_line_filters():
            config, workdir = parse()
            workdir, mirror = storage.local_workdir(workdir, start=True)  # gs://: its mirror
            check_workdir(workdir)
            with storage.synced(mirror):  # also after an error or a preemption
                return main(config, workdir)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except MemoryError:  # host memory, e.g. at the first batch: the last checkpoint stays
        print("error: out of host memory; lower --config.batch_size (or the model's size) "
              "and rerun: the last complete checkpoint is kept", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:  # Ctrl-C outside the train loop (which saves and exits 130)
        print("error: interrupted before training started (or after it ended); nothing "
              "new was saved", file=sys.stderr)
        raise SystemExit(130) from None


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _a(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun
