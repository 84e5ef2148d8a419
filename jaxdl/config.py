"""Experiment configs: `get_config()` ConfigDicts, command-line overrides, and the workdir files.

    python -m experiments.cnn_mnist --workdir runs/x --config.epochs=1 --config.dataset=mnist_5k

Overrides are parsed as Python literals (`1e-3`, `True`, `(64, 64)`), else taken as
strings; a key the config lacks is a one-line error listing the keys it has.
`run_experiment` turns any `UserError` into that one line on stderr and exit status 2
(a diverged loss, `jaxdl.train.guards.NonFiniteLoss`, is one). A preempted run
(`jaxdl.train.guards.Preempted`, raised by `fit` after it saved a checkpoint) is a
`SystemExit` with status 0: it passes through, so the process exits 0 and the scheduler
can restart the same command, which resumes.
"""

import ast
import json
import sys
from collections.abc import Callable
from pathlib import Path

import ml_collections

from jaxdl.errors import UserError

USAGE = "usage: python -m experiments.NAME [--workdir DIR] [--config.KEY=VALUE ...]"


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


def parse_args(argv: list[str], get_config: Callable[[], ml_collections.ConfigDict],
               default_workdir: str):
    """Parse `--workdir DIR` and `--config.KEY=VALUE` (also `--config.KEY VALUE`)."""
    config, overrides, workdir = get_config(), {}, default_workdir
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            print(USAGE)
            print(get_config())
            raise SystemExit(0)
        name, eq, value = arg.partition("=")
        if not eq and name.startswith("--") and args and not args[0].startswith("--"):
            value, eq = args.pop(0), "="
        if name == "--workdir" and eq:
            workdir = value
        elif name.startswith("--config.") and eq:
            overrides[name[len("--config."):]] = value
        else:
            raise UserError(f"unrecognised argument {arg!r}; {USAGE}")
    return apply_overrides(config, overrides), Path(workdir)


def save_config(config: ml_collections.ConfigDict, workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.json"
    path.write_text(json.dumps(config.to_dict(), indent=2, default=list) + "\n")
    return path


def load_config(workdir: str | Path) -> ml_collections.ConfigDict:
    path = Path(workdir) / "config.json"
    if not path.exists():
        raise UserError(f"{path} not found; pass the --workdir of a finished or running experiment")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def write_results(workdir: Path, results: dict) -> Path:
    path = Path(workdir) / "results.json"
    path.write_text(json.dumps(results, indent=2, default=float) + "\n")
    return path


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
    """Command-line entry: parse, save config.json, run `main(config, workdir)`.

    UserError: its message on stderr, exit status 2. `Preempted` (a SystemExit, status 0)
    is deliberately not caught: after fit's checkpoint the process ends cleanly.
    """
    try:
        config, workdir = parse_args(sys.argv[1:] if argv is None else argv, get_config,
                                     default_workdir)
        check_workdir(workdir)
        save_config(config, workdir)
        return main(config, workdir)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


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
