"""E_Attn, the cross-attention projector (Sec. 3.2; Q-Former-like, as in LLaMo's level projector).

K learned query tokens attend to one level's node states (:class:`~hsanet.nn.query_block.QueryBlock`):
    Q' = LN(Q + MHA(Q, W H, W H)),   Z = LN(Q' + FFN(Q'))
with padded atoms masked out. It summarizes the whole graph at once: good on shallow levels, but its
outputs collapse when the node states it reads are over-smoothed (the paper's Fig. 2).
"""
from __future__ import annotations

import torch

from hsanet.nn.query_block import QueryBlock


class CrossAttnProjector(QueryBlock):
    def forward(self, nodes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """nodes (B, Lmax, in_dim) padded, mask (B, Lmax) True for real atoms -> (B, K, dim)."""
        return self.read(self.inp(nodes), mask)
