"""HAP, the Hierarchical Adaptive Projector (Sec. 3.2, Eqs. 2-3).

Every GNN level l has its own pair of projector experts, E_Attn^(l) and E_Mamba^(l), and its own
gate. The gate is a linear layer on the mean-pooled node states of the level (the paper writes
p^(l) = G_h(H^(l)); pooling first makes it one decision per molecule and level):

    p^(l) = softmax(W_h mean(H^(l)) + b_h)                                   (Eq. 2)
    Z^(l) = E_k(H^(l)),  k = one-hot(argmax p^(l))    at inference           (Eq. 3)

In training the one-hot comes from a hard Gumbel-softmax with straight-through gradients, so both
gates learn and each projector learns from the molecules routed to it. Both probabilities are kept
for the trace. Variants for the ablations: ``attn`` always uses E_Attn, ``mamba`` always E_Mamba.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.utils import scatter, to_dense_batch

from hsanet.featurizers.graph import Serialization
from hsanet.nn import fast
from hsanet.nn.cross_attn import CrossAttnProjector
from hsanet.nn.graph_mamba import GraphMambaProjector
from hsanet.rng import keyed_gumbel


class HAP(nn.Module):
    def __init__(self, num_levels: int, in_dim: int, dim: int, num_queries: int, num_heads: int,
                 d_state: int, d_conv: int, expand: int, dt_rank: int, max_distance: int,
                 variant: str = "full", tau: float = 1.0) -> None:
        super().__init__()
        self.attn = nn.ModuleList(CrossAttnProjector(in_dim, dim, num_queries, num_heads) for _ in range(num_levels))
        self.mamba = nn.ModuleList(
            GraphMambaProjector(in_dim, dim, num_queries, d_state, d_conv, expand, dt_rank, max_distance)
            for _ in range(num_levels))
        self.gates = nn.ModuleList(nn.Linear(in_dim, 2) for _ in range(num_levels))
        self.variant = variant
        self.tau = tau

    def route(self, logits: torch.Tensor, variant: str, keys: torch.Tensor | None = None, level: int = 0) -> torch.Tensor:
        """Weights of (E_Attn, E_Mamba) used to mix the expert outputs: one-hot in every variant.

        In training, a hard Gumbel-softmax with straight-through gradients; its noise comes from
        ``keys`` (one per molecule, ``hsanet.rng``) when given, else from torch's generator."""
        if variant == "attn":
            return torch.tensor([1.0, 0.0], device=logits.device).expand_as(logits)
        if variant == "mamba":
            return torch.tensor([0.0, 1.0], device=logits.device).expand_as(logits)
        if not self.training:
            return F.one_hot(logits.argmax(-1), 2).to(logits.dtype)
        if keys is not None:
            noise = keyed_gumbel(keys, level, 2).to(logits.dtype)
        else:                                                   # the draw F.gumbel_softmax makes
            noise = -torch.empty_like(logits).exponential_().log()
        soft = ((logits + noise) / self.tau).softmax(-1)
        hard = F.one_hot(soft.argmax(-1), 2).to(soft.dtype)
        return hard - soft.detach() + soft                      # straight-through, as F.gumbel_softmax(hard=True)

    def forward(self, levels: list[torch.Tensor], batch_vec: torch.Tensor, ser: Serialization,
                keep_experts: bool = False, variant: str | None = None, keys: torch.Tensor | None = None) -> dict:
        """``variant`` overrides the configured routing for this call only (no state is changed);
        ``keys`` (one int64 per molecule) key the training-time Gumbel noise (see ``route``)."""
        variant = variant or self.variant
        tokens, probs, weights, attn_out, mamba_out = [], [], [], [], []
        one_expert = fast.enabled() and not keep_experts and not self.training    # hsanet/nn/fast.py
        for l, h in enumerate(levels):
            logits = self.gates[l](scatter(h, batch_vec, dim=0, reduce="mean"))
            w = self.route(logits, variant, keys, l)
            probs.append(logits.softmax(-1))
            weights.append(w)
            if one_expert:
                tokens.append(self._chosen_expert_only(l, w, h, ser))
                attn_out.append(None)
                mamba_out.append(None)
                continue
            dense, mask = to_dense_batch(h, batch_vec)
            # index_select rather than h[ser.index]: the same rows, and its backward is an index_add
            seq = h.index_select(0, ser.index.reshape(-1)).view(*ser.index.shape, h.shape[1]) * ser.mask.unsqueeze(-1).to(h.dtype)
            za = self.attn[l](dense, mask) if (variant != "mamba" or keep_experts) else None
            zm = self.mamba[l](seq, ser.dist, ser.mask) if (variant != "attn" or keep_experts) else None
            if za is None:
                z = zm * w[:, 1, None, None]
            elif zm is None:
                z = za * w[:, 0, None, None]
            else:
                z = za * w[:, 0, None, None] + zm * w[:, 1, None, None]
            tokens.append(z)
            attn_out.append(za)
            mamba_out.append(zm)
        return {
            "tokens": tokens,                               # L+1 tensors (B, K, dim)
            "probs": torch.stack(probs, dim=1),             # (B, L+1, 2): p_attn, p_mamba
            "choice": torch.stack(weights, dim=1).argmax(-1),   # (B, L+1): 0 attn, 1 mamba
            "attn_tokens": attn_out,                        # None where not computed (see forward)
            "mamba_tokens": mamba_out,
        }

    def _chosen_expert_only(self, l: int, w: torch.Tensor, h: torch.Tensor, ser: Serialization) -> torch.Tensor:
        """Eq. 3 at inference with each molecule running only the expert its gate chose.

        The same tokens as computing both experts and weighting them by the one-hot ``w`` (the other
        expert's output is multiplied by 0), at the cost of one expert per molecule. Used when the
        expert outputs are not kept (``encode``: embeddings, captions); the trace keeps both.
        """
        use_mamba = w[:, 1] > 0
        z = None
        for j, expert in ((1, self.mamba[l]), (0, self.attn[l])):
            rows = (use_mamba if j else ~use_mamba).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            zj = self._by_length(expert, rows, h, ser) * w[rows, j, None, None]
            if z is None:
                z = zj.new_empty(w.shape[0], *zj.shape[1:])
            z[rows] = zj.to(z.dtype)
        return z

    @staticmethod
    def _by_length(expert: nn.Module, rows: torch.Tensor, h: torch.Tensor, ser: Serialization,
                   group: int = 32) -> torch.Tensor:
        """An expert on the molecules ``rows``, in groups of similar length, each group cut to its
        longest member and gathered straight from the node states in scan order: a batch is
        left-padded to its longest molecule, and the padding costs as much as atoms. Exact: padded
        steps are masked (E_Attn's key padding mask; E_Mamba's Delta = 0 leaves the state untouched),
        so their content is irrelevant, and E_Attn does not depend on the order of the atoms."""
        lengths = ser.mask[rows].sum(1)
        order = torch.argsort(lengths, descending=True, stable=True)
        width = ser.mask.shape[1]
        out = None
        for s in range(0, len(rows), group):
            pos = order[s:s + group]
            sel = rows[pos]
            start = width - int(lengths[pos[0]])
            index, mask = ser.index[sel, start:], ser.mask[sel, start:]
            nodes = h.index_select(0, index.reshape(-1)).view(*index.shape, h.shape[1])
            if isinstance(expert, GraphMambaProjector):
                z = expert(nodes, ser.dist[sel, start:], mask)
            else:
                z = expert(nodes, mask)
            if out is None:
                out = z.new_empty(len(rows), *z.shape[1:])
            out[pos] = z
        return out
