"""PyTorch peers for the benchmarks, written from the reference's own code.

- `MyNetPeer`: the reference primer's `MY_NET` (conv 3->32->64, pool, conv 128, pool,
  dropout, fc 18432->512, dropout, fc 512->10), trained as the reference trains it:
  Adam(lr 1e-3, weight_decay 1e-4), CrossEntropyLoss, batch 64 on 3x48x48 images.
- `reference_train_transform` / `MnistDataset`: the reference's train transform
  (Resize(48) -> Grayscale(3) -> RandomRotation(10) -> ColorJitter(0.2, 0.2) -> ToTensor ->
  Normalize) for a DataLoader. torchvision is not importable here (the only wheels on this
  machine's local index are CUDA builds whose C++ ops fail to load against the CPU torch),
  so the transforms are the same PIL calls that torchvision makes for PIL images, written
  out, with ToTensor and Normalize as torch ops.
- `GPTPeer`: nanoGPT's GPT (its names and init) at the shape of jaxdl's decoder LM config,
  with `F.scaled_dot_product_attention` as nanoGPT uses, and optional KV-cached generation;
  `make_gpt_trainer`: nanoGPT train.py's AdamW step and learning-rate schedule.

These are the only PyTorch references of the project: the benchmarks race them and the
golden files the tests compare against (tests/golden_*.py) are written with them. Nothing
here imports jaxdl; both sides get the same numpy data.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, ImageEnhance

IMG_SIZE = 48
MNIST_MEAN = (0.1307, 0.1307, 0.1307)
MNIST_STD = (0.3081, 0.3081, 0.3081)


# --------------------------------------------------------------------------- the CNN
class MyNetPeer(nn.Module):
    """The reference's MY_NET, layer for layer (NCHW input, 3x48x48)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool1 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv3 = nn.Conv2d(64, 128, kernel_size=3, padding=1)
        self.pool2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.fc1 = nn.Linear(128 * 12 * 12, 512)
        self.fc2 = nn.Linear(512, num_classes)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.pool1(x)
        x = F.relu(self.conv3(x))
        x = self.pool2(x)
        x = torch.flatten(x, 1)
        x = self.dropout(x)
        x = F.relu(self.fc1(x))
        x = self.dropout(x)
        return self.fc2(x)


