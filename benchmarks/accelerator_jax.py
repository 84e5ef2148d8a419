"""jaxdl's side of benchmarks/accelerator.py: each function runs in a process of its own and
returns its figures as a dict (the driver prints and compares them).

Every case builds what a user's run builds (the decoder_lm recipe's model and optimizer,
the image_classifier and text2img recipes' models, `generate_cached`) on random data of the
peer's shapes. Variants run one after another in the process, and the best one is the
case's figure; all of them are kept in `variants`.
"""

from __future__ import annotations

import functools
import tempfile
import time

from benchmarks.accelerator_cases import (
    CONTEXT_QUICK,
    GENERATE,
    GPT2,
    GPT2_QUICK,
    step_seconds,
    timed,
)

# Train-step XLA options tried on GPUs beside XLA's defaults; the measured winner goes to
# jaxdl.train.compile (docs/accelerators.md).
GPU_TRAIN_CANDIDATES = {"no_triton_gemm": {"xla_gpu_enable_triton_gemm": False}}
# Generation: the loop as a CUDA graph (XLA command buffers with WHILE and CONDITIONAL).
GPU_GENERATE_CANDIDATES = {"command_buffer_while": {
    "xla_gpu_enable_command_buffer": "FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL"}}


def _backend() -> str:
    import jax

    return jax.default_backend()


def _lm_setup(quick: bool, nanogpt: bool, loss_impl: str):
    """(model, optimizer, loss, config, shape): the decoder_lm recipe at GPT-2-small shape in
    bfloat16, nanoGPT's architecture and AdamW (`nanogpt_config`) or jaxdl's own recipe."""
    import jax.numpy as jnp

    from jaxdl import recipes
    from jaxdl.nn.precision import with_dtype
    from jaxdl.recipes.decoder_lm import build_model_and_optimizer
    from jaxdl.tasks import language

    s = GPT2_QUICK if quick else GPT2
    recipe = recipes.get("decoder_lm")
    config = recipe.nanogpt_config() if nanogpt else recipe.get_config()
    config.update(num_layers=s["layers"], num_heads=s["heads"], dim=s["dim"],
                  seq_len=s["context"], dropout=0.0, dtype="bfloat16", loss_impl=loss_impl)
    model, tx, _ = build_model_and_optimizer(config, s["vocab"])
    loss = functools.partial(language.next_token_loss, loss_impl=loss_impl)
    return with_dtype(model, jnp.bfloat16), tx, loss, config, s


def _compile_lm(quick: bool, nanogpt: bool, loss_impl: str, options: dict, sizes):
    """The variant's compiled step at the largest batch of `sizes` that fits, after one
    step: (step, state, batch, compile seconds, config, model, loss fn, that step's loss)."""
    import jax
    import numpy as np

    from jaxdl.train import create_train_state, make_train_step
    from jaxdl.train.compile import compile_step, train_compiler_options

    model, tx, loss, config, s = _lm_setup(quick, nanogpt, loss_impl)
    step = compile_step(make_train_step(loss, model),
                        compiler_options={**(train_compiler_options() or {}), **options})
    rng = np.random.default_rng(0)
    for size in sizes:
        try:
            state = jax.jit(lambda k: create_train_state(
                model, tx, k, np.zeros((1, s["context"]), np.int32)))(jax.random.PRNGKey(0))
            batch = {"tokens": jax.device_put(rng.integers(
                0, s["vocab"], (size, s["context"] + 1), dtype=np.int32))}
            t0 = time.perf_counter()
            state, m = step(state, batch)
            jax.block_until_ready(m)
            seconds = time.perf_counter() - t0
            first = float(m["loss_sum"] / m["count"])
            return step, state, batch, seconds, config, model, loss, first
        except Exception as e:  # noqa: BLE001 - out of memory: the next smaller batch
            if "RESOURCE_EXHAUSTED" not in str(e) and "out of memory" not in str(e).lower():
                raise
            state = batch = None
    raise RuntimeError(f"no batch of {sizes} fits")


