"""The decoder-only language model scripts/train.py trains.

OLMo-style blocks: pre-norm RMSNorm, rotary position embeddings, SwiGLU MLP, no biases, tied
input/output embeddings, GPT-2 initialisation with depth-scaled residual projections. Attention is
torch's scaled_dot_product_attention (flash/memory-efficient kernels on CUDA, torch >= 2.0) or an
explicit softmax for torch 1.13.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelConfig:
    vocab_size: int  # rows of the embedding table (already padded)
    d_model: int
    n_layers: int
    n_heads: int
    mlp_hidden: int
    seq_len: int
    attention: str = "sdpa"  # "sdpa" or "math"
    init_std: float = 0.02

    @property
    def head_dim(self):
        return self.d_model // self.n_heads


def has_sdpa():
    return hasattr(F, "scaled_dot_product_attention")


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        # Normalised in fp32: bf16's 8-bit mantissa loses the mean of squares.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).type_as(x)


def rope_tables(seq_len, head_dim, base=10000.0):
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
    freqs = torch.outer(torch.arange(seq_len).float(), inv)
    return freqs.cos(), freqs.sin()


def apply_rope(x, cos, sin):
    """Rotates (even, odd) pairs of x: (B, H, T, D) by position."""
    x1, x2 = x[..., ::2], x[..., 1::2]
    cos = cos[: x.shape[2]].to(x.dtype)
    sin = sin[: x.shape[2]].to(x.dtype)
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.use_sdpa = cfg.attention == "sdpa"
        self.norm1 = RMSNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.norm2 = RMSNorm(d)
        self.gate_up = nn.Linear(d, 2 * cfg.mlp_hidden, bias=False)
        self.down = nn.Linear(cfg.mlp_hidden, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(D, dim=-1)
        q, k, v = (t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.use_sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
            # Built per call, not a buffer: DDP syncs buffers and gloo cannot send bool tensors.
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            att = att.masked_fill(mask, float("-inf"))
            y = torch.softmax(att.float(), dim=-1).type_as(v) @ v
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, D))
        g, u = self.gate_up(self.norm2(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(g) * u)


class LM(nn.Module):
    """Returns the mean next-token cross-entropy of idx against targets."""

    def __init__(self, cfg):
        super().__init__()
        if cfg.attention not in ("sdpa", "math"):
            raise ValueError("attention must be sdpa or math, got %r" % cfg.attention)
        if cfg.attention == "sdpa" and not has_sdpa():
            raise ValueError("sdpa attention needs torch >= 2.0 (this is %s)" % torch.__version__)
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model)
        cos, sin = rope_tables(cfg.seq_len, cfg.head_dim)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        residual_std = cfg.init_std / math.sqrt(2 * cfg.n_layers)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = residual_std if name.endswith(("proj.weight", "down.weight")) else cfg.init_std
                nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, idx, targets):
        x = self.embed(idx)
        for b in self.blocks:
            x = b(x, self.cos, self.sin)
        logits = F.linear(self.norm(x), self.embed.weight)  # tied output embedding
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))

