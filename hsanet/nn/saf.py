"""SAF, Source-Aware Fusion (Sec. 3.3, Eqs. 4-5): a token-level top-k mixture of MLP experts.

All level tokens Z^(0..L) and the motif tokens are concatenated into one sequence. A linear router
G_s scores every token against N experts (Eq. 4) and the token goes to its top-2 experts (Eq. 5).

Fix of the paper: Eq. 5 sums the two experts' outputs without the gate values, so the router would
get no gradient and never learn. Here the outputs are weighted by the two gate probabilities
renormalized to sum to 1, Y = sum_{i in top2} (p_i / (p_a + p_b)) E_i(Z), and a Switch-Transformer
load-balancing loss alpha * N * sum_i f_i P_i (alpha = 0.01; f_i the share of top-k assignments
sent to expert i, P_i the mean router probability of expert i) keeps experts from collapsing.

Variant ``nosaf`` (ablation "attn+mamba without SAF") replaces the mixture by one MLP.
"""
from __future__ import annotations

import torch
from torch import nn

from hsanet.nn.query_block import feed_forward


class SAF(nn.Module):
    def __init__(self, dim: int, num_experts: int = 4, top_k: int = 2, balance_coef: float = 0.01) -> None:
        super().__init__()
        self.router = nn.Linear(dim, num_experts)
        self.experts = nn.ModuleList(feed_forward(dim) for _ in range(num_experts))
        self.norm = nn.LayerNorm(dim)
        self.num_experts, self.top_k, self.balance_coef = num_experts, top_k, balance_coef

    def forward(self, z: torch.Tensor) -> dict:
        """z (B, T, dim) -> fused tokens (B, T, dim), routing and the balance loss."""
        probs = self.router(z).softmax(-1)                                   # (B, T, N)
        top_p, top_i = probs.topk(self.top_k, dim=-1)                        # (B, T, k)
        weights = top_p / top_p.sum(-1, keepdim=True)
        outs = torch.stack([e(z) for e in self.experts], dim=2)             # (B, T, N, dim)
        picked = torch.gather(outs, 2, top_i.unsqueeze(-1).expand(-1, -1, -1, z.shape[-1]))
        y = self.norm((weights.unsqueeze(-1) * picked).sum(2))
        counts = torch.zeros(self.num_experts, device=z.device).scatter_add_(
            0, top_i.reshape(-1), torch.ones(top_i.numel(), device=z.device))
        f = counts / top_i.numel()
        P = probs.reshape(-1, self.num_experts).mean(0)
        balance = self.balance_coef * self.num_experts * (f * P).sum()
        return {"fused": y, "probs": probs, "experts": top_i, "weights": weights, "balance_loss": balance}


class MLPFusion(nn.Module):
    """The ``nosaf`` ablation: one MLP on every token, no routing."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mlp = feed_forward(dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, z: torch.Tensor) -> dict:
        return {"fused": self.norm(self.mlp(z)), "probs": None, "experts": None, "weights": None,
                "balance_loss": z.new_zeros(())}
