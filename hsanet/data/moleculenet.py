"""MoleculeNet property-prediction benchmarks (Wu et al., "MoleculeNet", Chem. Sci. 2018).

A registry of the ten raw MoleculeNet CSVs kept in ``<data_dir>/moleculenet`` (provenance of every
file in ``shared/data/README.md``): seven classification sets (BBBP, BACE, ClinTox, Tox21, SIDER,
ToxCast, HIV) and three regression sets (ESOL, FreeSolv, Lipophilicity). Each entry names the
SMILES column and the task columns; :func:`load_moleculenet` returns a :class:`PropertyDataset`
with a float label matrix (NaN where a label is missing).

Rows whose SMILES RDKit cannot parse (11 in BBBP, 4 in ClinTox, 8 in Tox21, 7 in HIV) are left out
of the dataset and listed in ``PropertyDataset.skipped``, never dropped silently.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import rdBase

from hsanet.featurizers.parse import smiles_problem
from hsanet.paths import data_dir as _data_dir

CLASSIFICATION = "classification"
REGRESSION = "regression"

TOX21_TASKS = (
    "NR-AR", "NR-AR-LBD", "NR-AhR", "NR-Aromatase", "NR-ER", "NR-ER-LBD", "NR-PPAR-gamma",
    "SR-ARE", "SR-ATAD5", "SR-HSE", "SR-MMP", "SR-p53",
)


@dataclass(frozen=True)
class DatasetSpec:
    """Where one MoleculeNet set lives and which columns hold its SMILES and labels.

    Attributes
    ----------
    name : str
        Canonical name (``"BBBP"``, ``"Tox21"``, ...).
    filename : str
        File inside ``<data_dir>/moleculenet``.
    smiles_column : str
        Column with the SMILES.
    kind : str
        ``"classification"`` or ``"regression"``.
    tasks : tuple[str, ...] | None
        Task columns; ``None`` means every column except the SMILES and ``exclude`` columns.
    exclude : tuple[str, ...]
        Non-task columns, used when ``tasks`` is ``None``.
    n_tasks : int
        Expected number of tasks (checked on load).
    """

    name: str
    filename: str
    smiles_column: str
    kind: str
    tasks: tuple[str, ...] | None
    exclude: tuple[str, ...] = ()
    n_tasks: int = 1


REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("BBBP", "BBBP.csv", "smiles", CLASSIFICATION, ("p_np",)),
        DatasetSpec("BACE", "BACE.csv", "mol", CLASSIFICATION, ("Class",)),
        DatasetSpec("ClinTox", "ClinTox.csv", "smiles", CLASSIFICATION,
                    ("FDA_APPROVED", "CT_TOX"), n_tasks=2),
        DatasetSpec("Tox21", "Tox21.csv", "smiles", CLASSIFICATION, TOX21_TASKS, n_tasks=12),
        DatasetSpec("SIDER", "SIDER.csv", "smiles", CLASSIFICATION, None, n_tasks=27),
        DatasetSpec("ToxCast", "ToxCast.csv.gz", "smiles", CLASSIFICATION, None, n_tasks=617),
        DatasetSpec("HIV", "HIV.csv", "smiles", CLASSIFICATION, ("HIV_active",),
                    exclude=("activity",)),
        DatasetSpec("ESOL", "ESOL.csv", "smiles", REGRESSION,
                    ("measured log solubility in mols per litre",)),
        DatasetSpec("FreeSolv", "FreeSolv.csv", "smiles", REGRESSION, ("expt",)),
        DatasetSpec("Lipophilicity", "Lipophilicity.csv", "smiles", REGRESSION, ("exp",)),
    )
}


@dataclass
class PropertyDataset:
    """Molecules with one or more property labels.

    Attributes
    ----------
    name : str
        Dataset name.
    smiles : list[str]
        SMILES of the usable rows (surrounding whitespace stripped).
    task_names : list[str]
        One name per label column.
    kind : str
        ``"classification"`` (labels 0/1) or ``"regression"``.
    y : np.ndarray
        ``(n, T)`` float64 labels, NaN where missing.
    rows : np.ndarray
        For each molecule, its data-row number in the file (0 = first row after the header).
    skipped : list[tuple[int, str, str]]
        Unusable rows as ``(row number, SMILES, reason)``.
    """

    name: str
    smiles: list[str]
    task_names: list[str]
    kind: str
    y: np.ndarray
    rows: np.ndarray
    skipped: list[tuple[int, str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.smiles)

    @property
    def num_tasks(self) -> int:
        """Number of label columns ``T``."""
        return len(self.task_names)


def get_spec(name: str) -> DatasetSpec:
    """Registry entry for ``name`` (case-insensitive).

    Raises
    ------
    KeyError
        If the name is unknown; the message lists the known names.
    """
    for key, spec in REGISTRY.items():
        if key.lower() == name.strip().lower():
            return spec
    raise KeyError(f"unknown MoleculeNet dataset {name!r}; known: {', '.join(REGISTRY)}")


def dataset_path(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Path of a MoleculeNet file, with a clear error when it is missing."""
    spec = get_spec(name)
    path = _data_dir(data_dir) / "moleculenet" / spec.filename
    if not path.exists():
        raise FileNotFoundError(
            f"MoleculeNet file for {spec.name} not found at {path}. Point --data-dir or "
            "HSANET_DATA at the folder that holds moleculenet/ (by default ../shared/data)."
        )
    return path


