"""Golden logits of the reference PyTorch MY_NET with formula weights (not random).

Run by a developer with torch installed, once, to (re)write tests/data/mynet_golden.npz:

    .venv/bin/pip install torch==2.13.0 && .venv/bin/python -m tests.golden_mynet

The test (test_cnn.py) rebuilds the same weights with numpy from `formula_state_dict`,
converts them with `mynet_params_from_torch` and compares logits, without torch.
The PyTorch model is `benchmarks.torch_peers.MyNetPeer`, the reference primer's MY_NET.
"""

from pathlib import Path

import numpy as np

SHAPES = {
    "conv1.weight": (32, 3, 3, 3), "conv1.bias": (32,),
    "conv2.weight": (64, 32, 3, 3), "conv2.bias": (64,),
    "conv3.weight": (128, 64, 3, 3), "conv3.bias": (128,),
    "fc1.weight": (512, 18432), "fc1.bias": (512,),
    "fc2.weight": (10, 512), "fc2.bias": (10,),
}
GOLDEN = Path(__file__).parent / "data" / "mynet_golden.npz"


def formula_state_dict() -> dict[str, np.ndarray]:
    """Deterministic weights: a sine hash of the flat index (uniform-looking in [-0.5, 0.5)),
    scaled like PyTorch's default init, a different offset per tensor; biases small."""
    out = {}
    for k, (name, shape) in enumerate(SHAPES.items()):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 64
        i = np.arange(int(np.prod(shape)), dtype=np.float64)
        h = np.sin(i * 12.9898 + 78.233 * (k + 1)) * 43758.5453
        w = (h - np.floor(h) - 0.5) * 2.0 * np.sqrt(3.0 / fan_in)
        if len(shape) == 1:
            w *= 0.1
        out[name] = w.reshape(shape).astype(np.float32)
    return out


def formula_input(batch: int = 2) -> np.ndarray:
    """(batch, 3, 48, 48) NCHW input, roughly normalised-MNIST-like values."""
    n, c, h, w = np.meshgrid(np.arange(batch), np.arange(3), np.arange(48), np.arange(48),
                             indexing="ij")
    return (np.sin(0.31 * h * (n + 1) + 0.17 * w + 2 * c) * np.cos(0.05 * w * h + n)
            * 1.5).astype(np.float32)


def main() -> None:
    import torch

    from benchmarks.torch_peers import MyNetPeer

    model = MyNetPeer().eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in formula_state_dict().items()})
    x = formula_input()
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    GOLDEN.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN, input_nchw=x, logits=logits, torch_version=torch.__version__)
    print(f"wrote {GOLDEN}: logits {logits.round(4)}")


if __name__ == "__main__":
    main()
