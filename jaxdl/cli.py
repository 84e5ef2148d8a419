"""`jaxdl info --workdir DIR`: what a run's workdir holds, from the workdir alone.

`jaxdl sample --workdir DIR --prompt "an ankle boot" --num 16 --out FILE.png`: images from a
text-to-image run's latest checkpoint (EMA parameters), as a PNG grid; the empty prompt
samples unconditionally. Every subcommand rebuilds what it needs from
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


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr and exit 2, as every jaxdl error."""

    def error(self, message):
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="jaxdl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="show a run's config, checkpoints and results")
    p_info.add_argument("--workdir", required=True, type=Path)
    p_sample = sub.add_parser("sample", help="images for a prompt from a text-to-image run")
    p_sample.add_argument("--workdir", required=True, type=Path)
    p_sample.add_argument("--prompt", default="", help='e.g. "an ankle boot"; "" = unconditional')
    p_sample.add_argument("--num", type=int, default=16)
    p_sample.add_argument("--out", type=Path, default=Path("samples.png"))
    p_sample.add_argument("--guidance", type=float, default=None,
                          help="w: 1 = conditional, 0 = unconditional (default: the run's)")
    p_sample.add_argument("--steps", type=int, default=None, help="DDIM steps (default: run's)")
    p_sample.add_argument("--sampler", choices=("ddim", "ddpm"), default=None)
    p_sample.add_argument("--eta", type=float, default=None, help="DDIM noise; 0 = deterministic")
    p_sample.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            info(args.workdir)
        elif args.command == "sample":
            from jaxdl.diffusion import sample_to_png  # jax loads only for this subcommand

            sample_to_png(args.workdir, args.prompt, args.num, args.out, guidance=args.guidance,
                          steps=args.steps, sampler=args.sampler, eta=args.eta, seed=args.seed)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
