"""Where a traced step's device time goes: the top ops of a `jax.profiler` trace.

`profile_steps(fn, n, out_dir)` traces `n` calls of `fn` with a Perfetto trace beside the
xplane (`create_perfetto_trace=True`, a Chrome-trace JSON), and `summarize(out_dir)` adds
up each op's duration on the device timelines (on a CPU: the host's), so a benchmark run
on a lent GPU brings its breakdown home as a few lines of JSON instead of a trace to open
in TensorBoard.
"""

from __future__ import annotations

import collections
import gzip
import json
from pathlib import Path


def profile_steps(fn, n: int, out_dir: str | Path, sync) -> None:
    """Trace `n` calls of `fn()` into `out_dir`; `sync(out)` waits for the last one."""
    import jax

    with jax.profiler.trace(str(out_dir), create_perfetto_trace=True):
        for _ in range(n):
            out = fn()
        sync(out)


def summarize(out_dir: str | Path, top: int = 20) -> dict:
    """{timelines, total_ms, events, ops: [(name, ms, share)]} over the device timelines of
    the newest trace (the host's where no device timeline exists), longest first."""
    files = sorted(Path(out_dir).rglob("perfetto_trace.json.gz"))
    if not files:
        raise FileNotFoundError(f"no perfetto_trace.json.gz under {out_dir}")
    with gzip.open(files[-1], "rt") as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    names = {e["pid"]: e.get("args", {}).get("name", "") for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name"}
    device = {pid for pid, name in names.items() if "device" in name.lower()
              or "gpu" in name.lower() or "tpu" in name.lower()}
    keep = device or set(names)
    total: collections.Counter = collections.Counter()
    count = 0
    for e in events:
        if e.get("ph") == "X" and e.get("pid") in keep:
            total[e["name"]] += float(e.get("dur", 0.0))
            count += 1
    all_us = sum(total.values()) or 1.0
    return {"timelines": sorted(names[p] for p in keep), "total_ms": all_us / 1e3,
            "events": count,
            "ops": [(name, round(us / 1e3, 3), round(us / all_us, 4))
                    for name, us in total.most_common(top)]}
