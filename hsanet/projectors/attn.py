"""E_Attn, the cross-attention projector (Sec. 3.2; Q-Former-like, as in LLaMo's level projector).

K learned query tokens attend to one level's node states:
    Q' = LN(Q + MHA(Q, W H, W H)),   Z = LN(Q' + FFN(Q'))
with padded atoms masked out. It summarizes the whole graph at once: good on shallow levels, but its
outputs collapse when the node states it reads are over-smoothed (the paper's Fig. 2).
"""
from __future__ import annotations

import torch
from torch import nn


class CrossAttnProjector(nn.Module):
    def __init__(self, in_dim: int, dim: int, num_queries: int = 4, num_heads: int = 4) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, dim)
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, nodes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """nodes (B, Lmax, in_dim) padded, mask (B, Lmax) True for real atoms -> (B, K, dim)."""
        kv = self.inp(nodes)
        q = self.queries.unsqueeze(0).expand(nodes.shape[0], -1, -1)
        out, _ = self.attn(q, kv, kv, key_padding_mask=~mask, need_weights=False)
        q = self.norm1(q + out)
        return self.norm2(q + self.ffn(q))
