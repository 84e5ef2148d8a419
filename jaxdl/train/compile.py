"""jit options per backend: train steps and eval steps each take their faster path.

XLA:CPU's default YNNPACK fusions (elementwise ops fused around library kernels) slow
the backward passes: measured here, alone, at batch 64, train steps with only YNNPACK's
individual dots and reductions run 1.6x faster for MyNet (197 vs 120 img/s) and 1.25x
for the diffusion UNet; the LMs are unchanged (switching YNNPACK off entirely would make
the LSTM 1.7x slower). Eval and generation keep XLA's default, which is faster for
inference (DESIGN, known traps; docs/benchmarks.md).

On GPUs (and TPUs) a train step takes XLA's defaults: an option goes in
`TRAIN_COMPILER_OPTIONS` only once it is measured faster there. The GPU candidates (Triton
GEMMs off, for one) are timed by `benchmarks/accelerator.py` (`GPU_TRAIN_CANDIDATES`);
none has been measured since it was written (docs/accelerators.md).
"""

from collections.abc import Callable

import jax

CPU_TRAIN_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type":
                              "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
# backend (jax.default_backend()) -> XLA options for train steps, each one measured faster
TRAIN_COMPILER_OPTIONS = {"cpu": CPU_TRAIN_COMPILER_OPTIONS}
AUTO = "auto"  # compile_step's default: jaxdl's train-step options for this backend


def compile_step(step_fn: Callable, *, donate: bool = True,
                 compiler_options: dict | str | None = AUTO, **jit_kwargs) -> Callable:
    """jit the step, donating the state's buffers (it is replaced by the new state).

    `compiler_options` are XLA options for this function alone (`jax.jit`'s own
    `compiler_options`), so a train step and an eval step can each take their faster path:
    "auto" (the default, for train steps) is `train_compiler_options()`; None or {} keeps
    XLA's defaults (what eval steps want). The result is a plain `jax.jit` function, with
    jit's C++ dispatch: an earlier per-call Python wrapper cost ~3 ms a step (LM, CPU).
    """
    if compiler_options == AUTO:
        compiler_options = train_compiler_options()
    return jax.jit(step_fn, donate_argnums=(0,) if donate else (),
                   compiler_options=compiler_options or None, **jit_kwargs)


def compile_eval(eval_fn: Callable, **jit_kwargs) -> Callable:
    """An eval or predict function: nothing donated, XLA's default options."""
    return compile_step(eval_fn, donate=False, compiler_options=None, **jit_kwargs)


def train_compiler_options() -> dict | None:
    """The options jaxdl sets for train steps on this backend (`TRAIN_COMPILER_OPTIONS`)."""
    return TRAIN_COMPILER_OPTIONS.get(jax.default_backend())
