"""The command-line entries' one contract, for `jaxdl`, `python -m jaxdl.run` and every
experiment: one usage text, one parse, and one way to end.

A `UserError` is one line `error: ...` on stderr and exit status 2 (a diverged loss,
`jaxdl.train.guards.NonFiniteLoss`, is one). A preempted run (`jaxdl.train.guards.Preempted`,
raised by `fit` after it saved a checkpoint) is a `SystemExit` with status 0 (130 after
Ctrl-C): it passes through, so the process exits and the scheduler can restart the same
command, which resumes. Host out-of-memory and Ctrl-C before training are one line each.
"""

import contextlib
import sys
from collections.abc import Callable

from jaxdl.config import parse_args
from jaxdl.errors import UserError
from jaxdl.workdir import check_workdir


def usage() -> str:
    """The one usage text of `jaxdl train`, `python -m jaxdl.run` and every experiment."""
    from jaxdl import recipes

    return ("usage: jaxdl train | python -m experiments.NAME  [--config=FILE.py | "
            "--config.recipe=NAME] [--workdir DIR] [--config.KEY=VALUE ...]\n"
            "  FILE.py: a file with get_config(), e.g. configs/fashion_mnist_cnn.py; NAME: "
            f"{', '.join(recipes.RECIPES)} (its default config); an experiment's own config "
            "where neither is given. --help with a config lists its keys.")


def options_text(config) -> str:
    """`--help`'s list of a config's keys: value, doc and allowed values (jaxdl.options)."""
    from jaxdl import options, recipes

    if config.get("recipe") not in recipes.RECIPES:
        return str(config)
    return "options:\n" + options.describe(recipes.get(config.recipe).table, config)


def run_experiment(main: Callable, get_config: Callable | None, default_workdir: str,
                   argv: list[str] | None = None):
    """The command-line entry of `jaxdl train` and every experiment: parse (`get_config`:
    the experiment's config; None: `--config=FILE.py` or `--config.recipe=NAME`), check
    the workdir, run `main(config, workdir)` (which saves config.json once the data has
    resolved its `auto` keys), under `run_main`'s contract."""
    argv = sys.argv[1:] if argv is None else argv
    get_config = get_config or _recipe_default(argv)
    return run_main(lambda: parse_args(argv, get_config, default_workdir, usage=usage(),
                                       describe=options_text), main)


def _recipe_default(argv: list[str]):
    """The default config of the recipe `--config.recipe=NAME` names, where no file is given."""
    from jaxdl import recipes

    names = [a.split("=", 1)[1] for a in argv if a.startswith("--config.recipe=")]
    if not names or any(a == "--config" or a.startswith("--config=") for a in argv):
        return None
    return lambda: recipes.get(names[-1]).get_config()


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


@contextlib.contextmanager
def user_errors():
    """A `UserError` inside: its one line `error: ...` on stderr and exit status 2."""
    try:
        yield
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
