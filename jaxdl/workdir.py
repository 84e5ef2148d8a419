"""A run's small workdir files: `config.json`, `results.json`, `eval.json`, written
atomically and read back with a one-line error when damaged."""

import json
import os
from pathlib import Path

import ml_collections

from jaxdl.errors import UserError


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