def make_cnn_trainer(model: nn.Module, lr: float = 1e-3, weight_decay: float = 1e-4):
    """The reference's optimiser and loss, and its per-batch step (with its statistics)."""
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)

    def step(x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        logits = model(x)
        loss = criterion(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        # the reference's running statistics (host values every step, as it does)
        return loss.item() * x.size(0), (logits.argmax(dim=1) == y).sum().item()

    return step


# ---------------------------------------------------------- the reference's transforms
def reference_train_transform(img: Image.Image) -> torch.Tensor:
    """torchvision's train Compose for a PIL 'L' image, as the calls it makes on PIL images."""
    img = img.resize((IMG_SIZE, IMG_SIZE), Image.Resampling.BILINEAR)  # Resize((48, 48))
    grey = np.array(img.convert("L"), dtype=np.uint8)  # Grayscale(num_output_channels=3)
    img = Image.fromarray(np.dstack([grey, grey, grey]), "RGB")
    angle = float(torch.empty(1).uniform_(-10.0, 10.0).item())  # RandomRotation(10)
    img = img.rotate(angle, Image.Resampling.NEAREST, expand=False, center=None, fillcolor=0)
    order = torch.randperm(4)  # ColorJitter(brightness=0.2, contrast=0.2): random order
    b = float(torch.empty(1).uniform_(0.8, 1.2))
    c = float(torch.empty(1).uniform_(0.8, 1.2))
    for fn_id in order.tolist():
        if fn_id == 0:
            img = ImageEnhance.Brightness(img).enhance(b)
        elif fn_id == 1:
            img = ImageEnhance.Contrast(img).enhance(c)
    x = torch.from_numpy(np.array(img, np.uint8, copy=True))  # ToTensor: HWC uint8 -> CHW
    x = x.view(IMG_SIZE, IMG_SIZE, 3).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
    mean = torch.as_tensor(MNIST_MEAN).view(-1, 1, 1)  # Normalize
    std = torch.as_tensor(MNIST_STD).view(-1, 1, 1)
    return x.sub_(mean).div_(std)


class MnistDataset(torch.utils.data.Dataset):
    """uint8 (N, 28, 28) digits served as torchvision's MNIST does: PIL 'L' image -> transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform=reference_train_transform):
        self.images = torch.from_numpy(np.ascontiguousarray(images.reshape(-1, 28, 28)))
        self.labels = labels.astype(np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        img = Image.fromarray(self.images[i].numpy(), mode="L")
        return self.transform(img), int(self.labels[i])


# --------------------------------------------------------------------------- the GPT
class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, bias: bool):
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(dim, 3 * dim, bias=bias)
        self.c_proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x, cache=None, pos: int = 0):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # write this call's keys/values at `pos`, attend to everything so far
            ck, cv = cache
            ck[:, :, pos:pos + t] = k
            cv[:, :, pos:pos + t] = v
            k, v = ck[:, :, :pos + t], cv[:, :, :pos + t]
            y = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))


class MLP(nn.Module):
    def __init__(self, dim: int, bias: bool):
        super().__init__()
        self.c_fc = nn.Linear(dim, 4 * dim, bias=bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * dim, dim, bias=bias)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, bias: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, bias=bias)
        self.attn = CausalSelfAttention(dim, heads, bias)
        self.ln_2 = nn.LayerNorm(dim, bias=bias)
        self.mlp = MLP(dim, bias)

    def forward(self, x, cache=None, pos: int = 0):
        x = x + self.attn(self.ln_1(x), cache, pos)
        return x + self.mlp(self.ln_2(x))


class GPTPeer(nn.Module):
    """nanoGPT's `GPT` (model.py: its module and parameter names, so its state_dict converts
    with `decoder_lm_params_from_nanogpt`; pre-norm blocks, learned positions, exact GELU,
    tied embeddings, GPT-2 init with c_proj scaled by depth), at jaxdl's decoder LM default
    shape (4 layers, 4 heads, 128 wide, context 64), plus a KV cache for generation.
    The golden step-for-step test (tests/golden_gpt.py) and the benchmarks both use it."""

    def __init__(self, vocab_size: int, num_layers: int = 4, num_heads: int = 4, dim: int = 128,
                 block_size: int = 64, bias: bool = False):
        super().__init__()
        self.block_size, self.num_layers = block_size, num_layers
        self.num_heads, self.dim = num_heads, dim
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, dim), wpe=nn.Embedding(block_size, dim),
            h=nn.ModuleList(Block(dim, num_heads, bias) for _ in range(num_layers)),
            ln_f=nn.LayerNorm(dim, bias=bias)))
        self.lm_head = nn.Linear(dim, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied embeddings
        for name, p in self.named_parameters():  # nanoGPT's init, in parameter order
            if p.dim() >= 2:  # GPT-2's residual projections scaled by depth
                std = 0.02 / math.sqrt(2 * num_layers) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith(".bias") and "ln_" not in name:
                nn.init.zeros_(p)

    def forward(self, idx, caches=None, pos: int = 0):
        t = idx.shape[1]
        tr = self.transformer
        x = tr.wte(idx) + tr.wpe(torch.arange(pos, pos + t, device=idx.device))
        for i, block in enumerate(tr.h):
            x = block(x, None if caches is None else caches[i], pos)
        return self.lm_head(tr.ln_f(x))

    def new_cache(self, batch: int):
        shape = (batch, self.num_heads, self.block_size, self.dim // self.num_heads)
        return [(torch.zeros(shape), torch.zeros(shape)) for _ in range(self.num_layers)]

    @torch.no_grad()
    def generate(self, idx, num_tokens: int, temperature: float = 1.0, cached: bool = True):
        """Sample `num_tokens` ids after `idx` (batch, time).

        cached=False is nanoGPT's `generate`: the context is cropped to the block size and
        the whole window is recomputed for every token. cached=True keeps a KV cache and,
        when the context is full, refills it from the newest block_size // 2 tokens, the
        same sliding window as jaxdl's `generate_cached`.
        """
        out = idx
        if not cached:
            for _ in range(num_tokens):
                logits = self(out[:, -self.block_size:])[:, -1] / temperature
                nxt = torch.multinomial(F.softmax(logits, dim=-1), 1)
                out = torch.cat([out, nxt], 1)
            return out[:, idx.shape[1]:]
        ctx = idx[:, -self.block_size:]
        caches = self.new_cache(idx.shape[0])
        logits, pos = self(ctx, caches, 0)[:, -1], ctx.shape[1]
        for _ in range(num_tokens):
            nxt = torch.multinomial(F.softmax(logits / temperature, dim=-1), 1)
            out = torch.cat([out, nxt], 1)
            if pos == self.block_size:  # full: refill from the newest half
                pos = self.block_size // 2
                caches = self.new_cache(idx.shape[0])
                logits = self(out[:, -pos:], caches, 0)[:, -1]
            else:
                logits = self(nxt, caches, pos)[:, -1]
                pos += 1
        return out[:, idx.shape[1]:]


def make_gpt_trainer(model: GPTPeer, *, lr: float = 1e-3, min_lr: float = 1e-4,
                     warmup: int = 100, total: int = 2000, weight_decay: float = 0.1,
                     betas=(0.9, 0.99), grad_clip: float = 1.0):
    """nanoGPT's training step: AdamW (decay on >= 2-d params), warmup + cosine, clipping."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=betas)
    it = 0

    def get_lr(i: int) -> float:
        if i < warmup:
            return lr * (i + 1) / (warmup + 1)
        ratio = min(1.0, (i - warmup) / max(1, total - warmup))
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nonlocal it
        for g in optimizer.param_groups:
            g["lr"] = get_lr(it)
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        it += 1
        return loss

    return step


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
