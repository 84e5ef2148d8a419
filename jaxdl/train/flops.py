"""FLOPs of a train step and model FLOPs utilisation (MFU).

Two counts, both for one step over the whole global batch:

- `xla_flops`: XLA's cost analysis of the lowered step (every op XLA counts: matmuls,
  elementwise work, remat's recomputation). XLA counts a loop's body once, so a step
  with a scan inside (an RNN over time, gradient accumulation) is undercounted; it is
  taken of the step without accumulation.
- `matmul_flops`: 2 * multiply-adds of every dot and convolution in the step's jaxpr,
  loops multiplied by their trip counts. This is the "model FLOPs" of PaLM's MFU
  definition (appendix B), so `mfu = matmul_flops * steps/s / (peak * devices)`.

Both count the model's own arithmetic, whichever kernel or recomputation runs: the step
is traced on `counting_model(model)`, where attention is XLA's formula (cuDNN's fused
attention is a custom call whose FLOPs a jaxpr does not show) and remat is off (the
recomputed forward is not model FLOPs). `flops_per_token_6n` is nanoGPT's and llm.c's
estimate for GPT-style models, 6N + 12 L H Q T per token, for comparing MFU with them.

Peaks are dense (no sparsity) per chip, from the vendors' data sheets. On TPUs a float32
matmul runs at the bfloat16 rate by default (one bfloat16 pass, XLA's default precision),
so both columns hold the bfloat16 peak. On CPUs the peak is measured: the best of a few
2048x2048 matmuls in that dtype (`measured_cpu_peak`, also printed by `make bench`).
"""

import functools
import math
import time

import jax
import jax.extend.core as jax_core
import jax.numpy as jnp
import numpy as np

from jaxdl.nn.fields import with_fields

# device_kind substring (lower case) -> (bfloat16, float32) dense peak FLOP/s per chip.
PEAKS = {
    "h200": (989e12, 67e12),  # H200 SXM: as the H100 SXM (same compute, more HBM)
    "h100": (989e12, 67e12),  # H100 SXM
    "a100": (312e12, 19.5e12),
    "tpu v4": (275e12, 275e12),
    "tpu v5 lite": (197e12, 197e12),  # v5e
    "tpu v5p": (459e12, 459e12),
    "tpu v5": (459e12, 459e12),  # v5p reports "TPU v5"
    "tpu v6 lite": (918e12, 918e12),  # v6e (Trillium)
}


def peak_flops(device, dtype: str) -> float | None:
    """Dense peak FLOP/s of one `device` computing in `dtype` ('float32' | 'bfloat16');
    None where unknown."""
    column = 0 if dtype == "bfloat16" else 1
    if device.platform == "cpu":
        return measured_cpu_peak(dtype)
    kind = device.device_kind.lower()
    for key, peaks in PEAKS.items():  # the longer keys first where one contains another
        if key in kind:
            return peaks[column]
    return None


def total_peak(devices, dtype: str) -> float | None:
    """Dense peak FLOP/s of these devices together (None where unknown). CPU "devices"
    share the host's cores, so the host's measured peak is their total."""
    devices = list(devices)
    peak = peak_flops(devices[0], dtype)
    if peak is not None and devices[0].platform != "cpu":
        peak *= len(devices)
    return peak


@functools.cache
def measured_cpu_peak(dtype: str = "float32", size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` (size x size) @ (size x size) matmuls on the CPU."""
    dt = jnp.dtype(dtype)
    a = jnp.ones((size, size), dt)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best


def counting_model(model):
    """`model` (and the models among its fields) as FLOPs are counted: `attention_impl`
    'xla' and `remat` 'none' wherever a module has those fields; the same function."""
    return with_fields(model, attention_impl="xla", remat="none")


def flops_per_token_6n(num_params: int, num_layers: int, num_heads: int, head_dim: int,
                       context: int) -> float:
    """nanoGPT's `estimate_mfu` count for one token of a train step: 6N for the matmuls
    of N parameters (forward and backward; N without the position table), plus
    12 L H Q T for attention over a context of T (its formula counts every key)."""
    return 6.0 * num_params + 12.0 * num_layers * num_heads * head_dim * context


def step_cost(step_fn, state, batch, *, steps_per_second: float, dtype: str = "float32",
              devices=None) -> dict:
    """results.json's cost keys for `step_fn(state, batch)` (abstract arguments will do):
    `flops_per_step` (XLA), `model_flops_per_step` (matmuls), the devices' total
    `peak_flops` and `mfu` (None where the peak is unknown)."""
    traced = jax.jit(step_fn).trace(state, batch)  # one trace for both counts
    model = _jaxpr_flops(traced.jaxpr.jaxpr)
    peak = total_peak(devices if devices is not None else jax.devices(), dtype)
    return {"flops_per_step": _xla_flops(traced.lower()), "model_flops_per_step": model,
            "peak_flops": peak,
            "mfu": model * steps_per_second / peak if peak else None}


def xla_flops(fn, *args) -> float | None:
    """XLA's cost-analysis FLOPs of `jax.jit(fn)` at these (abstract) arguments."""
    return _xla_flops(jax.jit(fn).lower(*args))


def matmul_flops(fn, *args) -> float:
    """2 x multiply-adds of every dot_general and convolution `fn` runs at these arguments."""
    return _jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def _xla_flops(lowered) -> float | None:
    cost = lowered.cost_analysis()
    if isinstance(cost, list | tuple):  # older jax: one dict per computation
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None


def _jaxpr_flops(jaxpr) -> float:
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += _dot_flops(eqn)
        elif name == "conv_general_dilated":
            total += _conv_flops(eqn)
        elif name == "scan":
            total += eqn.params["length"] * _jaxpr_flops(eqn.params["jaxpr"].jaxpr)
        elif name == "cond":
            total += max(_jaxpr_flops(b.jaxpr) for b in eqn.params["branches"])
        else:  # pjit, remat, custom_jvp/vjp, while (body once): whatever jaxprs they hold
            for sub in jax_core.jaxprs_in_params(eqn.params):
                total += _jaxpr_flops(sub)
    return total


def _dot_flops(eqn) -> float:
    lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
    (lc, rc), (lb, _) = eqn.params["dimension_numbers"]
    contract = np.prod([lhs[d] for d in lc], dtype=np.float64)
    batch = np.prod([lhs[d] for d in lb], dtype=np.float64)
    rb = eqn.params["dimension_numbers"][1][1]
    lfree = np.prod([s for d, s in enumerate(lhs) if d not in (*lc, *lb)], dtype=np.float64)
    rfree = np.prod([s for d, s in enumerate(rhs) if d not in (*rc, *rb)], dtype=np.float64)
    return float(2 * batch * contract * lfree * rfree)


def _conv_flops(eqn) -> float:
    out = eqn.outvars[0].aval.shape
    kernel = eqn.invars[1].aval.shape
    spec = eqn.params["dimension_numbers"].rhs_spec  # (out features, in features, spatial...)
    per_output = np.prod([kernel[d] for d in spec[1:]], dtype=np.float64)
    return float(2 * np.prod(out, dtype=np.float64) * per_output)
