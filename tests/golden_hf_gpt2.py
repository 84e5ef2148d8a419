"""Golden Hugging Face GPT-2: a small random `GPT2LMHeadModel` saved with `save_pretrained`,
and its logits for a fixed input, for tests/test_pretrained.py (which needs neither torch
nor transformers). Run by a developer, once, where both are installed:

    python -m tests.golden_hf_gpt2     # writes tests/data/hf_gpt2_tiny/ and its logits

2 layers, width 64, 4 heads, 64 positions, a 300-token vocabulary, GPT-2's defaults
otherwise (tanh GELU, LayerNorm eps 1e-5, biases, tied head); seed 0. The weights are
drawn with GPT-2's initialiser, then every bias and LayerNorm parameter is perturbed (they
start at 0 and 1), so the test sees each tensor's mapping.
"""

from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).parent / "data" / "hf_gpt2_tiny"
LOGITS = Path(__file__).parent / "data" / "hf_gpt2_tiny_logits.npz"
CONFIG = dict(vocab_size=300, n_positions=64, n_embd=64, n_layer=2, n_head=4, bos_token_id=299,
              eos_token_id=299)


def tokens() -> np.ndarray:
    """(2, 24) token ids: the fixed input the logits are for."""
    return np.random.default_rng(0).integers(0, CONFIG["vocab_size"], (2, 24)).astype(np.int64)


def main() -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**CONFIG)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
        logits = model(torch.from_numpy(tokens())).logits.numpy()
    model.save_pretrained(GOLDEN, safe_serialization=True)
    np.savez(LOGITS, tokens=tokens(), logits=logits.astype(np.float32))
    print(f"wrote {GOLDEN} and {LOGITS}: logits {logits.shape}")


if __name__ == "__main__":
    main()
