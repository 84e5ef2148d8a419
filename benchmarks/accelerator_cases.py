"""What both sides of benchmarks/accelerator.py run and how they time it: the shapes and the
timers, in a module of their own so that the controller and its two workers import it and
not each other."""

import time

GPT2 = dict(layers=12, heads=12, dim=768, context=1024, vocab=50304)
GPT2_QUICK = dict(layers=2, heads=2, dim=64, context=64, vocab=512)
CONTEXT_QUICK = GPT2_QUICK["context"]
GENERATE = dict(prompt=16, new=256, batches=(1, 64), new_quick=24, batches_quick=(1, 4))


def timed(fn, n: int, sync) -> float:
    """Seconds for `n` calls of `fn`, after which `sync()` waits for the device."""
    t = time.perf_counter()
    for _ in range(n):
        out = fn()
    sync(out)
    return time.perf_counter() - t


def step_seconds(step, state, batch, n: int, sync, warmup: int = 2):
    """(seconds for `n` train steps after `warmup` ones, the last state)."""
    holder = {"state": state}

    def one():
        holder["state"], metrics = step(holder["state"], batch)
        return metrics

    for _ in range(warmup):
        one()
    return timed(one, n, sync), holder["state"]
