"""The one runner: any recipe's config -> a trained, evaluated, self-describing workdir.

    python -m jaxdl.run --config=configs/fashion_mnist_cnn.py --workdir runs/fmnist
    jaxdl train --config=configs/fashion_mnist_cnn.py --workdir runs/fmnist   # the same

`train(config, workdir)`: mesh and placement (`--config.devices`, `--config.distributed`),
the recipe's data and `build`, `fit` with the recipe's evaluators, the final evaluation on
the mesh, figures, TensorBoard event files and `metrics.jsonl`, and `results.json` with
the keys every family shares (`recipe`, `device_kind`, `num_devices`, `train_seconds`,
`throughput`, `num_params`) plus the family's own. `load(workdir)` rebuilds a run from its
workdir alone (what `jaxdl eval|sample|predict` and analyses use).
"""

import dataclasses
import sys
import time
from pathlib import Path

import jax

from jaxdl import recipes, storage
from jaxdl.entry import run_experiment
from jaxdl.nn import count_params
from jaxdl.recipes.base import Context, steady_rate, steady_step_rate
from jaxdl.train import flops, make_train_step, sharding
from jaxdl.train.checkpoint import restore_from_workdir
from jaxdl.train.lock import WorkdirLock
from jaxdl.train.loop import fit
from jaxdl.train.placement import Placement
from jaxdl.train.profile import parse_steps
from jaxdl.train.writer import MetricWriter
from jaxdl.workdir import load_config, save_config, write_json


def train(config, workdir) -> dict:
    """Train, evaluate and report one run; returns its results (also in results.json)."""
    workdir = Path(workdir)
    recipe = recipes.get(config.recipe)
    recipe.validate(config)  # every key's type and range, before any work
    placement = Placement.for_run(  # before anything touches a device
        config.batch_size, devices=config.devices, distributed=config.distributed,
        rules=config.logical_axis_rules, **config.mesh)
    data = recipe.load_data(config)  # may resolve `auto` keys: saved once training starts
    recipe.check(config, data)
    with WorkdirLock(workdir):  # before anything in the workdir is written or cleaned
        return _train(config, workdir, recipe, placement, data)


def _train(config, workdir, recipe, placement, data) -> dict:
    main = placement.is_main
    task = recipe.build(config, data)
    state, shardings = placement.init_state(task.init, config.seed, task.logical_specs(),
                                            params=task.pretrained)
    n_params = count_params(state.params)
    if main:
        print(f"{type(task.model).__name__}: {n_params:,} parameters.")
    state, step, fit_kw = placement.train(
        state, make_train_step(task.loss_fn, task.model, preprocess=task.preprocess,
                               grad_accum_steps=config.grad_accum_steps), shardings)
    loader = recipe.train_loader(config, data, **placement.shard,
                                 pipeline={"threads": config.data_threads,
                                           "workers": config.data_workers})
    ctx = Context(placement=placement, workdir=workdir, is_main=main)
    evaluators = recipe.evaluators(config, task, data, ctx)
    t0 = time.perf_counter()
    state, history = fit(state, step, loader, workdir=workdir, evaluators=evaluators,
                         checkpoint_every=config.checkpoint_every or None,
                         log_every=config.log_every or None,
                         learning_rate=task.learning_rate,
                         verbose=config.verbose, **recipe.training_length(config),
                         on_start=lambda: main and save_config(config, workdir),
                         profile_steps=parse_steps(config.profile_steps), **fit_kw)
    train_seconds = time.perf_counter() - t0
    if main and config.verbose:
        print("\n✅ Training finished.\n")
    metrics = recipe.evaluate(config, task, data, state, ctx)
    final_step = int(jax.device_get(state.step))
    writer = MetricWriter(workdir, resume_step=final_step, enabled=main)
    try:
        writer.scalars(final_step, {f"eval/{k}": v for k, v in metrics.items()})
        if isinstance(metrics.get("sample"), str):
            writer.texts(final_step, {"sample": config.get("prompt", "") + metrics["sample"]})
        extra = recipe.report(config, task, data, state, history, ctx, writer)
    finally:
        writer.close()
    results = {"recipe": recipe.name, "device_kind": jax.devices()[0].device_kind,
               "device": str(jax.devices()[0].device_kind),
               "num_devices": placement.num_devices,
               "train_seconds": train_seconds, "throughput": steady_rate(history),
               "throughput_unit": f"{recipe.throughput_unit}/s",
               "num_params": n_params, "step": final_step,
               "mesh": placement.axis_sizes, **sharding.state_bytes(state),
               **step_cost(task, config, state, loader, history, placement.mesh),
               **metrics, **extra}
    if main:
        write_json(workdir / "results.json", results)
        print(f"Wrote {workdir / 'results.json'}")
    return results


