"""The `jaxdl` command: every subcommand works from a run's workdir alone.

    jaxdl train   --config=configs/fashion_mnist_cnn.py --workdir DIR [--config.KEY=VALUE ...]
    jaxdl train   --config.recipe=decoder_lm --workdir DIR   (a recipe's default config)
    jaxdl info    --workdir DIR                  recipe, config, latest step, parameters, results
    jaxdl eval    --workdir DIR                  re-evaluate the latest checkpoint -> DIR/eval.json
    jaxdl sample  --workdir DIR [--prompt TEXT] [--num N] [--out FILE] [--seed S]
                  (or --from hf:DIR: a pretrained GPT-2 with its tokenizer, no run)
                  language models: a continuation of the prompt (N tokens); several
                  --prompt and --samples K run as batches ([--json]: a line each);
                  seq2seq: the ISO date for a written date ("5 mars 1998");
                  text2img: a PNG grid of N images for the prompt ("" = unconditional)
    jaxdl predict --workdir DIR [--json] IMAGE...  a classifier's top-3 classes per image
    jaxdl export  --workdir DIR --format hf --out OUT   a decoder_lm run as a Hugging Face
                  GPT-2 (config.json, model.safetensors), for nanoGPT's architecture
    jaxdl data prepare --source=SOURCE --out DIR   an image source (or text:NAME|PATH) as
                  an array_record dataset, for --config.dataset (text_path)=array_record:DIR
                  (texts: --level char|word, or --tokenizer PATH for a BPE tokenizer's ids)
    jaxdl data tokenizer --source=text:NAME|PATH --vocab-size N --out DIR   a byte-level
                  BPE tokenizer.json learned from a text (deterministic, offline)

Each rebuilds what it needs from `config.json` (which names the recipe), the orbax
checkpoints and `results.json`, never from experiment code. Bad input is one line
starting `error:` on stderr and exit status 2.
"""

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

