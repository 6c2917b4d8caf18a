"""Molecule input and featurization (the graph the encoder reads)."""
from .parse import Molecule, MoleculeError, parse
from .featurize import ATOM_FEATURE_DIMS, BOND_FEATURE_DIMS, brics_fragments, featurize, mol_to_data, slice_batch

__all__ = ["Molecule", "MoleculeError", "parse", "featurize", "mol_to_data", "brics_fragments", "slice_batch",
           "ATOM_FEATURE_DIMS", "BOND_FEATURE_DIMS"]