def step_cost(task, config, state, loader, history, mesh) -> dict:
    """FLOPs of one step over the global batch and the run's MFU (`jaxdl.train.flops`),
    counted on the step without gradient accumulation (XLA counts a loop's body once), on
    the model's plain path (`flops.counting_model`: XLA attention, no remat)."""
    step_fn = make_train_step(task.loss_fn, flops.counting_model(task.model),
                              preprocess=task.preprocess)
    n = jax.process_count()
    batch = jax.tree.map(lambda a: jax.ShapeDtypeStruct((a.shape[0] * n, *a.shape[1:]),
                                                        a.dtype), next(iter(loader.epoch(0))))
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)
    devices = jax.devices()[:1] if mesh is None else list(mesh.devices.flat)
    try:
        return flops.step_cost(step_fn, shapes, batch,
                               steps_per_second=steady_step_rate(history),
                               dtype=config.dtype, devices=devices)
    except Exception as e:  # noqa: BLE001 - a finished run's results are never lost to it
        print(f"FLOPs not counted ({type(e).__name__}: {e})", file=sys.stderr)
        return {"flops_per_step": None, "model_flops_per_step": None, "peak_flops": None,
                "mfu": None}


@dataclasses.dataclass
class Run:
    """A run rebuilt from its workdir: config, recipe, data, task and the latest state."""
    workdir: Path
    config: object
    recipe: recipes.Recipe
    data: object
    task: recipes.Task
    state: object
    step: int


def recipe_of(workdir):
    """`(config, recipe)` of a workdir, from its `config.json` alone."""
    workdir = Path(workdir)
    config = load_config(workdir)
    if "recipe" not in config:
        raise recipes.UserError(f"{workdir / 'config.json'} names no recipe (an older jaxdl "
                                "workdir); rerun its experiment with a fresh --workdir")
    return config, recipes.get(config.recipe)


def load(workdir, *, restore: bool = True) -> Run:
    """Rebuild a run from `<workdir>/config.json` and restore its latest checkpoint
    (`gs://` workdirs: from the bucket, through the local mirror, `jaxdl.storage`)."""
    workdir, _ = storage.local_workdir(workdir)
    config, recipe = recipe_of(workdir)
    recipe.validate(config, saved=True)  # fills in keys an older config.json lacks
    data = recipe.load_data(config)
    r = Run(workdir, config, recipe, data, recipe.build(config, data), None, None)
    return restored(r) if restore else r


def restored(r: Run) -> Run:
    """`r` with its workdir's latest checkpoint (a `load(..., restore=False)` checked first)."""
    command = f"jaxdl train --config.recipe={r.recipe.name} --workdir {r.workdir}"
    state, _, step = restore_from_workdir(r.workdir, r.task.abstract_state(r.config.seed),
                                          fix=f"train first ({command})")
    return dataclasses.replace(r, state=state, step=step)


def evaluate(workdir, *, verbose: bool = True) -> dict:
    """Re-evaluate the latest checkpoint: the same metrics as results.json, in eval.json
    (a `gs://` workdir: pulled once, eval.json pushed to the bucket)."""
    workdir, mirror = storage.local_workdir(workdir)
    with storage.synced(mirror):  # the caller passed the URL (the CLI pushes its own mirror)
        run = load(workdir)
        ctx = Context(workdir=run.workdir, verbose=verbose, figures=False)
        metrics = {"step": run.step, **run.recipe.evaluate(run.config, run.task, run.data,
                                                           run.state, ctx)}
        write_json(run.workdir / "eval.json", metrics)
    return metrics


def main(argv: list[str] | None = None):
    """`jaxdl train` / `python -m jaxdl.run`: `--config=FILE.py` or `--config.recipe=NAME`,
    `--workdir DIR`, `--config.KEY=VALUE ...` (`jaxdl.entry`)."""
    return run_experiment(train, None, "runs/run", argv)


if __name__ == "__main__":
    main()
