"""Data loading for HSA-Net: ChEBI-20 captioning pairs, MoleculeNet property sets, splits, and
user tables.

Sources: ChEBI-20 (Edwards et al., Text2Mol EMNLP 2021 / MolT5 EMNLP 2022), MoleculeNet
(Wu et al., Chem. Sci. 2018), scaffold splits of Hu et al. (ICLR 2020). The files themselves live in
the shared data folder (``hsanet.paths.data_dir``), never in this repository.
"""
from hsanet.data.chebi import ChebiSplit, fix_backslashes, holdout_split, load_chebi
from hsanet.data.moleculenet import (
    REGISTRY,
    PropertyDataset,
    list_datasets,
    load_moleculenet,
)
from hsanet.data.splits import random_split, scaffold_split
from hsanet.data.tables import TableError, UserTable, read_table, safe_csv_cell, to_safe_csv

__all__ = [
    "ChebiSplit",
    "PropertyDataset",
    "REGISTRY",
    "TableError",
    "UserTable",
    "fix_backslashes",
    "holdout_split",
    "list_datasets",
    "load_chebi",
    "load_moleculenet",
    "random_split",
    "read_table",
    "safe_csv_cell",
    "scaffold_split",
    "to_safe_csv",
]
