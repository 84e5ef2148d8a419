"""Suite-wide settings.

Slow tests first: pytest-xdist hands tests out in collection order, so the long ones
(child processes on fake devices) start at once and the short ones fill in around them,
instead of one long test starting last while the other worker idles.

One XLA compilation cache for the whole run (workers and every child process they start
inherit the variable): a resumed or re-run `jaxdl` process, and the same tiny model in
several tests, load the compiled program instead of compiling it again (the diffusion
experiment's tests: 122 s -> 96 s from an empty cache on a 2-core EPYC). A cache hit is
the same executable, so bitwise-resume tests are unaffected. The directory is removed at
the end; set JAX_COMPILATION_CACHE_DIR yourself to keep one across runs.

Non-partitionable threefry (JAX_THREEFRY_PARTITIONABLE=0) for the whole run, children
included: with jax's default (partitionable) random bits, XLA:CPU spends most of a tiny
model's compile on its initialisers (200 `jax.random.normal` in one jit: 259 s default,
28 s non-partitionable; `test_remat.py -k unet`: 130 s -> 45 s, on a 2-core EPYC).
Only the random streams change; every test compares runs made under the same setting,
and sharded and one-device runs still draw the same numbers (the sharding tests check
it). Users keep jax's default.

XLA's backend at optimisation level 0 (`--xla_backend_optimization_level=0` in XLA_FLAGS,
children included): the suite's programs are tiny and compiled far more often than run, and
LLVM's optimisation is most of a compile (the whole suite, 2-core AMD EPYC, 2026-12-06:
1,562 -> 1,374 test-seconds, 873 -> 812 s; every test passed under both). The few tests that
run long loops ask for full optimisation in their child (`processes.optimised_env`).
"""

import os
import shutil
import tempfile

os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = " ".join(
        filter(None, [os.environ.get("XLA_FLAGS"), "--xla_backend_optimization_level=0"]))

_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ and "PYTEST_XDIST_WORKER" not in os.environ:
    _OWN_CACHE = tempfile.mkdtemp(prefix="jaxdl-test-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
