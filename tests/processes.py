"""Several JAX processes on loopback for the multi-process tests: one coordinator port on
127.0.0.1, each child with its own fake CPU devices, its output in a log file that can be
polled, every wait bounded, and every child SIGKILLed on the way out (JAX's preemption
notifier swallows SIGTERM)."""

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _child_env(flag: str, value=None) -> dict:
    """This environment with XLA flag `flag` removed (and set to `value` if given), the
    repository on the path (children import `tests.` helpers)."""
    env = dict(os.environ)
    flags = re.sub(rf"--{flag}=\S+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = " ".join(filter(None, [flags.strip()] + (
        [] if value is None else [f"--{flag}={value}"])))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def cpu_env(devices: int, **extra) -> dict:
    """This environment with `devices` fake CPU devices (and `extra` variables)."""
    env = _child_env("xla_force_host_platform_device_count", devices)
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("JAX_NUM_CPU_DEVICES", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def optimised_env() -> dict:
    """This environment at XLA's default optimisation (conftest.py lowers it for the suite's
    compiles): for a child that runs a long loop rather than compiling many programs."""
    return _child_env("xla_backend_optimization_level")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """`n` processes of `argv` (after the interpreter) joined by one coordinator; the
    coordinator's address is in JAX_COORDINATOR_ADDRESS and `bind_env` (for the child to
    bind 127.0.0.1 only). Use as a context manager."""

    def __init__(self, argv: list, logs: Path, *, n: int = 2, devices: int = 4,
                 bind_env: str = "JAXDL_TEST_BIND", **env):
        port = free_port()
        self.logs = [Path(f"{logs}.p{i}.log") for i in range(n)]
        self.procs = []
        for pid, log in enumerate(self.logs):
            with open(log, "w") as out:
                self.procs.append(subprocess.Popen(
                    [sys.executable, *map(str, argv)], cwd=ROOT, stdout=out,
                    stderr=subprocess.STDOUT, env=cpu_env(
                        devices, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                        JAX_NUM_PROCESSES=n, JAX_PROCESS_ID=pid,
                        **{bind_env: f"127.0.0.1:{port}"}, **env)))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()

    def text(self) -> str:
        return "\n".join(f"--- process {i}\n{log.read_text()[-3000:]}"
                         for i, log in enumerate(self.logs))

    def wait_for(self, line: str, timeout: float) -> None:
        """Until every process has printed `line` (a whole line)."""
        deadline = time.monotonic() + timeout
        while not all(f"{line}\n" in log.read_text() for log in self.logs):
            assert all(p.poll() is None for p in self.procs), (
                f"a process exited before printing {line!r}\n{self.text()}")
            assert time.monotonic() < deadline, f"no {line!r} in {timeout} s\n{self.text()}"
            time.sleep(0.02)

    def finish(self, timeout: float) -> list:
        """Every process's exit status (AssertionError with the logs past `timeout`)."""
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"still running after {timeout} s\n{self.text()}") from None
        return [p.returncode for p in self.procs]

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def child_report(argv: list, *, devices: int | None = None, timeout: float = 900,
                 env: dict | None = None) -> dict:
    """Run `argv` (after the interpreter; with `devices` fake CPU devices if given, else in
    `env`, default this environment) and return the JSON of its `REPORT {...}` line; its
    stderr's tail if it fails."""
    env = cpu_env(devices) if devices else (env or dict(os.environ))
    proc = subprocess.run([sys.executable, *map(str, argv)], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT "))
    return json.loads(line[len("REPORT "):])


def announcing(place_training, pause_at=None):
    """The runner's `Placement.train`, its compiled step wrapped to print `step N` before
    each step (and to sleep at step `pause_at`, so a test can kill the run there)."""
    pause_at = -1 if pause_at in (None, "") else int(pause_at)

    def place(*args, **kwargs):
        state, step, fit_kw = place_training(*args, **kwargs)

        def announced(state, batch):
            n = int(state.step)
            print(f"step {n}", flush=True)
            if n == pause_at:
                time.sleep(120)  # the test kills the process here
            return step(state, batch)

        return state, announced, fit_kw

    return place
