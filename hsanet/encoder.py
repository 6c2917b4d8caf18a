"""Graph encoder (Sec. 3.1): an L-layer GIN with edge features, H^(l) = GNN^(l)(H^(l-1), E).

The paper does not name its GNN; its predecessors LLaMo and MolCA use the 5-layer GIN of Hu et al.
(2020) with hidden size 300 on OGB features, so that is the default. Every level is kept:
level 0 is the atom embedding, level l the output of layer l, so the encoder returns L+1 levels.
Each layer is PyG's GINEConv, x_i' = MLP((1 + eps) x_i + sum_j ReLU(x_j + e_ji)), followed by
batch norm and ReLU (no ReLU after the last layer, as in Hu et al.).

Inference fast path (eval mode only; training and the state_dict are unchanged): each batch norm is
folded into the Linear before it, and the categorical embeddings are one lookup into a concatenated
table. Both are rebuilt from the current parameters on every call (a few small tensors), so there is
no cache to invalidate; the outputs equal the plain path up to float32 rounding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GINEConv

from .chem.featurize import ATOM_FEATURE_DIMS, BOND_FEATURE_DIMS


class CategoricalEncoder(nn.Module):
    """Sum of one embedding per categorical column (OGB's AtomEncoder / BondEncoder)."""

    def __init__(self, dims: list[int], hidden: int) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(d, hidden) for d in dims)
        for emb in self.embeddings:
            nn.init.xavier_uniform_(emb.weight)
        # row offset of each column's table in the concatenation (not saved: derived from ``dims``)
        offsets = torch.tensor([0] + list(dims[:-1])).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return sum(emb(x[:, i]) for i, emb in enumerate(self.embeddings))
        # eval: one embedding_bag over the concatenated tables instead of one lookup and one
        # (rows, hidden) add per column (9 columns for atoms)
        table = torch.cat([emb.weight for emb in self.embeddings])
        return F.embedding_bag(x + self.offsets, table, mode="sum")


class GINEncoder(nn.Module):
    """Returns the node states of every level, ``[H^(0), ..., H^(L)]``, each (num_nodes, hidden)."""

    def __init__(self, num_layers: int = 5, hidden: int = 300, dropout: float = 0.0) -> None:
        super().__init__()
        self.atom_encoder = CategoricalEncoder(ATOM_FEATURE_DIMS, hidden)
        self.bond_encoders = nn.ModuleList(CategoricalEncoder(BOND_FEATURE_DIMS, hidden) for _ in range(num_layers))
        self.convs = nn.ModuleList(
            GINEConv(nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.BatchNorm1d(2 * hidden), nn.ReLU(),
                                   nn.Linear(2 * hidden, hidden)), train_eps=True)
            for _ in range(num_layers)
        )
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(num_layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> list[torch.Tensor]:
        if not self.training and all(n.track_running_stats for n in self.norms):
            return self._forward_eval(x, edge_index, edge_attr)
        h = self.atom_encoder(x)
        levels = [h]
        last = len(self.convs) - 1
        for i, (conv, norm, bond_enc) in enumerate(zip(self.convs, self.norms, self.bond_encoders)):
            h = norm(conv(h, edge_index, bond_enc(edge_attr)))
            if i < last:
                h = torch.relu(h)
            h = self.dropout(h)
            levels.append(h)
        return levels

    def _forward_eval(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> list[torch.Tensor]:
        """``forward`` in eval mode with both batch norms of a layer folded into its two Linears:
        MLP(u) = W2 ReLU(BN1(W1 u)) and BN2 after it become two plain Linears (GINEConv.forward
        written out, so the folded MLP replaces ``conv.nn``). Dropout is the identity in eval."""
        h = self.atom_encoder(x)
        levels = [h]
        last = len(self.convs) - 1
        for i, (conv, norm, bond_enc) in enumerate(zip(self.convs, self.norms, self.bond_encoders)):
            lin1, bn1, _, lin2 = conv.nn
            w1, b1 = _fold_bn(lin1.weight, lin1.bias, bn1)
            w2, b2 = _fold_bn(lin2.weight, lin2.bias, norm)
            out = conv.propagate(edge_index, x=(h, h), edge_attr=bond_enc(edge_attr), size=None)
            out = out + (1 + conv.eps) * h
            h = F.linear(torch.relu(F.linear(out, w1, b1)), w2, b2)
            if i < last:
                h = torch.relu(h)
            levels.append(h)
        return levels


def _fold_bn(weight: torch.Tensor, bias: torch.Tensor, bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """(W', b') with W' u + b' = BN(W u + b) for a batch norm in eval mode (running statistics)."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = (bias - bn.running_mean) * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return weight * scale.unsqueeze(1), shift
