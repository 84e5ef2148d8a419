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
- `GPTPeer`: nanoGPT's GPT (its names, init and dropout) at the shape of jaxdl's decoder LM
  config, with `F.scaled_dot_product_attention` as nanoGPT uses, and optional KV-cached
  generation; `StaticCacheGenerator`: gpt-fast's static-cache decoding of its weights under
  `torch.compile(mode="reduce-overhead")`; `make_gpt_trainer`: nanoGPT train.py's AdamW
  step and learning-rate schedule.

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
    def __init__(self, dim: int, heads: int, bias: bool, dropout: float = 0.0):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.c_attn = nn.Linear(dim, 3 * dim, bias=bias)
        self.c_proj = nn.Linear(dim, dim, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def qkv(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        return (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))

    def out(self, y):
        b, _, t, _ = y.shape
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(b, t, -1)))

    def forward(self, x, cache=None, pos: int = 0):
        t = x.shape[1]
        q, k, v = self.qkv(x)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               dropout_p=self.dropout if self.training else 0)
        else:  # write this call's keys/values at `pos`, attend to everything so far
            ck, cv = cache
            ck[:, :, pos:pos + t] = k
            cv[:, :, pos:pos + t] = v
            k, v = ck[:, :, :pos + t], cv[:, :, :pos + t]
            y = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1)
        return self.out(y)


