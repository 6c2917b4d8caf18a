"""Graph encoder (Sec. 3.1): an L-layer GIN with edge features, H^(l) = GNN^(l)(H^(l-1), E).

The paper does not name its GNN; its predecessors LLaMo and MolCA use the 5-layer GIN of Hu et al.
(2020) with hidden size 300 on OGB features, so that is the default. Every level is kept:
level 0 is the atom embedding, level l the output of layer l, so the encoder returns L+1 levels.
Each layer is PyG's GINEConv, x_i' = MLP((1 + eps) x_i + sum_j ReLU(x_j + e_ji)), followed by
batch norm and ReLU (no ReLU after the last layer, as in Hu et al.).
"""
from __future__ import annotations

import torch
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(emb(x[:, i]) for i, emb in enumerate(self.embeddings))


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
