"""Text-to-image denoiser: a Transformer text encoder whose tokens a UNet cross-attends to.

    tokens (B, L) int -> Encoder -> context (B, L, D), mask = tokens != pad_id
    x_t (B, H, W, C), t (B,), context, mask -> UNet -> prediction (B, H, W, C)

The encoder's output at the BOS token (position 0, which attends to the whole prompt, as
BERT's CLS token) is also given to the UNet as a pooled vector added to its time
embedding (`pooled_text`); cross-attention reads the individual tokens. Both parts train
jointly. `encode` and `denoise` are exposed separately so a sampler
encodes the prompt once and runs only the UNet at each of its steps
(`model.apply(variables, tokens, method="encode")`, then `method="denoise"`).
"""

import flax.linen as nn

from jaxdl.nn.transformer import Encoder
from jaxdl.nn.unet import UNet


class TextToImage(nn.Module):
    encoder: Encoder
    unet: UNet
    pooled_text: bool = True

    def encode(self, tokens, *, train: bool = False):
        """Prompt ids (B, L) -> (context (B, L, D), mask (B, L) True on real tokens)."""
        return self.encoder(tokens, train=train), tokens != self.encoder.pad_id

    def denoise(self, x, t, context, mask, *, train: bool = False):
        pooled = context[:, 0] if self.pooled_text else None
        return self.unet(x, t, context, mask, pooled, train=train)

    def __call__(self, x, t, tokens, *, train: bool = False):
        context, mask = self.encode(tokens, train=train)
        return self.denoise(x, t, context, mask, train=train)