class MLP(nn.Module):
    def __init__(self, dim: int, bias: bool, dropout: float = 0.0):
        super().__init__()
        self.c_fc = nn.Linear(dim, 4 * dim, bias=bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * dim, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, bias: bool, dropout: float = 0.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, bias=bias)
        self.attn = CausalSelfAttention(dim, heads, bias, dropout)
        self.ln_2 = nn.LayerNorm(dim, bias=bias)
        self.mlp = MLP(dim, bias, dropout)

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
                 block_size: int = 64, bias: bool = False, dropout: float = 0.0):
        super().__init__()
        self.block_size, self.num_layers = block_size, num_layers
        self.num_heads, self.dim = num_heads, dim
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, dim), wpe=nn.Embedding(block_size, dim),
            drop=nn.Dropout(dropout),
            h=nn.ModuleList(Block(dim, num_heads, bias, dropout) for _ in range(num_layers)),
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
        x = tr.drop(tr.wte(idx) + tr.wpe(torch.arange(pos, pos + t, device=idx.device)))
        for i, block in enumerate(tr.h):
            x = block(x, None if caches is None else caches[i], pos)
        return self.lm_head(tr.ln_f(x))

    def new_cache(self, batch: int, dtype=None):
        shape = (batch, self.num_heads, self.block_size, self.dim // self.num_heads)
        w = self.lm_head.weight  # on the model's device, in its dtype unless told
        z = lambda: torch.zeros(shape, device=w.device, dtype=dtype or w.dtype)  # noqa: E731
        return [(z(), z()) for _ in range(self.num_layers)]

    @torch.no_grad()
    def generate(self, idx, num_tokens: int, temperature: float = 1.0, cached: bool = True,
                 cache_dtype=None):
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
        caches = self.new_cache(idx.shape[0], cache_dtype)
        logits, pos = self(ctx, caches, 0)[:, -1], ctx.shape[1]
        for _ in range(num_tokens):
            nxt = torch.multinomial(F.softmax(logits / temperature, dim=-1), 1)
            out = torch.cat([out, nxt], 1)
            if pos == self.block_size:  # full: refill from the newest half
                pos = self.block_size // 2
                caches = self.new_cache(idx.shape[0], cache_dtype)
                logits = self(out[:, -pos:], caches, 0)[:, -1]
            else:
                logits = self(nxt, caches, pos)[:, -1]
                pos += 1
        return out[:, idx.shape[1]:]


def num_params_6n(model: GPTPeer) -> int:
    """nanoGPT's `get_num_params()`: every parameter but the position table (N of 6N)."""
    return sum(p.numel() for p in model.parameters()) - model.transformer.wpe.weight.numel()


class StaticCacheGenerator:
    """gpt-fast's decoding (pytorch-labs/gpt-fast, generate.py) for `GPTPeer`'s weights: a
    static KV cache of prompt + new positions allocated once, written in place with
    `index_copy_`, attention over the whole cache under a causal mask row, sampling without
    a host sync (the exponential trick), and the one-token step under
    `torch.compile(mode="reduce-overhead", fullgraph=True)` (CUDA graphs); the prefill is
    compiled too. Where compiling fails (no Triton) it says so in `mode`."""

    def __init__(self, model: GPTPeer, batch: int, max_seq: int, dtype, compiled: bool = True):
        self.model, self.batch, self.max_seq = model, batch, max_seq
        w = model.lm_head.weight
        shape = (batch, model.num_heads, max_seq, model.dim // model.num_heads)
        self.caches = [(torch.zeros(shape, device=w.device, dtype=dtype),
                        torch.zeros(shape, device=w.device, dtype=dtype))
                       for _ in range(model.num_layers)]
        self.mask = torch.tril(torch.ones(max_seq, max_seq, dtype=torch.bool, device=w.device))
        self.mode = "eager"
        self._decode, self._prefill = self.decode_one_token, self.forward
        if compiled:
            self._decode = torch.compile(self.decode_one_token, mode="reduce-overhead",
                                         fullgraph=True)
            self._prefill = torch.compile(self.forward, fullgraph=True)
            self.mode = "torch.compile(mode='reduce-overhead')"

    def forward(self, idx, input_pos):
        """Logits (batch, t, vocab) for tokens `idx` at positions `input_pos` (t,)."""
        m, tr = self.model, self.model.transformer
        x = tr.wte(idx) + tr.wpe(input_pos)
        mask = self.mask[None, None, input_pos]  # (1, 1, t, max_seq)
        for block, (ck, cv) in zip(tr.h, self.caches, strict=True):
            attn = block.attn
            q, k, v = attn.qkv(block.ln_1(x))
            ck.index_copy_(2, input_pos, k)
            cv.index_copy_(2, input_pos, v)
            y = F.scaled_dot_product_attention(q, ck, cv, attn_mask=mask)
            x = x + attn.out(y)
            x = x + block.mlp(block.ln_2(x))
        return m.lm_head(tr.ln_f(x))

    def decode_one_token(self, idx, input_pos, temperature: float):
        logits = self.forward(idx, input_pos)[:, -1] / temperature
        probs = torch.softmax(logits.float(), dim=-1)
        q = torch.empty_like(probs).exponential_(1)  # argmax(p / q): a draw with no sync
        return torch.argmax(probs / q, dim=-1, keepdim=True).to(torch.int64)

    @torch.no_grad()
    def generate(self, prompt, num_tokens: int, temperature: float = 1.0):
        t = prompt.shape[1]
        pos = torch.arange(t, device=prompt.device)
        token = self.sample(self._prefill(prompt, pos)[:, -1], temperature)
        out = [token]
        input_pos = torch.tensor([t], device=prompt.device)
        for _ in range(num_tokens - 1):
            token = self._decode(token, input_pos, temperature).clone()
            input_pos += 1
            out.append(token)
        return torch.cat(out, 1)

    @staticmethod
    def sample(logits, temperature: float):
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        return torch.argmax(probs / torch.empty_like(probs).exponential_(1), -1, keepdim=True)


def make_gpt_trainer(model: GPTPeer, *, lr: float = 1e-3, min_lr: float = 1e-4,
                     warmup: int = 100, total: int = 2000, weight_decay: float = 0.1,
                     betas=(0.9, 0.99), grad_clip: float = 1.0, fused: bool = False,
                     autocast: torch.dtype | None = None):
    """nanoGPT's training step: AdamW (decay on >= 2-d params), warmup + cosine, clipping."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)
    device = next(model.parameters()).device.type
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
        with torch.autocast(device, dtype=autocast, enabled=autocast is not None):
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


# --------------------------------------------------------------------------- the UNet
class _ResBlockPeer(nn.Module):
    def __init__(self, c_in: int, c_out: int, temb: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(temb, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(groups, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x))) + self.time(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class _AttentionPeer(nn.Module):
    """Residual attention over H*W: self (GroupNorm) or cross to the text (LayerNorm)."""

    def __init__(self, c: int, heads: int, groups: int, context_dim: int | None):
        super().__init__()
        self.heads, self.cross = heads, context_dim is not None
        self.norm = nn.LayerNorm(c) if self.cross else nn.GroupNorm(groups, c)
        kv = context_dim or c
        self.q, self.k, self.v = nn.Linear(c, c), nn.Linear(kv, c), nn.Linear(kv, c)
        self.out = nn.Linear(c, c)
        nn.init.zeros_(self.out.weight)

    def forward(self, x, context=None):
        b, c, h, w = x.shape
        if self.cross:
            y = self.norm(x.flatten(2).transpose(1, 2))
            kv = context
        else:
            y = self.norm(x).flatten(2).transpose(1, 2)
            kv = y
        split = lambda z: z.view(b, -1, self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        o = F.scaled_dot_product_attention(split(self.q(y)), split(self.k(kv)), split(self.v(kv)))
        o = self.out(o.transpose(1, 2).reshape(b, h * w, c))
        return x + o.transpose(1, 2).view(b, c, h, w)


class UNetPeer(nn.Module):
    """jaxdl.nn.UNet's architecture in PyTorch (NCHW): the same levels, residual blocks,
    self- and cross-attention placement and widths, so the same parameter count; the text
    context (B, L, context_dim) is an input (jaxdl's text encoder is not part of it)."""

    def __init__(self, channels=(16, 32, 64), num_res_blocks=1, attention_levels=(2,),
                 cross_attention_levels=(1, 2), heads=4, groups=8, in_channels=1,
                 context_dim=64, num_timesteps=1000):
        super().__init__()
        ch0, temb = channels[0], 4 * channels[0]
        self.channels, self.num_res_blocks = channels, num_res_blocks
        pe = torch.zeros(num_timesteps, ch0)
        pos = torch.arange(num_timesteps, dtype=torch.float64)[:, None]
        rates = 1.0 / (10000.0 ** (torch.arange(0, ch0, 2, dtype=torch.float64) / ch0))
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * rates), torch.cos(pos * rates)
        self.register_buffer("time_table", pe.float())
        self.time_mlp1, self.time_mlp2 = nn.Linear(ch0, temb), nn.Linear(temb, temb)
        self.pooled_proj = nn.Linear(context_dim, temb)
        self.conv_in = nn.Conv2d(in_channels, ch0, 3, padding=1)

        def attn(c, level):
            mods = []
            if level in attention_levels:
                mods.append(_AttentionPeer(c, heads, groups, None))
            if level in cross_attention_levels:
                mods.append(_AttentionPeer(c, heads, groups, context_dim))
            return nn.ModuleList(mods)

        self.down, skips, c_prev = nn.ModuleList(), [ch0], ch0
        for i, c in enumerate(channels):
            level = nn.ModuleList()
            for _ in range(num_res_blocks):
                level.append(nn.ModuleList([_ResBlockPeer(c_prev, c, temb, groups), attn(c, i)]))
                c_prev = c
                skips.append(c)
            pool = nn.Conv2d(c, c, 3, stride=2, padding=1) if i != len(channels) - 1 else None
            if pool is not None:
                skips.append(c)
            self.down.append(nn.ModuleList([level, pool or nn.Identity()]))
        c = channels[-1]
        self.mid1, self.mid2 = _ResBlockPeer(c, c, temb, groups), _ResBlockPeer(c, c, temb, groups)
        self.mid_attn = _AttentionPeer(c, heads, groups, None)
        self.mid_cross = _AttentionPeer(c, heads, groups, context_dim)
        self.up = nn.ModuleList()
        for i in reversed(range(len(channels))):
            c = channels[i]
            level = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                level.append(nn.ModuleList([_ResBlockPeer(c_prev + skips.pop(), c, temb, groups),
                                            attn(c, i)]))
                c_prev = c
            upsample = nn.Conv2d(c, channels[i - 1], 3, padding=1) if i != 0 else None
            if upsample is not None:
                c_prev = channels[i - 1]
            self.up.append(nn.ModuleList([level, upsample or nn.Identity()]))
        self.norm_out = nn.GroupNorm(groups, ch0)
        self.conv_out = nn.Conv2d(ch0, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)

    def forward(self, x, t, context):
        temb = self.time_mlp2(F.silu(self.time_mlp1(self.time_table[t])))
        temb = temb + self.pooled_proj(context[:, 0])

        def run(blocks, h):
            res, attns = blocks
            h = res(h, temb)
            for a in attns:
                h = a(h, context if a.cross else None)
            return h

        h = self.conv_in(x)
        skips = [h]
        for level, pool in self.down:
            for blocks in level:
                h = run(blocks, h)
                skips.append(h)
            if not isinstance(pool, nn.Identity):
                h = pool(h)
                skips.append(h)
        h = self.mid_cross(self.mid_attn(self.mid1(h, temb)), context)
        h = self.mid2(h, temb)
        for level, upsample in self.up:
            for blocks in level:
                h = run(blocks, torch.cat([h, skips.pop()], 1))
            if not isinstance(upsample, nn.Identity):
                h = upsample(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))
