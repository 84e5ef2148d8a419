"""The host data pipeline alone: images/s of the image classifier's training loader
(mnist_5k, batch 64, shuffled) in memory and from an array_record copy on disk, with
batches built in the training thread, on grain threads, or in grain worker processes.

    python -m benchmarks.bench_data [--quick]        (also in `make bench`)

Figures, not assertions. Each row drains whole epochs of the loader (no device work), so
it is the rate the pipeline can feed; a training step of MyNet takes ~10x longer a batch
on CPU, so any row far above the train step's ~250 images/s keeps the device busy.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROWS = (("in memory", "memory", {"threads": 0}),
        ("in memory, 1 grain thread", "memory", {"threads": 1}),
        ("array_record", "disk", {"threads": 0}),
        ("array_record, 1 grain thread", "disk", {"threads": 1}),
        ("array_record, 4 grain threads", "disk", {"threads": 4, "prefetch": 8}),
        ("array_record, 2 grain workers", "disk", {"workers": 2}))


def run(quick: bool = False, say=print, log=None) -> dict:
    from jaxdl.data import prepare, sources
    from jaxdl.data.loader import ArrayLoader

    with tempfile.TemporaryDirectory() as tmp:
        prepare.prepare("mnist_5k", Path(tmp) / "mnist_5k")
        splits = {"memory": sources.resolve_image_dataset("mnist_5k", verbose=False),
                  "disk": sources.resolve_image_dataset(f"array_record:{tmp}/mnist_5k",
                                                        verbose=False)}
        epochs = 1 if quick else 3
        out = {}
        for name, where, options in ROWS:
            train = splits[where].train
            loader = ArrayLoader({"image": train.images, "label": train.labels}, 64, seed=0)
            loader.pipeline.update(options)
            list(loader.epoch(99))  # warm: workers started, files opened
            t0 = time.perf_counter()
            n = sum(len(b["label"]) for e in range(epochs) for b in loader.epoch(e))
            out[name] = n / (time.perf_counter() - t0)
            say(f"data: {name}: {out[name]:,.0f} images/s")
    return out


def table(out: dict) -> str:
    base = out["in memory"]
    lines = ["| MyNet's training loader (mnist_5k, batch 64) | images/s | vs in memory |",
             "|---|---:|---:|"]
    lines += [f"| {name} | {rate:,.0f} | {rate / base:.2f}x |" for name, rate in out.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run("--quick" in sys.argv)))
