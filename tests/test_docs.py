"""README.md and docs/ say only what exists: every command names a real subcommand, real
flags and real config keys (with values its recipe accepts), every module and make target
it runs exists, and every linked file, image and heading is there.

Commands are read from fenced shell blocks (line continuations joined, comments dropped)
and from inline code that starts with a command (`jaxdl`, `python -m`, `make`, `bash`).
Inside a quoted argument (gcloud's `--command="..."`) the commands are checked as well.
Upper-case words (DIR, NAME, CELL, ...) are placeholders: a flag or key given one is
checked, its value is not."""

import functools
import importlib
import re
import shlex
from pathlib import Path

import pytest

from jaxdl import cli, recipes
from jaxdl.config import parse_args, without
from jaxdl.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = ("&&", "||", ";", "|", ">", ">>", "2>", "&")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$|\.\.\.|<\w+>")
LAUNCHER = re.compile(r"^(?:\S+=\S*\s+)*(?:\.venv/bin/)?(?:jaxdl|python3?(?:\.\d+)?|make|bash)"
                      r"(?:\s|$)")


def _blocks(text: str):
    """Commands of the fenced blocks that are not Python: a line that starts with a
    command (or gcloud, or cd), continued over `\\` and over an open quote."""
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
        if lang in ("python", "text", "json"):
            continue
        pending = ""
        for line in re.sub(r"\\\n\s*", " ", body).splitlines():
            line = re.sub(r"(^|\s)#\s.*$", "", line).strip()
            if not pending and not (LAUNCHER.match(line) or line.startswith(("gcloud ", "cd "))):
                continue
            pending = f"{pending} {line}".strip()
            try:
                shlex.split(pending)
            except ValueError:
                continue  # a quote still open: the command goes on
            yield pending
            pending = ""