def _train_lm(quick: bool, nanogpt: bool, variants: dict) -> dict:
    """Each variant (name -> (loss_impl, compiler options)) compiled and timed on the same
    batch size (a variant that fails is reported and skipped); the fastest one profiled.
    Tokens/s, MFU (jaxpr count) and nanoGPT's mfu_6n."""
    import jax

    from benchmarks.trace_summary import profile_steps, summarize
    from jaxdl.recipes.decoder_lm import mfu_6n
    from jaxdl.train import flops, make_train_step

    out, best, sizes = {"variants": {}}, None, (4,) if quick else (64, 32, 16, 8)
    for name, (loss_impl, options) in variants.items():
        try:
            step, state, batch, compile_s, config, model, loss, first_loss = _compile_lm(
                quick, nanogpt, loss_impl, options, sizes)
        except Exception as e:  # noqa: BLE001 - reported; the other variants still run
            out["variants"][name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
            continue
        sizes = (batch["tokens"].shape[0],)  # every later variant at the same batch
        n = 3 if quick else 10
        seconds, state = step_seconds(step, state, batch, n, jax.block_until_ready)
        tokens_per_s = n * sizes[0] * config.seq_len / seconds
        out["variants"][name] = {"tokens_per_s": tokens_per_s, "step_ms": 1000 * seconds / n,
                                 "compile_s": compile_s, "loss_impl": loss_impl,
                                 "compiler_options": options, "first_loss": first_loss}
        if best is None or tokens_per_s > out["variants"][best[0]]["tokens_per_s"]:
            best = (name, step, state, batch, config, model, loss)
        del state
    if best is None:
        return out
    name, step, state, batch, config, model, loss = best
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)
    model_flops = flops.matmul_flops(make_train_step(loss, flops.counting_model(model)),
                                     shapes, batch)
    peak = flops.peak_flops(jax.devices()[0], "bfloat16")
    best_v = out["variants"][name]
    n_params = sum(int(x.size) for x in jax.tree.leaves(state.params))
    holder = {"state": state}

    def one():
        holder["state"], metrics = step(holder["state"], batch)
        return metrics

    try:
        with tempfile.TemporaryDirectory() as trace_dir:
            profile_steps(one, 3, trace_dir, jax.block_until_ready)
            profile = summarize(trace_dir, top=15)
    except Exception as e:  # noqa: BLE001 - the figures stand without the breakdown
        profile = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    sps = best_v["tokens_per_s"] / (batch["tokens"].shape[0] * config.seq_len)
    out.update(best=name, batch=batch["tokens"].shape[0], tokens_per_s=best_v["tokens_per_s"],
               step_ms=best_v["step_ms"], compile_s=best_v["compile_s"],
               model_flops_per_step=model_flops, peak_flops=peak, num_params=n_params,
               mfu=model_flops * sps / peak if peak else None,
               mfu_6n=mfu_6n(config, n_params, best_v["tokens_per_s"]),
               profile=profile, attention="jax.nn.dot_product_attention (auto: cuDNN on GPU)")
    return out


def lm(quick: bool) -> dict:
    """nanoGPT's architecture and AdamW at GPT-2-small shape: the plain and the chunked
    loss, and the chunked loss under each GPU train-step candidate."""
    variants = {"plain_loss": ("plain", {}), "chunked_loss": ("chunked", {})}
    if _backend() == "gpu":
        variants.update({f"chunked_loss+{k}": ("chunked", v)
                         for k, v in GPU_TRAIN_CANDIDATES.items()})
    return _train_lm(quick, True, variants)


def lm_recipe(quick: bool) -> dict:
    """jaxdl's own recipe (Muon, rotary, RMSNorm, QK-norm, ReLU², untied head, soft cap)
    at the same shape, its loss_impl auto."""
    return _train_lm(quick, False, {"recipe": ("auto", {})})


