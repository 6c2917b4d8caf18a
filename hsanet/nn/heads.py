"""Property heads on the pooled fused representation (Sec. 3.4: "heads predict properties").

One MLP maps the molecule read-out to every task at once: the molecule embedding (mean of the SAF
tokens), or, with ``property_readout = "levels"``, the mean- and max-pooled node states of every GIN
level (see ``HSANet.property_features``). ``hidden = 0`` makes the heads linear (logistic regression
for classification, fitted by scikit-learn in training/property.py). Classification
tasks use a sigmoid and binary cross-entropy, regression tasks predict standardized targets (the
training mean and standard deviation are buffers, so predictions come back in the data's units).
Missing labels (NaN) are masked out of the loss, as in MoleculeNet multi-task training.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PropertyHeads(nn.Module):
    def __init__(self, in_dim: int, tasks: dict[str, str], hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.kinds = [tasks[t] for t in self.tasks]
        if hidden:
            self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, len(self.tasks)))
        else:
            self.mlp = nn.Sequential(nn.Linear(in_dim, len(self.tasks)))
        self.register_buffer("is_cls", torch.tensor([k == "classification" for k in self.kinds]))
        self.register_buffer("mean", torch.zeros(len(self.tasks)))
        self.register_buffer("std", torch.ones(len(self.tasks)))

    def set_scaling(self, y: torch.Tensor) -> None:
        """Standardization of regression targets from training labels (n x T, NaN = missing)."""
        for j, cls in enumerate(self.is_cls.tolist()):
            col = y[:, j][~torch.isnan(y[:, j])]
            if not cls and col.numel() > 1:
                self.mean[j], self.std[j] = col.mean(), col.std().clamp_min(1e-6)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        """Raw outputs (logits for classification, standardized values for regression)."""
        return self.mlp(emb)

    def predict(self, emb: torch.Tensor) -> torch.Tensor:
        """Probabilities for classification tasks, values in data units for regression tasks."""
        out = self.forward(emb)
        return torch.where(self.is_cls, torch.sigmoid(out), out * self.std + self.mean)

    def loss(self, emb: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.forward(emb)
        mask = ~torch.isnan(y)
        y0 = torch.nan_to_num(y)
        bce = F.binary_cross_entropy_with_logits(out, y0, reduction="none")
        mse = F.mse_loss(out, (y0 - self.mean) / self.std, reduction="none")
        per = torch.where(self.is_cls, bce, mse)
        return (per * mask).sum() / mask.sum().clamp_min(1)
