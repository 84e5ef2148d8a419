"""jaxdl against PyTorch peers on whatever accelerator this machine has (or the CPU).

    benchmarks/accelerator.sh            # the whole set, at most 8 minutes, on a GPU machine
    python -m benchmarks.accelerator --quick --out /tmp/acc.json   # tiny shapes (CI, CPU)

Every case runs each side in its own process (JAX preallocates most of a GPU's memory),
one after the other, on the same random data shapes:

  lm        decoder LM of GPT-2-small shape (12 layers, 12 heads, width 768, context
            1024, vocabulary 50304, random tokens), bfloat16, the largest of 64/32/16/8
            sequences per batch that fits: train tokens/s and MFU (model matmul FLOPs,
            `jaxdl.train.flops`). jaxdl: the decoder_lm recipe's model and AdamW at that
            shape, `--config.dtype=bfloat16`; peer: nanoGPT's GPT (benchmarks/torch_peers)
            in bf16 autocast with scaled_dot_product_attention, fused AdamW, torch.compile.
  cnn       MyNet (the reference CNN) at batch 256, float32 and bfloat16: train and
            inference images/s (random 48x48x3 images; no augmentation on either side).
  unet      the text2img recipe's UNet (defaults: 16/32/64 channels, 32x32x1) train step
            at batch 256, images/s, the text context given (the small text encoder is
            not part of either side).
  generate  KV-cache generation, GPT-2-small shape, batch 1, 16 prompt tokens + 256 new:
            tokens/s (peer eager: torch.compile of a growing-cache loop recompiles).

Writes one JSON (figures, ratios jaxdl/peer, the device, versions, what the peer ran as)
and prints a table. Each worker prints its figures as its last stdout line. `--quick`
shrinks every shape (batches of 4-8, a 2-layer 64-wide LM) so the whole script runs on a
CPU in about 90 s: it checks the script, not the speed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

GPT2 = dict(layers=12, heads=12, dim=768, context=1024, vocab=50304)
GPT2_QUICK = dict(layers=2, heads=2, dim=64, context=64, vocab=512)
CASES = ("lm", "cnn", "unet", "generate")
WORKER_TIMEOUT = 150  # seconds per worker process (8 workers, at most 8 minutes in all)


def shape(quick: bool) -> dict:
    return GPT2_QUICK if quick else GPT2


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


# ------------------------------------------------------------------------------ jaxdl
def jax_lm(quick: bool) -> dict:
    import jax
    import numpy as np

    from jaxdl import recipes
    from jaxdl.nn.precision import with_dtype
    from jaxdl.recipes.decoder_lm import build_model_and_optimizer
    from jaxdl.tasks import language
    from jaxdl.train import create_train_state, flops, make_train_step
    from jaxdl.train.compile import compile_step

    s = shape(quick)
    config = recipes.get("decoder_lm").get_config()
    config.update(num_layers=s["layers"], num_heads=s["heads"], dim=s["dim"],
                  seq_len=s["context"], dropout=0.0)
    model, tx, _ = build_model_and_optimizer(config, s["vocab"])
    model = with_dtype(model, jax.numpy.bfloat16)
    step_fn = make_train_step(language.next_token_loss, model)
    rng = np.random.default_rng(0)
    for batch_size in (4,) if quick else (64, 32, 16, 8):
        try:
            state = jax.jit(lambda k: create_train_state(model, tx, k, np.zeros(
                (1, s["context"]), np.int32)))(jax.random.PRNGKey(0))
            batch = {"tokens": jax.device_put(rng.integers(
                0, s["vocab"], (batch_size, s["context"] + 1), dtype=np.int32))}
            step = compile_step(step_fn)
            t0 = time.perf_counter()
            state, m = step(state, batch)
            jax.block_until_ready(m)
            compile_s = time.perf_counter() - t0
            break
        except Exception as e:  # noqa: BLE001 - out of memory: the next smaller batch
            if "RESOURCE_EXHAUSTED" not in str(e) and "out of memory" not in str(e).lower():
                raise
            state = batch = step = None
    n = 3 if quick else 10
    seconds, state = step_seconds(step, state, batch, n, jax.block_until_ready)
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)
    model_flops = flops.matmul_flops(step_fn, shapes, batch)
    peak = flops.peak_flops(jax.devices()[0], "bfloat16")
    sps = n / seconds
    return {"batch": batch_size, "tokens_per_s": sps * batch_size * s["context"],
            "step_ms": 1000 / sps, "compile_s": compile_s, "model_flops_per_step": model_flops,
            "mfu": model_flops * sps / peak if peak else None, "peak_flops": peak,
            "attention": "jax.nn.dot_product_attention (auto: cudnn on GPU in bf16)"}


def jax_cnn(quick: bool, batch_size: int | None = None, steps: int | None = None) -> dict:
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
    for dtype in ("float32", "bfloat16"):
        config = recipe.get_config()
        config.update(dataset="mnist_5k", dtype=dtype)
        task = recipe.build(config, recipe.load_data(config))
        holder = {"state": task.init_state(0)}
        step = compile_step(make_train_step(classify.softmax_cross_entropy, task.model))

        def one(step=step, holder=holder):
            holder["state"], metrics = step(holder["state"], batch)
            return metrics

        infer = compile_eval(lambda params, x, model=task.model: jnp.argmax(
            model.apply({"params": params}, x), -1))
        for _ in range(2):
            one()
            infer(holder["state"].params, batch["image"]).block_until_ready()
        n = steps or (3 if quick else 30)
        train_s = timed(one, n, jax.block_until_ready)
        infer_s = timed(lambda h=holder, f=infer: f(h["state"].params, batch["image"]), n,
                        jax.block_until_ready)
        out[dtype] = {"train_img_per_s": n * batch_size / train_s,
                      "infer_img_per_s": n * batch_size / infer_s}
    return out


def jax_unet(quick: bool) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdl import recipes
    from jaxdl.recipes.text2img import text_to_image_model
    from jaxdl.train import create_train_state, make_optimizer, make_train_step
    from jaxdl.train.compile import compile_step

    config = recipes.get("text2img").get_config()
    unet = text_to_image_model(config, 100).unet
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

    state = create_train_state(unet, make_optimizer("adamw", 1e-3), jax.random.PRNGKey(0),
                               (batch["x"][:1], batch["t"][:1], batch["context"][:1],
                                jnp.ones((1, length), bool), batch["context"][:1, 0]))
    step = compile_step(make_train_step(loss, unet))
    n = 3 if quick else 30
    seconds, _ = step_seconds(step, state, batch, n, jax.block_until_ready)
    return {"train_img_per_s": n * b / seconds}


def jax_generate(quick: bool) -> dict:
    import jax
    import numpy as np

    from jaxdl.nn.transformer import DecoderLM
    from jaxdl.tasks import language

    s = shape(quick)
    model = DecoderLM(s["vocab"], num_layers=s["layers"], num_heads=s["heads"], dim=s["dim"],
                      max_len=s["context"], use_bias=False, dtype=jax.numpy.bfloat16)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), np.zeros((1, 16), np.int32))["params"]
    prompt = np.random.default_rng(0).integers(0, s["vocab"], (1, 16)).astype(np.int32)
    new = 32 if quick else 256
    gen = lambda: language.generate_cached(model, params, prompt, new,  # noqa: E731
                                           jax.random.PRNGKey(1), temperature=1.0)
    np.asarray(gen())  # compiles the prefill and the decode scan
    seconds = timed(gen, 3, lambda out: np.asarray(out))
    return {"tokens_per_s": 3 * new / seconds}


# ---------------------------------------------------------------------------- PyTorch
def _torch():
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 on both sides
    torch.backends.cudnn.allow_tf32 = False
    return torch, device


def _compiled(torch, module, device):
    """torch.compile where it works (a GPU with Triton), else eager; and which."""
    if device != "cuda":
        return module, "eager"
    try:
        return torch.compile(module), "torch.compile"
    except Exception:  # noqa: BLE001
        return module, "eager"


def torch_lm(quick: bool) -> dict:
    torch, device = _torch()
    from benchmarks.torch_peers import GPTPeer, make_gpt_trainer

    s = shape(quick)
    mode = "eager"
    for batch_size in (4,) if quick else (64, 32, 16, 8):
        try:
            torch.manual_seed(0)
            model = GPTPeer(s["vocab"], s["layers"], s["heads"], s["dim"], s["context"]).to(device)
            model, mode = _compiled(torch, model, device)
            step = make_gpt_trainer(model, fused=device == "cuda", autocast=torch.bfloat16)
            tokens = torch.randint(0, s["vocab"], (batch_size, s["context"] + 1), device=device)
            x, y = tokens[:, :-1], tokens[:, 1:]
            t0 = time.perf_counter()
            step(x, y).item()
            compile_s = time.perf_counter() - t0
            break
        except torch.OutOfMemoryError:
            model = step = None
            torch.cuda.empty_cache()
    for _ in range(2):
        step(x, y)
    n = 3 if quick else 10
    sync = lambda loss: loss.item()  # noqa: E731
    seconds = timed(lambda: step(x, y), n, sync)
    return {"batch": batch_size, "tokens_per_s": n * batch_size * s["context"] / seconds,
            "step_ms": 1000 * seconds / n, "compile_s": compile_s,
            "peer": f"nanoGPT GPT, bf16 autocast, SDPA, fused AdamW, {mode}"}


def torch_cnn(quick: bool, batch_size: int | None = None, steps: int | None = None) -> dict:
    torch, device = _torch()
    from benchmarks.torch_peers import MyNetPeer

    batch_size, out = batch_size or (8 if quick else 256), {}
    x = torch.randn(batch_size, 3, 48, 48, device=device).contiguous(
        memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,), device=device)
    for dtype in ("float32", "bfloat16"):
        torch.manual_seed(0)
        net = MyNetPeer().to(device).to(memory_format=torch.channels_last)
        model, mode = _compiled(torch, net, device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
        amp = dict(device_type=device, dtype=torch.bfloat16, enabled=dtype == "bfloat16")

        def train(model=model, opt=opt, amp=amp):
            with torch.autocast(**amp):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        def infer(model=model, amp=amp):
            with torch.no_grad(), torch.autocast(**amp):
                return model(x).argmax(1)

        model.train()
        for _ in range(2):
            train()
        n = steps or (3 if quick else 30)
        sync = lambda t: t.cpu()  # noqa: E731
        train_s = timed(train, n, sync)
        model.eval()
        for _ in range(2):
            infer()
        infer_s = timed(infer, n, sync)
        out[dtype] = {"train_img_per_s": n * batch_size / train_s,
                      "infer_img_per_s": n * batch_size / infer_s}
    out["peer"] = f"reference MY_NET, channels_last, bf16 autocast for bfloat16, {mode}"
    return out


def torch_unet(quick: bool) -> dict:
    torch, device = _torch()
    from benchmarks.torch_peers import UNetPeer

    b, length = (8 if quick else 256), 16
    torch.manual_seed(0)
    net = UNetPeer().to(device)
    model, mode = _compiled(torch, net, device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.0)
    x = torch.randn(b, 1, 32, 32, device=device)
    noise = torch.randn_like(x)
    t = torch.randint(0, 1000, (b,), device=device)
    ctx = torch.randn(b, length, 64, device=device)

    def train():
        loss = torch.mean((model(x, t, ctx) - noise) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(2):
        train()
    n = 3 if quick else 30
    return {"train_img_per_s": n * b / timed(train, n, lambda v: v.item()),
            "peer": f"jaxdl's UNet layer for layer (UNetPeer), float32, {mode}"}


def torch_generate(quick: bool) -> dict:
    torch, device = _torch()
    from benchmarks.torch_peers import GPTPeer

    s = shape(quick)
    torch.manual_seed(0)
    model = GPTPeer(s["vocab"], s["layers"], s["heads"], s["dim"], s["context"]).to(device)
    model.eval()
    prompt = torch.randint(0, s["vocab"], (1, 16), device=device)
    new = 32 if quick else 256

    def gen():
        with torch.autocast(device, dtype=torch.bfloat16):
            return model.generate(prompt, new, cached=True, cache_dtype=torch.bfloat16)

    gen()
    seconds = timed(gen, 3, lambda out: out.cpu())
    return {"tokens_per_s": 3 * new / seconds, "peer": "nanoGPT GPT + KV cache, bf16, eager"}


WORKERS = {("jaxdl", "lm"): jax_lm, ("jaxdl", "cnn"): jax_cnn, ("jaxdl", "unet"): jax_unet,
           ("jaxdl", "generate"): jax_generate, ("torch", "lm"): torch_lm,
           ("torch", "cnn"): torch_cnn, ("torch", "unet"): torch_unet,
           ("torch", "generate"): torch_generate}


# ----------------------------------------------------------------------------- driver
def worker(side: str, case: str, quick: bool) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.accelerator", "--worker", side, case]
    cmd += ["--quick"] if quick else []
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT,
                              cwd=Path(__file__).resolve().parent.parent)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {WORKER_TIMEOUT} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-3:]}
    return {**json.loads(lines[-1]), "wall_s": time.perf_counter() - t}


def device_info() -> dict:
    import jax

    d = jax.devices()[0]
    info = {"platform": d.platform, "device_kind": d.device_kind, "jax": jax.__version__}
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


def ratios(results: dict) -> list[tuple[str, float | None, float | None, float | None]]:
    """(figure, jaxdl, peer, jaxdl/peer) rows."""
    rows = []

    def add(label, j, t):
        ok = isinstance(j, int | float) and isinstance(t, int | float) and t
        rows.append((label, j, t, j / t if ok else None))

    get = lambda side, case, *keys: _dig(results.get(case, {}).get(side, {}), keys)  # noqa
    add("decoder LM GPT-2 small, bf16 train (tokens/s)", get("jaxdl", "lm", "tokens_per_s"),
        get("torch", "lm", "tokens_per_s"))
    rows.append(("decoder LM MFU (jaxdl)", get("jaxdl", "lm", "mfu"), None, None))
    for dt in ("float32", "bfloat16"):
        for what in ("train", "infer"):
            add(f"MyNet {what}, batch 256, {dt} (img/s)",
                get("jaxdl", "cnn", dt, f"{what}_img_per_s"),
                get("torch", "cnn", dt, f"{what}_img_per_s"))
    add("UNet train step, batch 256 (img/s)", get("jaxdl", "unet", "train_img_per_s"),
        get("torch", "unet", "train_img_per_s"))
    add("GPT-2 small KV-cache generation (tokens/s)", get("jaxdl", "generate", "tokens_per_s"),
        get("torch", "generate", "tokens_per_s"))
    return rows


def _dig(d, keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny shapes: a smoke run on a CPU")
    p.add_argument("--out", type=Path, default=Path("accelerator.json"))
    p.add_argument("--cases", default=",".join(CASES), help=f"some of {', '.join(CASES)}")
    p.add_argument("--sides", default="jaxdl,torch")
    p.add_argument("--worker", nargs=2, metavar=("SIDE", "CASE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[tuple(args.worker)](args.quick), default=float), flush=True)
        return 0
    t0 = time.perf_counter()
    results = {"device": device_info(), "quick": args.quick,
               "date": time.strftime("%Y-%m-%d")}
    for case in args.cases.split(","):
        results[case] = {}
        for side in args.sides.split(","):
            results[case][side] = r = worker(side, case, args.quick)
            print(f"{case:9s} {side:6s} {json.dumps(r, default=float)[:300]}", flush=True)
    results["table"] = ratios(results)
    results["seconds"] = time.perf_counter() - t0
    args.out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(f"\n{results['device']['device_kind']} ({results['device']['platform']}), "
          f"jax {results['device']['jax']}, torch {results['device']['torch']}")
    fmt = lambda v: "-" if v is None else f"{v:,.3g}" if v < 10 else f"{v:,.0f}"  # noqa: E731
    for label, j, t, r in results["table"]:
        print(f"| {label} | {fmt(j)} | {fmt(t)} | {'-' if r is None else f'{r:.2f}x'} |")
    print(f"wrote {args.out} ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "true")
    sys.exit(main())