def _task_columns(spec: DatasetSpec, columns: list[str]) -> list[str]:
    """The label columns of a loaded frame, checked against the registry entry."""
    if spec.tasks is not None:
        tasks = list(spec.tasks)
    else:
        tasks = [c for c in columns if c != spec.smiles_column and c not in spec.exclude]
    missing = [c for c in [spec.smiles_column, *tasks] if c not in columns]
    if missing:
        raise ValueError(f"{spec.name}: columns {missing} not found; the file has {columns[:20]}")
    if len(tasks) != spec.n_tasks:
        raise ValueError(f"{spec.name}: expected {spec.n_tasks} task columns, found {len(tasks)}")
    return tasks


def _labels(spec: DatasetSpec, frame: pd.DataFrame, tasks: list[str]) -> np.ndarray:
    """The ``(n, T)`` float label matrix: blank cells become NaN, other non-numbers are errors."""
    raw = frame[tasks]
    labels = raw.apply(pd.to_numeric, errors="coerce")
    bad = labels.isna() & raw.notna()
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise ValueError(f"{spec.name}: non-numeric label {raw.iat[row, col]!r} in column "
                         f"{tasks[col]!r}, data row {row}")
    return labels.to_numpy(dtype=np.float64)


def load_moleculenet(name: str, data_dir: str | os.PathLike | None = None) -> PropertyDataset:
    """Load one MoleculeNet set from ``<data_dir>/moleculenet``.

    Parameters
    ----------
    name : str
        A registry name, case-insensitive: BBBP, BACE, ClinTox, Tox21, SIDER, ToxCast, HIV,
        ESOL, FreeSolv, Lipophilicity.
    data_dir : path-like, optional
        The data folder (default: ``hsanet.paths.data_dir()``).

    Returns
    -------
    PropertyDataset
        The rows RDKit parses; the others are listed in ``skipped``.
    """
    spec = get_spec(name)
    frame = pd.read_csv(dataset_path(spec.name, data_dir), dtype={spec.smiles_column: str},
                        keep_default_na=False, na_values=[""], low_memory=False)
    tasks = _task_columns(spec, list(frame.columns))
    labels = _labels(spec, frame, tasks)
    smiles_all = frame[spec.smiles_column].fillna("").astype(str).str.strip().tolist()

    keep, skipped = [], []
    with rdBase.BlockLogs():
        for row, smiles in enumerate(smiles_all):
            problem = smiles_problem(smiles)
            if problem:
                skipped.append((row, smiles, problem))
            else:
                keep.append(row)
    rows = np.asarray(keep, dtype=np.int64)
    return PropertyDataset(
        name=spec.name,
        smiles=[smiles_all[i] for i in keep],
        task_names=tasks,
        kind=spec.kind,
        y=labels[rows] if len(rows) else np.zeros((0, len(tasks))),
        rows=rows,
        skipped=skipped,
    )


def list_datasets() -> list[str]:
    """Names of the registered MoleculeNet sets."""
    return list(REGISTRY)
