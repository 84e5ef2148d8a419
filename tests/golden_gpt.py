"""Golden nanoGPT training trajectory: losses and final weights of PyTorch's nanoGPT model.

Run by a developer with torch installed, once, to (re)write tests/data/gpt_golden.npz:

    .venv/bin/pip install torch==2.13.0 && .venv/bin/python tests/golden_gpt.py

The model below is nanoGPT's `GPT` (Karpathy's model.py: pre-norm blocks, fused c_attn,
exact GELU, LayerNorm eps 1e-5, tied lm_head, GPT-2 init with c_proj scaled by depth),
trained the way its train.py does on the `shakespeare_char` recipe (AdamW, betas
(0.9, 0.99), weight decay on tensors of rank >= 2 only, gradient clipping 1.0, its
get_lr warmup and cosine schedule), shrunk to a few tiny steps. test_transformer.py loads
the initial weights with `decoder_lm_params_from_nanogpt`, trains jaxdl's DecoderLM through
the shared train step on the same batches and compares every loss and the final weights.
"""

import math
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).parent / "data" / "gpt_golden.npz"
CONFIG = dict(vocab=65, layers=2, heads=2, dim=32, block=16, batch=4, steps=8)
RECIPE = dict(lr=1e-2, min_lr=1e-3, warmup=3, decay_iters=8, b2=0.99, wd=0.1, clip=1.0)


def get_lr(it: int) -> float:
    """nanoGPT train.py's get_lr."""
    r = RECIPE
    if it < r["warmup"]:
        return r["lr"] * (it + 1) / (r["warmup"] + 1)
    if it > r["decay_iters"]:
        return r["min_lr"]
    ratio = (it - r["warmup"]) / (r["decay_iters"] - r["warmup"])
    return r["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (r["lr"] - r["min_lr"])


def batches(rng_seed: int = 0) -> np.ndarray:
    """(steps, batch, block + 1) windows of the embedded tiny shakespeare, char ids."""
    from jaxdl.data import text as textdata

    text = textdata.load_text("tinyshakespeare", "")
    ids = textdata.make_vocab("char", text).encode(text)
    c = CONFIG
    starts = np.random.default_rng(rng_seed).integers(0, len(ids) - c["block"],
                                                     (c["steps"], c["batch"]))
    return ids[starts[..., None] + np.arange(c["block"] + 1)].astype(np.int32)


def main():
    import torch
    import torch.nn as tnn
    import torch.nn.functional as F

    c = CONFIG

    class CausalSelfAttention(tnn.Module):
        def __init__(self, bias):
            super().__init__()
            self.c_attn = tnn.Linear(c["dim"], 3 * c["dim"], bias=bias)
            self.c_proj = tnn.Linear(c["dim"], c["dim"], bias=bias)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(x).split(C, dim=2)
            q, k, v = (t.view(B, T, c["heads"], C // c["heads"]).transpose(1, 2)
                       for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

    class MLP(tnn.Module):
        def __init__(self, bias):
            super().__init__()
            self.c_fc = tnn.Linear(c["dim"], 4 * c["dim"], bias=bias)
            self.gelu = tnn.GELU()
            self.c_proj = tnn.Linear(4 * c["dim"], c["dim"], bias=bias)

        def forward(self, x):
            return self.c_proj(self.gelu(self.c_fc(x)))

    class Block(tnn.Module):
        def __init__(self, bias):
            super().__init__()
            self.ln_1 = tnn.LayerNorm(c["dim"], bias=bias)
            self.attn = CausalSelfAttention(bias)
            self.ln_2 = tnn.LayerNorm(c["dim"], bias=bias)
            self.mlp = MLP(bias)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(tnn.Module):
        def __init__(self, bias):
            super().__init__()
            self.transformer = tnn.ModuleDict(dict(
                wte=tnn.Embedding(c["vocab"], c["dim"]), wpe=tnn.Embedding(c["block"], c["dim"]),
                h=tnn.ModuleList([Block(bias) for _ in range(c["layers"])]),
                ln_f=tnn.LayerNorm(c["dim"], bias=bias)))
            self.lm_head = tnn.Linear(c["dim"], c["vocab"], bias=False)
            self.transformer.wte.weight = self.lm_head.weight
            for name, p in self.named_parameters():
                if p.dim() >= 2:
                    std = 0.02 / math.sqrt(2 * c["layers"]) if name.endswith(
                        "c_proj.weight") else 0.02
                    tnn.init.normal_(p, 0.0, std)
                elif name.endswith(".bias"):  # nonzero, so the conversion of biases is seen
                    tnn.init.normal_(p, 0.0, 0.02)

        def forward(self, idx, targets=None):
            x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(idx.shape[1]))
            for block in self.transformer.h:
                x = block(x)
            logits = self.lm_head(self.transformer.ln_f(x))
            if targets is None:
                return logits
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))

    def numpy_state(model):
        return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}

    torch.manual_seed(1337)
    out = {}
    # 1. a model with biases: initial weights and logits (the conversion, biases included)
    model = GPT(bias=True)
    data = batches()
    out.update({f"bias/{k}": v for k, v in numpy_state(model).items()})
    with torch.no_grad():
        out["bias_logits"] = model(torch.from_numpy(data[0, :, :-1]).long()).numpy()
    # 2. nanoGPT's shakespeare_char model (no biases), trained as train.py trains it
    model = GPT(bias=False)
    out.update({f"init/{k}": v for k, v in numpy_state(model).items()})
    params = dict(model.named_parameters())  # tied weights appear once, as in nanoGPT
    groups = [{"params": [p for p in params.values() if p.dim() >= 2],
               "weight_decay": RECIPE["wd"]},
              {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=RECIPE["lr"], betas=(0.9, RECIPE["b2"]))
    losses = []
    for it, window in enumerate(data):
        for g in opt.param_groups:
            g["lr"] = get_lr(it)
        x, y = torch.from_numpy(window[:, :-1]).long(), torch.from_numpy(window[:, 1:]).long()
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), RECIPE["clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    out.update({f"final/{k}": v for k, v in numpy_state(model).items()})
    out["batches"], out["losses"] = data, np.asarray(losses, np.float64)
    GOLDEN.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN, **out)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size / 1e3:.0f} kB); losses {np.round(losses, 4)}")


if __name__ == "__main__":
    main()
