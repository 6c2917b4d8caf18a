"""Applicability domain (not part of the paper): how close a molecule is to what a model part was
trained on, so that a prediction far from its training data says so.

For each property dataset the checkpoint keeps the fingerprints of the molecules its heads were
fitted on (the training part of the scaffold split, Hu et al.), and a threshold chosen on that
split's validation part: the 5th percentile of the validation molecules' Tanimoto similarity to their
nearest training molecule (Morgan r = 2, 2,048 bits, as the retrieval pool). A molecule below it is
less like the training data than 95 % of the held-out scaffolds the heads were selected on. For the
caption, the same statistic of the ChEBI-20 validation molecules against the retrieval pool (the
training split) gives ``caption_threshold``; the trace's top neighbour similarity is compared with it.

Stored beside the weights as ``domain/domain.json`` and one fingerprint index per dataset
(``domain/<dataset>/``, no pickle).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from hsanet.inference.runtime import serial_blas
from hsanet.retrieval import FingerprintIndex

PERCENTILE = 5.0
FILE = "domain.json"


def nearest_similarity(index: FingerprintIndex, smiles: Sequence[str], exclude_self: bool = False) -> np.ndarray:
    """Tanimoto similarity of each molecule to its nearest molecule in ``index`` (0 for unreadable SMILES)."""
    if not len(smiles):
        return np.zeros(0)
    hits = index.query_many(list(smiles), k=1, exclude_self=exclude_self)
    return np.array([float(row[0][1]) if row else 0.0 for row in hits])


def threshold(index: FingerprintIndex, validation_smiles: Sequence[str], percentile: float = PERCENTILE) -> float:
    """The ``percentile``-th percentile of the validation molecules' similarity to the training set."""
    sims = nearest_similarity(index, validation_smiles)
    return float(np.percentile(sims, percentile)) if sims.size else 0.0


@dataclass
class Domain:
    indexes: dict[str, FingerprintIndex] = field(default_factory=dict)   # dataset -> training molecules
    thresholds: dict[str, float] = field(default_factory=dict)          # dataset -> warning threshold
    caption_threshold: float | None = None
    percentile: float = PERCENTILE

    def add(self, dataset: str, train_smiles: Sequence[str], validation_smiles: Sequence[str]) -> None:
        index = FingerprintIndex.build(list(train_smiles), [""] * len(train_smiles))
        self.indexes[dataset] = index
        self.thresholds[dataset] = threshold(index, validation_smiles, self.percentile)

    @serial_blas
    def similarities(self, smiles: Sequence[str]) -> dict[str, np.ndarray]:
        """dataset -> (len(smiles),) similarity of each molecule to the dataset's nearest training molecule."""
        return {name: nearest_similarity(index, smiles) for name, index in self.indexes.items()}

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, index in self.indexes.items():
            index.save(folder / name)
        (folder / FILE).write_text(json.dumps({"percentile": self.percentile, "thresholds": self.thresholds,
                                               "caption_threshold": self.caption_threshold,
                                               "datasets": list(self.indexes),
                                               "similarity": "Tanimoto, Morgan r=2, 2048 bits"}, indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> "Domain":
        folder = Path(folder)
        meta = json.loads((folder / FILE).read_text())
        return cls(indexes={name: FingerprintIndex.load(folder / name) for name in meta["datasets"]},
                   thresholds={k: float(v) for k, v in meta["thresholds"].items()},
                   caption_threshold=meta.get("caption_threshold"), percentile=float(meta["percentile"]))