def _precision(name):
    """A context in which jits trace and compile at this matmul precision (None: XLA's)."""
    import contextlib

    import jax

    return jax.default_matmul_precision(name) if name else contextlib.nullcontext()


def _cnn_precisions():
    """(name, matmul precision for jax.default_matmul_precision, dtype): float32 as TF32
    (XLA's default on NVIDIA GPUs) and as full float32, and bfloat16."""
    return (("float32_tf32", None, "float32"), ("float32_highest", "highest", "float32"),
            ("bfloat16", None, "bfloat16"))


def cnn(quick: bool, batch_size: int | None = None, steps: int | None = None,
        names: tuple = ()) -> dict:
    """MyNet train and inference images/s at each precision (`names`: some of them)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdl import recipes
    from jaxdl.tasks import classify
    from jaxdl.train import make_train_step
    from jaxdl.train.compile import compile_eval, compile_step

    batch_size, out = batch_size or (8 if quick else 256), {}
    rng = np.random.default_rng(0)
    batch = {"image": jax.device_put(rng.standard_normal((batch_size, 48, 48, 3), np.float32)),
             "label": jax.device_put(rng.integers(0, 10, batch_size).astype(np.int32))}
    recipe = recipes.get("image_classifier")
    for name, precision, dtype in _cnn_precisions():
        if names and name not in names:
            continue
        config = recipe.get_config()
        config.update(dataset="mnist_5k", dtype=dtype)
        task = recipe.build(config, recipe.load_data(config))
        holder = {"state": task.init_state(0)}
        step = compile_step(make_train_step(classify.softmax_cross_entropy, task.model))
        infer = compile_eval(lambda params, x, model=task.model: jnp.argmax(
            model.apply({"params": params}, x), -1))
        with _precision(precision):  # traced and compiled at this precision

            def one(step=step, holder=holder):
                holder["state"], metrics = step(holder["state"], batch)
                return metrics

            for _ in range(2):
                one()
                infer(holder["state"].params, batch["image"]).block_until_ready()
            n = steps or (3 if quick else 30)
            train_s = timed(one, n, jax.block_until_ready)
            infer_s = timed(lambda h=holder, f=infer: f(h["state"].params, batch["image"]), n,
                            jax.block_until_ready)
        out[name] = {"train_img_per_s": n * batch_size / train_s,
                     "infer_img_per_s": n * batch_size / infer_s}
    return out


def unet(quick: bool) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdl import recipes
    from jaxdl.recipes.text2img import text_to_image_model
    from jaxdl.train import create_train_state, make_optimizer, make_train_step
    from jaxdl.train.compile import compile_step

    config = recipes.get("text2img").get_config()
    model = text_to_image_model(config, 100).unet
    b, length = (8 if quick else 256), 16
    rng = np.random.default_rng(0)
    batch = {k: jax.device_put(v) for k, v in {
        "x": rng.standard_normal((b, 32, 32, 1), np.float32),
        "noise": rng.standard_normal((b, 32, 32, 1), np.float32),
        "t": rng.integers(0, 1000, b).astype(np.int32),
        "context": rng.standard_normal((b, length, config.text_dim), np.float32)}.items()}

    def loss(params, batch, rng, model, train, batch_stats=None):
        ctx = batch["context"]
        out = model.apply({"params": params}, batch["x"], batch["t"], ctx,
                          jnp.ones(ctx.shape[:2], bool), ctx[:, 0])
        err = jnp.mean(jnp.square(out.astype(jnp.float32) - batch["noise"]))
        return err, {"loss_sum": err * b, "count": jnp.float32(b)}

    out = {}
    for name, precision, dtype in _cnn_precisions():
        if dtype != "float32":
            continue
        state = create_train_state(model, make_optimizer("adamw", 1e-3), jax.random.PRNGKey(0),
                                   (batch["x"][:1], batch["t"][:1], batch["context"][:1],
                                    jnp.ones((1, length), bool), batch["context"][:1, 0]))
        step = compile_step(make_train_step(loss, model))
        with _precision(precision):  # traced and compiled at this precision
            n = 3 if quick else 30
            seconds, _ = step_seconds(step, state, batch, n, jax.block_until_ready)
        out[name] = {"train_img_per_s": n * b / seconds}
    return out


def generate(quick: bool) -> dict:
    """KV-cache generation at GPT-2-small shape (nanoGPT's architecture), bfloat16, 16
    prompt tokens + 256 new, at each batch: tokens/s under XLA's defaults and each GPU
    candidate; the compiled loop's copies of the cache and device ops per new token."""
    import re

    import jax
    import numpy as np

    from benchmarks.trace_summary import profile_steps, summarize
    from jaxdl.tasks import language

    model, _, _, _, s = _lm_setup(quick, True, "plain")
    params = jax.jit(model.init)(jax.random.PRNGKey(0), np.zeros((1, 16), np.int32))["params"]
    new = GENERATE["new_quick"] if quick else GENERATE["new"]
    candidates = {"xla_defaults": {}}
    if _backend() == "gpu":
        candidates.update(GPU_GENERATE_CANDIDATES)
    out = {}
    for batch in GENERATE["batches_quick"] if quick else GENERATE["batches"]:
        prompt = np.random.default_rng(0).integers(0, s["vocab"], (batch, GENERATE["prompt"]))
        prompt = prompt.astype(np.int32)
        row = {"variants": {}}
        def gen(p=prompt):
            return language.generate_cached(model, params, p, new, jax.random.PRNGKey(1),
                                            temperature=1.0)

        for name, options in candidates.items():
            language.GENERATE_COMPILER_OPTIONS[_backend()] = options
            t0 = time.perf_counter()
            try:
                first = np.asarray(gen())  # compiles the one program
            except Exception as e:  # noqa: BLE001 - a candidate that fails is reported
                if not options:
                    raise
                row["variants"][name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
                continue
            compile_s = time.perf_counter() - t0
            seconds = timed(gen, 3, np.asarray)
            row["variants"][name] = {"tokens_per_s": 3 * new * batch / seconds,
                                     "ms_per_token": 1000 * seconds / (3 * new),
                                     "compile_s": compile_s}
            row.setdefault("tokens", first[:, :8].tolist())
            assert first[:, :8].tolist() == row["tokens"], f"{name} changed the tokens"
        best = max((k for k in row["variants"] if "error" not in row["variants"][k]),
                   key=lambda k: row["variants"][k]["tokens_per_s"])
        language.GENERATE_COMPILER_OPTIONS[_backend()] = candidates[best]
        context = jax.numpy.asarray(prompt)
        text = language.generation_program().lower(
            model, params, context, jax.random.PRNGKey(1), np.float32(1.0), num_tokens=new,
            top_k=0, greedy=False, keep_logits=False).compile().as_text()
        heads = s["heads"]
        cache = f"bf16[{batch},{GENERATE['prompt'] + new},{heads},{s['dim'] // heads}]"
        try:
            with tempfile.TemporaryDirectory() as trace_dir:
                profile_steps(gen, 1, trace_dir, np.asarray)
                summary = summarize(trace_dir, top=10)
        except Exception as e:  # noqa: BLE001 - the figures stand without the breakdown
            summary = {"error": f"{type(e).__name__}: {str(e)[:300]}", "events": 0}
        row.update(best=best, **row["variants"][best],
                   cache_copies=len(re.findall(re.escape(cache) + r"\{[0-9,]*\} copy\(", text)),
                   cache_updates=len(re.findall(re.escape(cache) + r"\{[0-9,]*\} "
                                                r"dynamic-update-slice\(", text)),
                   device_ops_per_token=summary["events"] / new, profile=summary)
        del row["tokens"]
        out[f"batch{batch}"] = row
    language.GENERATE_COMPILER_OPTIONS.pop(_backend(), None)
    out["context"] = CONTEXT_QUICK if quick else s["context"]
    return out
