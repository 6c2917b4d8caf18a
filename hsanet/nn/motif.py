"""Motif branch (Sec. 3.1): fragment-level tokens H^(Motif).

The paper fragments molecules with a retrosynthesis-based tool (ReLMole-style); LLaMo turns a
functional-group vector into 4 motif tokens with cross-attention. Our stand-in: RDKit BRICS
fragments (also retrosynthesis-based); each fragment is the mean of its atoms' last-level GIN
states plus an embedding of its size, and 4 learned motif queries cross-attend to a molecule's
fragments (padded fragments masked), with the query block E_Attn uses (hsanet/nn/query_block.py).
"""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.utils import scatter, to_dense_batch

from hsanet.nn.query_block import QueryBlock


class MotifBranch(QueryBlock):
    def __init__(self, in_dim: int, dim: int, num_queries: int = 4, num_heads: int = 4, max_size: int = 32) -> None:
        super().__init__(in_dim, dim, num_queries, num_heads)
        self.size_emb = nn.Embedding(max_size + 1, dim)
        self.max_size = max_size

    def forward(self, h: torch.Tensor, batch_vec: torch.Tensor, frag: torch.Tensor, num_frags: torch.Tensor) -> torch.Tensor:
        """h (N, in_dim) node states, frag (N,) local fragment ids -> motif tokens (B, K, dim)."""
        offsets = torch.cumsum(num_frags, 0) - num_frags
        gid = frag + offsets[batch_vec]                            # global fragment id per atom
        total = int(num_frags.sum())
        pooled = scatter(h, gid, dim=0, dim_size=total, reduce="mean")
        size = scatter(torch.ones_like(gid), gid, dim=0, dim_size=total, reduce="sum").clamp(max=self.max_size)
        frag_batch = torch.repeat_interleave(torch.arange(len(num_frags), device=h.device), num_frags)
        x = self.inp(pooled) + self.size_emb(size)
        dense, mask = to_dense_batch(x, frag_batch)
        return self.read(dense, mask)