def _inline(text: str):
    """Inline code spans that start with a command."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in re.findall(r"`([^`\n]+)`", prose):
        if LAUNCHER.match(span):
            yield span


def _commands():
    for page in PAGES:
        text = page.read_text()
        for line in (*_blocks(text), *_inline(text)):
            yield page, line


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError:  # an unbalanced quote in prose: words will do
        return line.split()


def _invocations(tokens: list[str]):
    """(launcher, args) for each command in a token list, recursing into quoted ones."""
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if " " in tok:
            yield from _invocations(_split(tok))
        name = tok.removeprefix(".venv/bin/")
        if name in ("jaxdl", "make", "bash") or re.fullmatch(r"python3?(\.\d+)?", name):
            j = i + 1
            while j < len(tokens) and tokens[j] not in SHELL:
                j += 1
            args = tokens[i + 1:j]
            if name.startswith("python"):
                if args[:1] == ["-m"] and len(args) > 1:
                    yield "python -m " + args[1], args[2:]
            else:
                yield name, args
            for inner in args:
                if " " in inner:
                    yield from _invocations(_split(inner))
            i = j
        i += 1


def _concrete(args):
    """The args without placeholder values (their flags and keys are still checked)."""
    out = []
    for a in args:
        name, eq, value = a.partition("=")
        if eq and PLACEHOLDER.search(value) and name.startswith("--config."):
            out.append(f"{name}=__placeholder__")
        else:
            out.append(a)
    return out


def _check_train(args, get_config, where, own_keys=()):
    """Runner arguments: --config=FILE, --config.KEY=VALUE (keys of this config, values its
    recipe accepts), --workdir, --help."""
    names = [a.split("=", 1)[1] for a in args if a.startswith("--config.recipe=")]
    if names and PLACEHOLDER.search(names[-1]):
        return  # `--config.recipe=NAME`: nothing to check the keys against
    args = [a for a in _concrete(args) if a not in ("-h", "--help")]
    if not args and get_config is None:
        return  # `jaxdl train` named in prose
    if get_config is None:
        if names and not any(a.startswith("--config=") for a in args):
            get_config = recipes.get(names[-1]).get_config
    placeholders = {a.split("=", 1)[0][len("--config."):] for a in args
                    if a.endswith("=__placeholder__")}
    concrete = [a for a in args if not a.endswith("=__placeholder__")]
    try:
        if get_config is None and not any(a.startswith("--config=") for a in concrete):
            pytest.fail(f"{where}: no config file and no --config.recipe")
        config, _ = parse_args(concrete, get_config, "runs/x")
        recipe = recipes.get(config.recipe)
        recipe.validate(without(config, own_keys))  # an experiment's runs get its recipe's
    except UserError as e:
        pytest.fail(f"{where}: {e}")
    for key in placeholders:
        node = config
        for part in key.split("."):
            assert part in node, f"{where}: unknown config key {key!r}"
            node = node[part]


@functools.cache
def _cli_parsers() -> dict:
    parser = cli.parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    out = dict(sub.choices)
    data = next(a for a in out["data"]._actions if a.dest == "data_command")
    out.update({f"data {k}": v for k, v in data.choices.items()})
    return out


def _check_jaxdl(args, where):
    if not args or args[0].startswith("-"):
        return  # `jaxdl --help`
    command = args[0]
    if "|" in command:  # `jaxdl info|eval|sample|predict`
        for one in command.split("|"):
            _check_jaxdl([one], where)
        return
    if command == "train":
        return _check_train(args[1:], None, where)
    parsers = _cli_parsers()
    assert command in parsers, f"{where}: no subcommand {command!r}"
    if command == "data" and len(args) > 1:
        command, args = f"data {args[1]}", args[1:]
        assert command in parsers, f"{where}: no subcommand {command!r}"
    known = set(parsers[command]._option_string_actions)
    for a in args[1:]:
        if a.startswith("-"):
            assert a.split("=", 1)[0] in known, f"{where}: `jaxdl {command}` has no {a}"


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__main__.py"):
        if path.exists():
            return path
    return None


def _check_module(module: str, args, where):
    if any(PLACEHOLDER.search(part) for part in module.split(".")):
        return  # `python -m experiments.NAME`
    if module == "jaxdl.cli":
        return _check_jaxdl(args, where)
    path = _module_file(module)
    if module == "jaxdl.run" or module.startswith("experiments."):
        assert path is not None, f"{where}: no module {module}"
        if module.startswith("experiments."):
            experiment = importlib.import_module(module)
            return _check_train(args, experiment.get_config, where,
                                getattr(experiment, "OWN_KEYS", ()))
        return _check_train(args, None, where)
    if module.split(".")[0] not in ("jaxdl", "benchmarks", "tests"):
        return  # another tool's module (pip, venv)
    assert path is not None, f"{where}: no module {module}"
    source = path.read_text()
    for a in args:
        flag = a.split("=", 1)[0]
        if flag.startswith("--"):
            assert f'"{flag}"' in source, f"{where}: {module} takes no {flag}"


def _make_targets() -> set:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


def _check(page: Path, line: str):
    where = f"{page.relative_to(ROOT)}: `{line}`"
    for launcher, args in _invocations(_split(line)):
        if launcher == "jaxdl":
            _check_jaxdl(args, where)
        elif launcher.startswith("python -m "):
            _check_module(launcher[len("python -m "):], args, where)
        elif launcher == "make":
            for target in (a for a in args if "=" not in a):
                assert target in _make_targets(), f"{where}: no make target {target!r}"
        elif launcher == "bash" and args:
            assert (ROOT / args[0]).exists(), f"{where}: no file {args[0]}"


COMMANDS = list(_commands())


def test_the_docs_have_commands_to_check():
    """The reader found them: at least one per kind (a parser that read nothing passes all)."""
    launchers = {launcher.split(".")[0] for _, line in COMMANDS
                 for launcher, _ in _invocations(_split(line))}
    assert {"jaxdl", "make", "python -m experiments", "python -m benchmarks",
            "python -m jaxdl"} <= launchers, launchers
    assert len(COMMANDS) > 100


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_names_real_subcommands_flags_and_config_keys(page):
    for where, line in COMMANDS:
        if where == page:
            _check(page, line)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#+ (.*)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_and_image_exists(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue  # https:, mailto:
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name}: {link} does not exist"
        if anchor and target.suffix == ".md":
            assert anchor in _anchors(target), f"{page.name}: {link}: no such heading"


def test_the_readme_is_a_first_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    for needle in ("make train", "make test", "jax[cuda13]", "jax[tpu]", "## Results",
                   "## Use the train step in your code", "## Where next"):
        assert needle in text, needle


def test_the_public_api_is_listed_and_has_one_home():
    """docs/recipes.md lists every export of jaxdl.train and jaxdl.nn, and no module but a
    package's __init__ re-exports a jaxdl name in its __all__."""
    import importlib
    import pkgutil

    import jaxdl
    import jaxdl.nn
    import jaxdl.train

    page = (ROOT / "docs" / "recipes.md").read_text()
    api = page[page.index("## The public API"):]
    for name in (*jaxdl.train.__all__, *jaxdl.nn.__all__):
        assert f"`{name}`" in api, name
    for info in pkgutil.walk_packages(jaxdl.__path__, "jaxdl."):
        if info.ispkg:
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", ()):
            home = getattr(getattr(module, name), "__module__", info.name) or info.name
            assert not home.startswith("jaxdl") or home == info.name, (info.name, name, home)