from jaxdl import storage
from jaxdl.errors import UserError
from jaxdl.workdir import load_config, read_json


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr and exit 2, as every jaxdl error."""

    def error(self, message):
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


def info(workdir: Path) -> None:
    config = load_config(workdir)
    print(f"workdir: {workdir}")
    print(f"recipe: {config.get('recipe', 'unknown (config.json names none)')}")
    print("config:")
    for key, value in sorted(config.to_dict().items()):
        print(f"  {key} = {value!r}")
    ckpt_dir = storage.checkpoint_dir(workdir)
    steps = sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit()) if (
        ckpt_dir.is_dir()) else []
    print(f"checkpoints: {steps if steps else 'none'}")
    print(f"latest step: {steps[-1] if steps else 'none'}")
    results = read_json(workdir / "results.json") if (workdir / "results.json").exists() else {}
    if "num_params" in results:
        print(f"parameters: {results['num_params']:,}")
    elif "recipe" in config:
        from jaxdl import run
        from jaxdl.nn import count_params

        r = run.load(workdir, restore=False)
        print(f"parameters: {count_params(r.task.abstract_state(config.seed).params):,}")
    if "mesh" in results:
        mesh = results["mesh"]
        print(f"mesh: {' x '.join(f'{k} {v}' for k, v in mesh.items())}; state "
              f"{results['state_bytes_total'] / 1e6:,.1f} MB in all, "
              f"{results['state_bytes_per_device'] / 1e6:,.1f} MB on the fullest device "
              "(parameters and optimizer state)")
    if results:
        print("results:")
        for key, value in results.items():
            if not isinstance(value, list | dict):
                print(f"  {key} = {value}")


def evaluate(workdir: Path) -> None:
    from jaxdl import run

    metrics = run.evaluate(workdir)
    for key, value in metrics.items():
        if not isinstance(value, list | dict):
            print(f"{key} = {value}")
    print(f"wrote {workdir / 'eval.json'}")


def sample(args) -> None:
    if (args.workdir is None) == (args.from_ is None):
        raise UserError("give --workdir DIR (a run) or --from hf:DIR (a pretrained GPT-2), "
                        "one of them")
    if args.from_ is not None:
        return sample_pretrained(args)
    if args.num is not None and not 1 <= args.num <= 100_000:
        raise UserError(f"--num must be in [1, 100000], got {args.num}")
    if not 1 <= args.samples <= 4096:
        raise UserError(f"--samples must be in [1, 4096], got {args.samples}")
    recipe = recipe_for(args.workdir, "samples", "sample")
    options = {k: getattr(args, k) for k in SAMPLE_OPTIONS if getattr(args, k) is not None}
    for key in options:
        if key not in recipe.sample_options:
            takes = ", ".join(f"--{k}" for k in recipe.sample_options) or "none of them"
            raise UserError(f"--{key} does not apply to a {recipe.name} run (it takes "
                            f"{takes}); " + ("it prints text: redirect it with > FILE"
                                             if key == "out" else "leave it out"))
    recipe.check_sample(args.num, **options)
    out = options.pop("out", None)
    prompt = args.prompt
    if recipe.batch_samples:
        options.update(samples=args.samples, as_json=args.json)
    elif args.samples != 1 or args.json or (prompt is not None and len(prompt) > 1):
        raise UserError(f"several --prompt, --samples and --json apply to language models; "
                        f"a {recipe.name} run takes one --prompt")
    else:
        prompt = None if prompt is None else prompt[0]
    r = load_for(args.workdir, "samples", "sample")
    print(r.recipe.sample(r.config, r.task, r.data, r.state, prompt=prompt, num=args.num,
                          seed=args.seed, out=out, **options))


def sample_pretrained(args) -> None:
    """`jaxdl sample --from hf:DIR`: the checkpoint's model over its whole context, its
    tokenizer, no training and no workdir."""
    import types

    import jax
    import jax.numpy as jnp

    from jaxdl import pretrained, recipes

    for key in ("out", "guidance", "steps", "sampler", "eta"):
        if getattr(args, key) is not None:
            raise UserError(f"--{key} does not apply to a language model")
    recipe = recipes.get("decoder_lm")
    config = recipe.get_config()
    config.init_from = args.from_
    config.seq_len = pretrained.read_config(pretrained.directory_of(args.from_))[
        "max_positions"]
    config.verbose = False
    recipe.validate(config)
    with contextlib.redirect_stdout(io.StringIO()):
        data = recipe.load_data(config)
        task = recipe.build(config, data)
    state = types.SimpleNamespace(params=jax.tree.map(jnp.asarray, data.pretrained))
    print(recipe.sample(config, task, data, state, prompt=args.prompt, num=args.num,
                        seed=args.seed, out=None, samples=args.samples, as_json=args.json))


def export(args) -> None:
    """`jaxdl export --format hf`: refused in one line before any restore where the run's
    recipe or architecture has no GPT-2 form."""
    from jaxdl import pretrained, run

    _, recipe = run.recipe_of(args.workdir)
    if recipe.name != "decoder_lm":
        raise UserError(f"`jaxdl export` writes decoder_lm runs; {args.workdir} is a "
                        f"{recipe.name} run")
    with contextlib.redirect_stdout(io.StringIO()):
        r = run.load(args.workdir, restore=False)
    pretrained.check_expressible(r.config)
    with contextlib.redirect_stdout(io.StringIO()):
        r = run.restored(r)
    import jax
    import numpy as np

    from jaxdl.train import local_copy

    params = jax.tree.map(np.asarray, jax.device_get(local_copy(r.state.params)))
    tokenizer = r.config.get("tokenizer") or None
    hf = pretrained.write_gpt2(args.out, r.config, params,
                               tokenizer=Path(tokenizer) if tokenizer else None)
    print(f"Wrote {args.out} (GPT-2: {hf['n_layer']} layers, width {hf['n_embd']}, "
          f"vocabulary {hf['vocab_size']}) from step {r.step} of {args.workdir}")


def predict(args) -> None:
    r = load_for(args.workdir, "predicts", "predict")
    for row in r.recipe.predict(r.config, r.task, r.data, r.state, args.images):
        if args.json:
            print(json.dumps(row))
        else:
            tops = ", ".join(f"{t['class']} {100 * t['probability']:.1f}%" for t in row["top"])
            print(f"{row['file']}: {tops}")


def recipe_for(workdir: Path, capability: str, command: str):
    """The recipe of a workdir's run, refused when it lacks `capability` (`samples`,
    `predicts`): the registry says which families have it."""
    from jaxdl import recipes, run

    _, recipe = run.recipe_of(workdir)
    if not getattr(recipe, capability):
        applies = ", ".join(n for n, r in recipes.RECIPES.items() if getattr(r, capability))
        raise UserError(f"`jaxdl {command}` does not apply to {workdir}, a run of the "
                        f"{recipe.name} recipe; it applies to runs of {applies}")
    return recipe


def load_for(workdir: Path, capability: str, command: str):
    """The run of a workdir, refused before any restore when its family lacks `command`."""
    from jaxdl import run

    recipe_for(workdir, capability, command)
    with contextlib.redirect_stdout(io.StringIO()):  # stdout: the answer alone (--json);
        return run.load(workdir)  # a checkpoint's notices (a fall-back, say) are on stderr


SAMPLE_OPTIONS = ("out", "guidance", "steps", "sampler", "eta")  # a family's, if it takes them


def _add(sub, name: str, text: str):
    return sub.add_parser(name, help=text, description=text)


def parser() -> argparse.ArgumentParser:
    """Every subcommand but `train`'s arguments (`train` takes the runner's: `jaxdl.config`)."""
    parser = _Parser(prog="jaxdl", description=__doc__.split("\n\n")[0],
                     epilog=__doc__.split("\n\n", 1)[1],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add(sub, "train", "train a config: jaxdl train (--config=FILE.py | "
                       "--config.recipe=NAME) --workdir DIR [--config.KEY=VALUE ...]")
    p = _add(sub, "info", "a run's recipe, config, checkpoints, parameters, results")
    p.add_argument("--workdir", required=True, help="a directory or gs://BUCKET/PATH")
    p = _add(sub, "eval", "re-evaluate the latest checkpoint; writes DIR/eval.json "
                                    "(the metrics of results.json)")
    p.add_argument("--workdir", required=True, help="a directory or gs://BUCKET/PATH")
    p = _add(sub, "sample", "LMs: continue a prompt; seq2seq: an ISO date; "
                                      "text2img: a PNG grid for a prompt")
    p.add_argument("--workdir", help="a directory or gs://BUCKET/PATH")
    p.add_argument("--from", dest="from_", metavar="hf:DIR",
                   help="a pretrained GPT-2 directory instead of a run (its tokenizer.json)")
    p.add_argument("--prompt", action="append", default=None,
                   help="default: the run's config.prompt; LMs: repeat it for several "
                        "prompts (those of one token length run as one batch)")
    p.add_argument("--samples", type=int, default=1,
                   help="LMs: continuations of each prompt, generated as one batch")
    p.add_argument("--json", action="store_true",
                   help="LMs: one JSON object per line: {prompt, continuation}")
    p.add_argument("--num", type=int, default=None,
                   help="tokens to generate (LMs) or images (text2img, default 16)")
    p.add_argument("--out", type=Path, default=None, help="PNG file (text2img only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guidance", type=float, default=None,
                   help="text2img: w, 1 = conditional, 0 = unconditional (default: the run's)")
    p.add_argument("--steps", type=int, default=None, help="text2img: DDIM steps")
    p.add_argument("--sampler", choices=("ddim", "ddpm"), default=None, help="text2img")
    p.add_argument("--eta", type=float, default=None, help="text2img: DDIM noise, 0 = none")
    p = _add(sub, "predict", "an image classifier's top-3 classes for image files")
    p.add_argument("--workdir", required=True, help="a directory or gs://BUCKET/PATH")
    p.add_argument("--json", action="store_true", help="one JSON object per line and image")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                   help="PNG or JPEG files, any size, grey or colour")
    p = _add(sub, "export", "a decoder_lm run's latest checkpoint in the Hugging Face GPT-2 "
                            "layout (config.json, model.safetensors), for nanoGPT's "
                            "architecture")
    p.add_argument("--workdir", required=True, help="a directory or gs://BUCKET/PATH")
    p.add_argument("--format", choices=("hf",), default="hf", help="hf: Hugging Face GPT-2")
    p.add_argument("--out", required=True, type=Path, help="the directory to write")
    p = _add(sub, "data", "datasets: `jaxdl data prepare --source=SOURCE --out DIR`")
    data = p.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    p = _add(data, "prepare", "write an image source (mnist_5k, mnist, fashion_mnist, "
                              "tfds:NAME, synthetic) or a text (text:tinyshakespeare, "
                              "text:PATH) as an array_record dataset in DIR, for "
                              "--config.dataset (or text_path)=array_record:DIR")
    p.add_argument("--source", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--data_dir", default=None, help="where to look for IDX or TFDS files")
    p.add_argument("--level", choices=("char", "word"), default="char",
                   help="text sources: characters or words")
    p.add_argument("--val_fraction", type=float, default=0.1,
                   help="text sources: the last fraction validates (the LMs' split)")
    p.add_argument("--tokenizer", type=Path, default=None,
                   help="text sources: a tokenizer.json (byte-level BPE) to tokenize with, "
                        "kept in DIR; runs on the dataset use it")
    p = _add(data, "tokenizer", "learn a byte-level BPE tokenizer (GPT-2's kind) from a "
                                "text, offline and deterministically: DIR/tokenizer.json")
    p.add_argument("--source", required=True, help="text:tinyshakespeare or text:PATH")
    p.add_argument("--vocab-size", dest="vocab_size", type=int, required=True,
                   help="tokens, the 256 bytes and <|endoftext|> included")
    p.add_argument("--out", required=True, type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:  # the runner's own parser: --config=FILE and overrides
        from jaxdl import run

        run.main(argv[1:])
        return 0
    args = parser().parse_args(argv)
    from jaxdl.train.noise import command_line_filters

    try:
        with command_line_filters():
            _dispatch(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _dispatch(args) -> None:
    if getattr(args, "workdir", None) is None:
        return _command(args)
    args.workdir, mirror = storage.local_workdir(args.workdir)  # gs://: pulled into a mirror
    with storage.synced(mirror):  # eval.json, a sample's files
        _command(args)


def _command(args) -> None:
    if args.command == "info":
        info(args.workdir)
    elif args.command == "eval":
        evaluate(args.workdir)
    elif args.command == "sample":
        sample(args)
    elif args.command == "predict":
        predict(args)
    elif args.command == "export":
        export(args)
    elif args.command == "data" and args.data_command == "tokenizer":
        from jaxdl.data import bpe

        path = bpe.train_source(args.source, args.vocab_size, args.out)
        print(f"Wrote {path} ({len(bpe.BpeVocab(path)):,} tokens)")
    elif args.command == "data":
        from jaxdl.data import prepare

        meta = prepare.prepare(args.source, args.out, args.data_dir, level=args.level,
                               val_fraction=args.val_fraction, tokenizer=args.tokenizer)
        splits = ", ".join(f"{n:,} {k}" for k, n in meta["splits"].items())
        key = "text_path" if meta["kind"] == "text" else "dataset"
        print(f"Wrote {args.out} ({splits} {'tokens' if key == 'text_path' else 'images'}); "
              f"train on it with --config.{key}=array_record:{args.out}")


if __name__ == "__main__":
    raise SystemExit(main())
