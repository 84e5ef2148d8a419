"""`jaxdl info --workdir DIR`: what a run's workdir holds, from the workdir alone.

Later families add `sample` and `eval`; every subcommand rebuilds what it needs from
`config.json`, the orbax checkpoints and `results.json`, never from experiment code.
"""

import argparse
import json
import sys
from pathlib import Path

from jaxdl.config import load_config
from jaxdl.errors import UserError


def info(workdir: Path) -> None:
    config = load_config(workdir)
    print(f"workdir: {workdir}")
    print("config:")
    for key, value in sorted(config.to_dict().items()):
        print(f"  {key} = {value!r}")
    ckpt_dir = workdir / "checkpoints"
    steps = sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit()) if (
        ckpt_dir.is_dir()) else []
    print(f"checkpoints: {steps if steps else 'none'}")
    results = workdir / "results.json"
    if results.exists():
        data = json.loads(results.read_text())
        print("results:")
        for key, value in data.items():
            if not isinstance(value, list | dict):
                print(f"  {key} = {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jaxdl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="show a run's config, checkpoints and results")
    p_info.add_argument("--workdir", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            info(args.workdir)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
