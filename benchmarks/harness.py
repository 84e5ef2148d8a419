"""Side-by-side timing: one worker process per side, cases run interleaved (A B A B).

Each side (jaxdl, torch) runs in its own subprocess, so neither framework's thread pools,
allocator or imported libraries disturb the other, and each process's peak memory
(`ru_maxrss`) is its own. The controller sends the workers one command at a time over a
pipe, so only one side computes at any moment:

    setup CASE      build the case, compile / warm up; returns setup timings
    run CASE        one timed repetition; returns {'seconds': s, 'items': n, ...}
    exit            returns the process's peak RSS

A benchmark module defines `CASES = {name: (jax_factory, torch_factory)}`; a factory
`f(cfg) -> Case` (or None for a one-sided case), where a Case has `setup() -> dict` and
`run() -> dict`. Throughput per repetition is items / seconds; a figure is the median
over repetitions.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
from dataclasses import dataclass, field

SIDES = ("jaxdl", "torch")


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_seconds() -> float:
    """User + system CPU time of this process (all threads): less disturbed by other
    processes than wall time, though it also counts threads that spin while waiting."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------------------ worker
def worker_main(argv: list[str]) -> None:
    """`python -m benchmarks.harness SIDE MODULE CFG_JSON`: serve commands on stdin."""
    side, module_name, cfg = argv[0], argv[1], json.loads(argv[2])
    # Keep the protocol on its own fd; anything the libraries print goes to stderr.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if side == "jaxdl":  # one XLA:CPU device per core, for the data-parallel cases
        import jax

        jax.config.update("jax_num_cpu_devices", int(cfg.get("cpu_devices") or os.cpu_count()))
    module = importlib.import_module(module_name)
    index = SIDES.index(side)
    cases: dict = {}
    proto.write(json.dumps({"ready": True, "rss_mb": peak_rss_mb()}) + "\n")
    for line in sys.stdin:
        cmd, _, name = line.strip().partition(" ")
        try:
            if cmd == "setup":
                cases[name] = module.CASES[name][index](cfg)
                reply = cases[name].setup() or {}
            elif cmd == "run":
                cpu = _cpu_seconds()
                reply = cases[name].run()
                reply["cpu_s"] = _cpu_seconds() - cpu
            elif cmd == "drop":
                cases.pop(name, None)
                reply = {}
            elif cmd == "exit":
                proto.write(json.dumps({"peak_rss_mb": peak_rss_mb()}) + "\n")
                return
            else:
                reply = {"error": f"unknown command {cmd!r}"}
        except Exception as e:  # report, keep serving
            import traceback

            traceback.print_exc()
            reply = {"error": f"{type(e).__name__}: {e}"}
        reply["peak_rss_mb"] = peak_rss_mb()
        proto.write(json.dumps(reply) + "\n")


# -------------------------------------------------------------------------- controller
@dataclass
class CaseResult:
    name: str
    setup: dict = field(default_factory=dict)  # side -> setup reply
    runs: dict = field(default_factory=dict)  # side -> list of run replies

    def rates(self, side: str, key: str = "items") -> list[float]:
        return [r[key] / r["seconds"] for r in self.runs.get(side, []) if "seconds" in r]

    def median(self, side: str, key: str = "items") -> float | None:
        rates = self.rates(side, key)
        return statistics.median(rates) if rates else None

    def ratio(self) -> float | None:
        """Median over repetitions of jaxdl's rate / the peer's rate in the same repetition."""
        a, b = self.rates("jaxdl"), self.rates("torch")
        pairs = [x / y for x, y in zip(a, b, strict=False) if y > 0]
        return statistics.median(pairs) if pairs else None


class Worker:
    def __init__(self, side: str, module: str, cfg: dict, log):
        self.side = side
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.harness", side, module, json.dumps(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
            bufsize=1)
        self.hello = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.side} worker died (exit {self.proc.wait()}); see the log")
        return json.loads(line)

    def ask(self, cmd: str) -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> dict:
        try:
            out = self.ask("exit")
        finally:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        return out


class Pair:
    """A jaxdl worker and a torch worker for one benchmark module."""

    def __init__(self, module: str, cfg: dict, log=None):
        self.cases = importlib.import_module(module).CASES
        self.log = log if log is not None else sys.stderr
        self.workers = {side: Worker(side, module, cfg, self.log) for side in SIDES}
        self.results: dict[str, CaseResult] = {}

    def run_case(self, name: str, reps: int, *, drop: bool = True, say=print) -> CaseResult:
        res = CaseResult(name)
        active = [s for s, f in zip(SIDES, self.cases[name], strict=True) if f is not None]
        for side in active:
            res.setup[side] = self.workers[side].ask(f"setup {name}")
            _check(res.setup[side], side, name)
        for rep in range(reps):
            for side in active:  # A B A B
                reply = self.workers[side].ask(f"run {name}")
                _check(reply, side, name)
                res.runs.setdefault(side, []).append(reply)
            say(f"  {name} rep {rep + 1}/{reps}: " + ", ".join(
                f"{s} {_rate(res.runs[s][-1])}" for s in active))
        if drop:
            for side in active:
                self.workers[side].ask(f"drop {name}")
        self.results[name] = res
        return res

    def close(self) -> dict:
        return {side: w.close() for side, w in self.workers.items()}


def _rate(reply: dict) -> str:
    rate = reply["items"] / reply["seconds"]
    return f"{rate / 1e9:.1f} G/s" if rate > 1e6 else f"{rate:.1f}/s"


def _check(reply: dict, side: str, name: str) -> None:
    if "error" in reply:
        raise RuntimeError(f"{side} failed in case {name}: {reply['error']}")


if __name__ == "__main__":
    worker_main(sys.argv[1:])


def main(run, doc: str) -> None:
    """Command line of one benchmark group: `python -m benchmarks.bench_X [--quick]`."""
    import argparse

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a short smoke run")
    args = p.parse_args()
    print(json.dumps(run(args.quick), indent=1, default=str))
