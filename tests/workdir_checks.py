"""What every family's finished workdir must support, from the workdir alone: `jaxdl info`,
`jaxdl eval` (the metrics of results.json, to 1e-6), TensorBoard event files that
TensorBoard's own reader finds the run's scalars in."""

import json
import math
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from jaxdl import cli

COMMON_KEYS = ("recipe", "device_kind", "num_devices", "train_seconds", "throughput",
               "num_params", "flops_per_step", "model_flops_per_step", "mfu", "mesh",
               "state_bytes_total", "state_bytes_per_device")


def assert_close(a, b, path="", tol=1e-6):
    """Equal, numbers to `tol` (relative or absolute), through nested dicts and lists."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (path, a, b)
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}", tol)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), (path, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]", tol)
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=tol, abs_tol=tol), (path, a, b)
    else:
        assert a == b, (path, a, b)


def check_info_and_eval(workdir: Path, capsys, recipe: str) -> dict:
    """`jaxdl info` and `jaxdl eval` on a finished run; returns its results."""
    results = json.loads((workdir / "results.json").read_text())
    for key in COMMON_KEYS:
        assert key in results, key
    assert results["recipe"] == recipe and results["num_params"] > 0
    assert json.loads((workdir / "config.json").read_text())["recipe"] == recipe
    capsys.readouterr()
    assert cli.main(["info", "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    assert f"recipe: {recipe}" in out and f"latest step: {results['step']}" in out
    assert f"parameters: {results['num_params']:,}" in out
    assert "mesh: data 1 x fsdp 1 x tensor 1; state " in out  # one device
    assert results["flops_per_step"] > 0 and results["model_flops_per_step"] > 0
    assert cli.main(["eval", "--workdir", str(workdir)]) == 0
    assert "eval.json" in capsys.readouterr().out
    evaluated = json.loads((workdir / "eval.json").read_text())
    assert evaluated.pop("step") == results["step"] and evaluated
    assert_close(evaluated, {k: results[k] for k in evaluated})
    return results


def check_event_files(workdir: Path, tags=("train/loss",)) -> EventAccumulator:
    """The run's scalars, read back by TensorBoard from the event files in `workdir`."""
    events = EventAccumulator(str(workdir), size_guidance={"scalars": 0, "images": 0,
                                                           "tensors": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    rows = [json.loads(r) for r in (workdir / "metrics.jsonl").read_text().splitlines()]
    for tag in tags:
        assert tag in scalars, (tag, scalars)
        logged = {r["step"]: r[tag] for r in rows if tag in r}
        read = {e.step: e.value for e in events.Scalars(tag)}
        assert logged and set(read) == set(logged), tag
        for step, value in logged.items():
            assert math.isclose(read[step], value, rel_tol=1e-6), (tag, step)
    return events


def check_png(path: Path, *, min_width: int = 200, min_height: int = 150,
              min_ink: float = 0.01) -> tuple[int, int]:
    """A figure that shows something: a PNG of at least the given size whose pixels are not
    all one colour (at least `min_ink` of them differ from the commonest colour, the
    background). Returns (width, height)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG", (path, image.format)
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
        width, height = image.size
    assert width >= min_width and height >= min_height, (path, width, height)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    background = colours[np.argmax(counts)]
    ink = float(np.any(pixels != background, axis=1).mean())
    assert ink >= min_ink, (path, f"{ink:.4f} of the pixels differ from the background")
    return width, height
