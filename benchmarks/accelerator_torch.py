"""The PyTorch peers' side of benchmarks/accelerator.py, one process per case (imports no
jaxdl): nanoGPT's GPT with torch.compile, the reference CNN, jaxdl's UNet layer for layer,
and decoding eager and gpt-fast style. float32 runs at both matmul precisions, named as
jaxdl's side names them: TF32 (`allow_tf32=True`) and full float32 (`False`)."""

from __future__ import annotations

import time

from benchmarks.accelerator_cases import CONTEXT_QUICK, GENERATE, GPT2, GPT2_QUICK, timed


def _torch():
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch, device


def _tf32(torch, on: bool) -> None:
    """Matmuls and convolutions in TF32 (on) or full float32 (off); read at run time by
    cuBLAS and cuDNN, so a compiled module needs no recompiling."""
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


PRECISIONS = (("float32_tf32", True, False), ("float32_highest", False, False),
              ("bfloat16", False, True))  # (name, tf32, bf16 autocast)


def _compiled(torch, module, device):
    """torch.compile where it works (a GPU with Triton), else eager; and which."""
    if device != "cuda":
        return module, "eager"
    try:
        return torch.compile(module), "torch.compile"
    except Exception:  # noqa: BLE001
        return module, "eager"


def lm(quick: bool) -> dict:
    torch, device = _torch()
    from benchmarks.torch_peers import GPTPeer, make_gpt_trainer, num_params_6n

    s = GPT2_QUICK if quick else GPT2
    mode = "eager"
    for batch_size in (4,) if quick else (64, 32, 16, 8):
        try:
            torch.manual_seed(0)
            net = GPTPeer(s["vocab"], s["layers"], s["heads"], s["dim"], s["context"]).to(device)
            model, mode = _compiled(torch, net, device)
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
    seconds = timed(lambda: step(x, y), n, lambda loss: loss.item())
    return {"batch": batch_size, "tokens_per_s": n * batch_size * s["context"] / seconds,
            "step_ms": 1000 * seconds / n, "compile_s": compile_s,
            "num_params_6n": num_params_6n(net),
            "peer": f"nanoGPT GPT, bf16 autocast, SDPA, fused AdamW, {mode}"}


def cnn(quick: bool, batch_size: int | None = None, steps: int | None = None,
        names: tuple = ()) -> dict:
    """MyNet train and inference images/s at each precision (`names`: some of them)."""
    torch, device = _torch()
    from benchmarks.torch_peers import MyNetPeer

    batch_size, out = batch_size or (8 if quick else 256), {}
    x = torch.randn(batch_size, 3, 48, 48, device=device).contiguous(
        memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,), device=device)
    compiled = {}  # one compiled module per autocast dtype; TF32 is a run-time switch
    for name, tf32, bf16 in PRECISIONS:
        if names and name not in names:
            continue
        _tf32(torch, tf32)
        if bf16 not in compiled:
            torch.manual_seed(0)
            net = MyNetPeer().to(device).to(memory_format=torch.channels_last)
            model, mode = _compiled(torch, net, device)
            opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
            compiled[bf16] = (model, opt)
        model, opt = compiled[bf16]
        amp = dict(device_type=device, dtype=torch.bfloat16, enabled=bf16)

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
        out[name] = {"train_img_per_s": n * batch_size / train_s,
                     "infer_img_per_s": n * batch_size / infer_s}
    out["peer"] = f"reference MY_NET, channels_last, bf16 autocast for bfloat16, {mode}"
    return out


def unet(quick: bool) -> dict:
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

    out = {"peer": f"jaxdl's UNet layer for layer (UNetPeer), float32, {mode}"}
    for name, tf32, bf16 in PRECISIONS:
        if bf16:
            continue
        _tf32(torch, tf32)
        for _ in range(2):
            train()
        n = 3 if quick else 30
        out[name] = {"train_img_per_s": n * b / timed(train, n, lambda v: v.item())}
    return out


def generate(quick: bool) -> dict:
    """nanoGPT's GPT at GPT-2-small shape in bfloat16 weights, 16 prompt tokens + 256 new:
    its eager KV-cache loop, and gpt-fast's static cache under torch.compile
    (mode="reduce-overhead": CUDA graphs), at each batch."""
    torch, device = _torch()
    from benchmarks.torch_peers import GPTPeer, StaticCacheGenerator

    s = GPT2_QUICK if quick else GPT2
    torch.manual_seed(0)
    model = GPTPeer(s["vocab"], s["layers"], s["heads"], s["dim"], s["context"]).to(device)
    model = model.to(torch.bfloat16).eval()
    new = GENERATE["new_quick"] if quick else GENERATE["new"]
    out = {"context": CONTEXT_QUICK if quick else s["context"]}
    for batch in GENERATE["batches_quick"] if quick else GENERATE["batches"]:
        prompt = torch.randint(0, s["vocab"], (batch, GENERATE["prompt"]), device=device)
        row = {}

        def eager(prompt=prompt):
            return model.generate(prompt, new, cached=True, cache_dtype=torch.bfloat16)

        fast = StaticCacheGenerator(model, batch, GENERATE["prompt"] + new, torch.bfloat16,
                                    compiled=device == "cuda" or quick)
        for name, gen in (("eager", eager), ("static_cache_compiled",
                                              lambda f=fast, p=prompt: f.generate(p, new))):
            t0 = time.perf_counter()
            gen().cpu()
            warm = time.perf_counter() - t0
            gen().cpu()  # CUDA graphs are recorded on the second call
            seconds = timed(gen, 3, lambda t: t.cpu())
            row[name] = {"tokens_per_s": 3 * new * batch / seconds,
                         "ms_per_token": 1000 * seconds / (3 * new), "compile_s": warm}
        row["static_cache_compiled"]["mode"] = fast.mode
        out[f"batch{batch}"] = row
    out["peer"] = "nanoGPT GPT, bf16 weights: eager KV cache; gpt-fast static cache compiled"
    return out
