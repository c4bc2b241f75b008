"""A small decoder-only transformer over bytes (objectives.lm trains it).

GPT-2's layout at a size a CPU trains in a minute: learned token and position embeddings,
`n_layers` pre-LN blocks (LayerNorm -> causal self-attention -> residual; LayerNorm -> GELU
MLP of 4 x d_model -> residual), a last LayerNorm and an output layer tied to the token
embedding. Attention is torch's `scaled_dot_product_attention(is_causal=True)`. Linear layers
have no bias (LayerNorms do). Weights start at N(0, 0.02), the residual projections at
0.02 / sqrt(2 n_layers) (GPT-2), so the untrained model predicts nearly uniform bytes
(loss ln 256 = 5.55 nats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VOCAB", "ByteLM", "LMShape"]

VOCAB = 256  # bytes: no tokenizer, any text file trains
INIT_STD = 0.02


@dataclass(frozen=True)
class LMShape:
    """The model's size. The defaults (search/studies/lr-lm.toml's: a CPU trains 800 steps of
    32 windows in about a minute) hold 435,456 parameters, 394,240 of them in the blocks."""

    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    context: int = 64  # bytes the model sees at once (position embeddings)

    def problem(self) -> str:
        """Why this shape cannot be built ("" where it can)."""
        for name in ("d_model", "n_layers", "n_heads", "context"):
            v = getattr(self, name)
            if type(v) is not int or v < 1:
                return f"`{name}` must be an integer >= 1 but got {v!r}"
        if self.d_model % self.n_heads:
            return (f"`d_model` ({self.d_model}) must be a multiple of `n_heads` "
                    f"({self.n_heads})")
        return ""


class SelfAttention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (b, heads, t, d_head)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(d), SelfAttention(d, heads)
        self.ln2 = nn.LayerNorm(d)
        self.fc, self.act, self.out = nn.Linear(d, 4 * d, bias=False), nn.GELU(), \
            nn.Linear(4 * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.out(self.act(self.fc(self.ln2(x))))


class ByteLM(nn.Module):
    """Bytes (b, t) int64, t <= context -> next-byte logits (b, t, 256)."""

    def __init__(self, shape: LMShape = LMShape()) -> None:
        super().__init__()
        problem = shape.problem()
        if problem:
            raise ValueError(problem)
        self.shape = shape
        d = shape.d_model
        self.tok = nn.Embedding(VOCAB, d)
        self.pos = nn.Embedding(shape.context, d)
        self.blocks = nn.ModuleList(Block(d, shape.n_heads) for _ in range(shape.n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        residual_std = INIT_STD / math.sqrt(2 * self.shape.n_layers)
        for name, p in self.named_parameters():
            if p.dim() < 2:  # LayerNorm: torch's ones and zeros
                continue
            is_residual = name.endswith(("attn.proj.weight", "out.weight"))
            nn.init.normal_(p, std=residual_std if is_residual else INIT_STD)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        if t > self.shape.context:
            raise ValueError(f"{t} bytes is more than the model's context ({self.shape.context})")
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.tok.weight)  # tied to the input embedding

    def param_groups(self) -> list[dict]:
        """The optimizer's groups: the matrices (linear weights and the embeddings, as nanoGPT)
        take the optimizer's weight decay; the LayerNorms' gains and biases none."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": [p for p in params if p.dim() >= 2]},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
