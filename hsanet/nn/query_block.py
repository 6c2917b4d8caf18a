"""The Q-Former-style query block that E_Attn (Sec. 3.2) and the motif branch (Sec. 3.1) share, and
the feed-forward block of every token mixer (E_Attn, E_Mamba's read-out, the motif branch, SAF's
experts).

K learned query tokens attend to a padded set of inputs projected to ``dim``:
    Q' = LN(Q + MHA(Q, W X, W X)),   Z = LN(Q' + FFN(Q')),   FFN(x) = W2 GELU(W1 x), width 2 dim
with padded inputs masked out.
"""
from __future__ import annotations

import torch
from torch import nn


def feed_forward(dim: int) -> nn.Sequential:
    """The two-layer GELU feed-forward block (width 2 * dim) used throughout HSA-Net's projectors."""
    return nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))


class QueryBlock(nn.Module):
    """``inp`` (in_dim -> dim), K queries, one cross-attention layer and the FFN; subclasses decide what
    the queries read (parameter names are flat, as in the checkpoints: inp, queries, attn, norm1, ffn,
    norm2)."""

    def __init__(self, in_dim: int, dim: int, num_queries: int = 4, num_heads: int = 4) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, dim)
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = feed_forward(dim)
        self.norm2 = nn.LayerNorm(dim)

    def read(self, kv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """kv (B, Lmax, dim) already projected, mask (B, Lmax) True for real entries -> (B, K, dim)."""
        q = self.queries.unsqueeze(0).expand(kv.shape[0], -1, -1)
        out, _ = self.attn(q, kv, kv, key_padding_mask=~mask, need_weights=False)
        q = self.norm1(q + out)
        return self.norm2(q + self.ffn(q))
