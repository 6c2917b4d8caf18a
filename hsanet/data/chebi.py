"""ChEBI-20 molecule-captioning pairs (SMILES -> natural-language description).

Implements a loader for the ChEBI-20 splits of Text2Mol (Edwards et al., EMNLP 2021) as
distributed with MolT5 (Edwards et al., EMNLP 2022; repository ``blender-nlp/MolT5``, folder
``ChEBI-20_data``). Each split is a tab-separated file with the header ``CID``, ``SMILES``,
``description``.

Two facts about the files shape this module (see ``shared/data/README.md``):

- Some SMILES carry a doubled backslash (``\\\\``) where SMILES means a single ``\\`` (a
  directional bond). :func:`fix_backslashes` undoes that, so SMILES compare equal to those in the
  published MolT5 prediction files.
- All three splits are in the shared data: train (26,407 rows), validation (3,301) and test
  (3,300). The standard protocol trains on train, selects on validation and scores on test;
  :func:`holdout_split` makes a held-out part for the older train-on-validation setting.

Rows that cannot be used are never dropped silently: they are listed in ``ChebiSplit.skipped``.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rdkit import Chem, rdBase

from hsanet.featurizers.parse import smiles_problem
from hsanet.paths import data_dir as _data_dir

SPLITS = ("train", "validation", "test")
HEADER = ("CID", "SMILES", "description")
TRAIN_BLOB = "c1b42b82fdc8fb5287614e159196e25370763aac"


@dataclass
class ChebiSplit:
    """One ChEBI-20 split: parallel lists of CIDs, SMILES and descriptions.

    Attributes
    ----------
    name : str
        The split name: ``"train"``, ``"validation"`` or ``"test"``.
    cids : list[str]
        PubChem compound ids, as written in the file.
    smiles : list[str]
        SMILES as written in the file, with doubled backslashes replaced by single ones.
    descriptions : list[str]
        The reference captions.
    skipped : list[tuple[int, str, str]]
        Unusable rows as ``(row, CID, reason)``; ``row`` counts data rows from 0 (the first row
        after the header), like a pandas index.
    """

    name: str
    cids: list[str] = field(default_factory=list)
    smiles: list[str] = field(default_factory=list)
    descriptions: list[str] = field(default_factory=list)
    skipped: list[tuple[int, str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.smiles)

    def head(self, n: int) -> "ChebiSplit":
        """The first ``n`` usable pairs (as ``hsanet evaluate --limit`` takes them)."""
        return ChebiSplit(self.name, self.cids[:n], self.smiles[:n], self.descriptions[:n], list(self.skipped))


def fix_backslashes(smiles: str) -> str:
    """Replace the doubled backslashes of the ChEBI-20 files (``\\\\``) by single ones."""
    return smiles.replace("\\\\", "\\")


def chebi_path(split: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Path of a ChEBI-20 split file, with a clear error when it is unavailable.

    Raises
    ------
    ValueError
        If ``split`` is not one of ``"train"``, ``"validation"``, ``"test"``.
    FileNotFoundError
        If the file is missing. For ``"train"`` the message explains that the split is not
        distributed offline and how to verify a copy.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown ChEBI-20 split {split!r}; expected one of {', '.join(SPLITS)}")
    path = _data_dir(data_dir) / "chebi20" / f"{split}.txt"
    if path.exists():
        return path
    if split == "train":
        raise FileNotFoundError(
            f"ChEBI-20 train split not found at {path}. It is MolT5's ChEBI-20_data/train.txt (26,407 "
            f"rows, git blob {TRAIN_BLOB}, as in ../shared/data); point --data-dir or HSANET_DATA at the "
            "folder that holds chebi20/, or train on the validation split (--train-split validation)."
        )
    raise FileNotFoundError(
        f"ChEBI-20 {split} split not found at {path}. Point --data-dir or HSANET_DATA at the "
        "folder that holds chebi20/ (by default ../shared/data beside the checkout)."
    )


def _row_problem(row: list[str], smiles: str) -> str | None:
    """Why a parsed row is unusable, or ``None`` when it is fine."""
    if len(row) != len(HEADER):
        return f"expected {len(HEADER)} tab-separated fields, found {len(row)}"
    if not smiles:
        return "empty SMILES"
    if not row[2].strip():
        return "empty description"
    return smiles_problem(smiles)


def read_chebi_file(path: str | os.PathLike, name: str = "") -> ChebiSplit:
    """Read one ChEBI-20 style file (TSV with header ``CID``, ``SMILES``, ``description``).

    The csv module runs with ``quoting=csv.QUOTE_NONE``: descriptions contain quote characters
    that are text, not CSV quoting.

    Raises
    ------
    ValueError
        If the header is not ``CID``, ``SMILES``, ``description``.
    """
    path = Path(path)
    out = ChebiSplit(name=name or path.stem)
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != HEADER:
            raise ValueError(f"{path}: expected the header {'/'.join(HEADER)}, found {header!r}")
        with rdBase.BlockLogs():
            rows = (row for row in reader if row)  # blank lines are not data rows
            for number, row in enumerate(rows):
                cid = row[0].strip()
                smiles = fix_backslashes(row[1].strip()) if len(row) > 1 else ""
                problem = _row_problem(row, smiles)
                if problem:
                    out.skipped.append((number, cid, problem))
                    continue
                out.cids.append(cid)
                out.smiles.append(smiles)
                out.descriptions.append(row[2].strip())
    return out


def load_chebi(split: str, data_dir: str | os.PathLike | None = None) -> ChebiSplit:
    """Load a ChEBI-20 split.

    Parameters
    ----------
    split : str
        ``"train"`` (26,407 rows), ``"validation"`` (3,301) or ``"test"`` (3,300). A missing file
        raises ``FileNotFoundError`` saying where it was looked for and how to point there.
    data_dir : path-like, optional
        The data folder (default: ``hsanet.paths.data_dir()``).

    Returns
    -------
    ChebiSplit
        The usable pairs, and the unusable rows in ``skipped``.
    """
    return read_chebi_file(chebi_path(split, data_dir), name=split)


def holdout_split(n: int, fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministically hold out ``fraction`` of ``n`` items.

    A permutation from ``numpy.random.default_rng(seed)``; the first ``round(fraction * n)``
    permuted indices are held out. Both returned arrays are sorted.

    Parameters
    ----------
    n : int
        Number of items.
    fraction : float
        Share held out, in [0, 1).
    seed : int
        Seed of the permutation.

    Returns
    -------
    tuple[np.ndarray, np.ndarray]
        ``(train_idx, heldout_idx)``, disjoint int64 arrays covering ``range(n)``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_held = int(round(fraction * n))
    return np.sort(order[n_held:]), np.sort(order[:n_held])


def description_index(data_dir: str | os.PathLike | None = None,
                      splits: tuple[str, ...] = SPLITS) -> dict[str, tuple[str, str, str]] | None:
    """Canonical SMILES -> (split, CID, description) over the ChEBI-20 splits present.

    A molecule in several splits keeps its first (in ``splits`` order). Returns None when no
    split file is found (the shared data is absent); a missing split is left out.
    """
    index: dict[str, tuple[str, str, str]] = {}
    found = []
    for name in splits:
        try:
            found.append(load_chebi(name, data_dir))
        except (FileNotFoundError, OSError, ValueError):
            continue
    if not found:
        return None
    with rdBase.BlockLogs():
        for split in found:
            for cid, smi, desc in zip(split.cids, split.smiles, split.descriptions):
                mol = Chem.MolFromSmiles(smi)
                if mol is not None:
                    index.setdefault(Chem.MolToSmiles(mol), (split.name, cid, desc))
    return index
