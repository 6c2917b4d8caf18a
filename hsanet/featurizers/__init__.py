"""Molecule input and featurization (Sec. 3.1: the graph the encoder reads).

* :mod:`~hsanet.featurizers.parse`: SMILES / MOL block -> canonical RDKit molecule, with clear errors
* :mod:`~hsanet.featurizers.graph`: OGB atom and bond features, BRICS fragments, distances, a PyG
  batch, and E_Mamba's scan order

The graph names load on first use, so reading a dataset (parse only: RDKit) does not import PyTorch
Geometric. (``parse`` is imported here, not lazily: it is also the name of its module.)
"""
from __future__ import annotations

from hsanet.featurizers.parse import Molecule, MoleculeError, parse, smiles_problem  # noqa: F401
from hsanet.lazy import lazy_exports

_EXPORTS = {name: "hsanet.featurizers.graph" for name in (
    "ATOM_FEATURE_DIMS", "BOND_FEATURE_DIMS", "brics_fragments", "featurize", "mol_to_data", "slice_batch",
    "serialize_batch", "Serialization")}
__all__ = sorted([*_EXPORTS, "Molecule", "MoleculeError", "parse", "smiles_problem"])


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
