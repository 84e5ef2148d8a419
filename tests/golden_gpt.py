"""Golden nanoGPT training trajectory: losses and final weights of PyTorch's nanoGPT model.

Run by a developer with torch installed, once, to (re)write tests/data/gpt_golden.npz:

    .venv/bin/pip install torch==2.13.0 && .venv/bin/python -m tests.golden_gpt

The model is nanoGPT's `GPT` as `benchmarks.torch_peers.GPTPeer` writes it (Karpathy's
model.py: pre-norm blocks, fused c_attn, exact GELU, LayerNorm eps 1e-5, tied lm_head, GPT-2
init with c_proj scaled by depth), trained by `make_gpt_trainer` the way nanoGPT's train.py
trains the `shakespeare_char` recipe (AdamW, betas (0.9, 0.99), weight decay on tensors of
rank >= 2 only, gradient clipping 1.0, its get_lr warmup and cosine schedule), shrunk to a
few tiny steps. test_transformer.py loads
the initial weights with `decoder_lm_params_from_nanogpt`, trains jaxdl's DecoderLM through
the shared train step on the same batches and compares every loss and the final weights.
"""

from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).parent / "data" / "gpt_golden.npz"
CONFIG = dict(vocab=65, layers=2, heads=2, dim=32, block=16, batch=4, steps=8)
RECIPE = dict(lr=1e-2, min_lr=1e-3, warmup=3, decay_iters=8, b2=0.99, wd=0.1, clip=1.0)


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

    from benchmarks.torch_peers import GPTPeer, make_gpt_trainer

    c, r = CONFIG, RECIPE

    def gpt(bias: bool) -> GPTPeer:
        return GPTPeer(c["vocab"], c["layers"], c["heads"], c["dim"], c["block"], bias=bias)

    def numpy_state(model):
        return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}

    torch.manual_seed(1337)
    out = {}
    # 1. a model with biases: initial weights and logits (the conversion, biases included)
    model = gpt(bias=True)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):  # nonzero, so the conversion of biases is seen
                torch.nn.init.normal_(p, 0.0, 0.02)
    data = batches()
    out.update({f"bias/{k}": v for k, v in numpy_state(model).items()})
    with torch.no_grad():
        out["bias_logits"] = model(torch.from_numpy(data[0, :, :-1]).long()).numpy()
    # 2. nanoGPT's shakespeare_char model (no biases), trained as train.py trains it
    model = gpt(bias=False)
    out.update({f"init/{k}": v for k, v in numpy_state(model).items()})
    step = make_gpt_trainer(model, lr=r["lr"], min_lr=r["min_lr"], warmup=r["warmup"],
                            total=r["decay_iters"], weight_decay=r["wd"], betas=(0.9, r["b2"]),
                            grad_clip=r["clip"])
    losses = []
    for window in data:
        x, y = torch.from_numpy(window[:, :-1]).long(), torch.from_numpy(window[:, 1:]).long()
        losses.append(step(x, y).item())
    out.update({f"final/{k}": v for k, v in numpy_state(model).items()})
    out["batches"], out["losses"] = data, np.asarray(losses, np.float64)
    GOLDEN.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN, **out)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size / 1e3:.0f} kB); losses {np.round(losses, 4)}")


if __name__ == "__main__":
    main()
