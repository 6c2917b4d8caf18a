"""Train/validation/test splits for property prediction: scaffold and random.

Implements the scaffold split of Hu et al., "Strategies for Pre-training Graph Neural Networks",
ICLR 2020 (repository ``snap-stanford/pretrain-gnns``, file ``chem/splitters.py``), itself adapted
from DeepChem's ``ScaffoldSplitter`` (Wu et al., MoleculeNet 2018). Molecules are grouped by their
Bemis–Murcko scaffold (Bemis & Murcko, J. Med. Chem. 1996), computed with chirality, so that no
scaffold is shared between the parts.

Seeds
-----
``scaffold_split(..., seed=0)`` is Hu et al.'s deterministic ``scaffold_split``: scaffold groups
sorted by (size, first index), largest first, and a group goes to train if train stays within
``frac_train * n``, else to valid if train + valid stays within ``(frac_train + frac_valid) * n``,
else to test. The test part therefore holds the rarest scaffolds.

Any other seed gives Hu et al.'s ``random_scaffold_split``: the scaffold groups (in order of first
appearance) are permuted by ``numpy.random.RandomState(seed)``; a group goes to valid while valid
stays within ``floor(frac_valid * n)``, else to test while test stays within
``floor(frac_test * n)``, else to train. Use seeds 1, 2, 3, ... for mean ± std over splits. (The
usual MoleculeNet protocol of Hu et al. instead keeps the seed-0 split and varies the model seed.)
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem.Scaffolds import MurckoScaffold

Fractions = tuple[float, float, float]
SplitIndices = tuple[np.ndarray, np.ndarray, np.ndarray]


@lru_cache(maxsize=200_000)
def murcko_scaffold(smiles: str, include_chirality: bool = True) -> str | None:
    """Bemis–Murcko scaffold SMILES of a molecule, or ``None`` when RDKit cannot parse it.

    Same result as ``MurckoScaffold.MurckoScaffoldSmiles(smiles=..., includeChirality=...)``
    (Hu et al.'s ``generate_scaffold``); acyclic molecules have the empty scaffold ``""``.
    Results are cached, so splitting the same molecules with several seeds is cheap.
    """
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            return None
        return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=include_chirality)


def scaffold_groups(smiles: Sequence[str]) -> dict[str, list[int]]:
    """Indices grouped by scaffold, in order of first appearance.

    A SMILES RDKit cannot parse forms a group of its own (key ``"<unparseable:i>"``), so it can
    never pull other molecules across a split.
    """
    groups: dict[str, list[int]] = {}
    for i, smi in enumerate(smiles):
        scaffold = murcko_scaffold(smi)
        key = f"<unparseable:{i}>" if scaffold is None else scaffold
        groups.setdefault(key, []).append(i)
    return groups


def _check_fractions(frac: Fractions) -> Fractions:
    if len(frac) != 3 or min(frac) < 0 or not np.isclose(sum(frac), 1.0):
        raise ValueError(f"frac must be three non-negative numbers summing to 1, got {frac}")
    return tuple(float(f) for f in frac)  # type: ignore[return-value]


def _as_arrays(train: list[int], valid: list[int], test: list[int]) -> SplitIndices:
    return tuple(np.asarray(part, dtype=np.int64) for part in (train, valid, test))  # type: ignore


def deterministic_scaffold_split(groups: list[list[int]], n: int,
                                 frac: Fractions = (0.8, 0.1, 0.1)) -> SplitIndices:
    """Hu et al.'s ``scaffold_split``: largest scaffold groups to train, then valid, then test.

    Parameters
    ----------
    groups : list[list[int]]
        Index groups (one per scaffold).
    n : int
        Total number of molecules.
    frac : tuple of float
        Train / valid / test fractions.
    """
    frac_train, frac_valid, _ = _check_fractions(frac)
    groups = [sorted(g) for g in groups]
    # Hu et al. sort by (size, first index) with reverse=True: bigger first, ties by larger index.
    groups.sort(key=lambda g: (len(g), g[0]), reverse=True)
    train_cutoff = frac_train * n
    valid_cutoff = (frac_train + frac_valid) * n
    train: list[int] = []
    valid: list[int] = []
    test: list[int] = []
    for group in groups:
        if len(train) + len(group) <= train_cutoff:
            train.extend(group)
        elif len(train) + len(valid) + len(group) <= valid_cutoff:
            valid.extend(group)
        else:
            test.extend(group)
    return _as_arrays(train, valid, test)


def random_scaffold_split(groups: list[list[int]], n: int, frac: Fractions = (0.8, 0.1, 0.1),
                          seed: int = 0) -> SplitIndices:
    """Hu et al.'s ``random_scaffold_split``: shuffled scaffold groups fill valid, test, then train.

    The group order is ``numpy.random.RandomState(seed).permutation(len(groups))``, the same
    permutation Hu et al. apply to their list of groups.
    """
    _, frac_valid, frac_test = _check_fractions(frac)
    order = np.random.RandomState(seed).permutation(len(groups))
    n_valid = int(np.floor(frac_valid * n))
    n_test = int(np.floor(frac_test * n))
    train: list[int] = []
    valid: list[int] = []
    test: list[int] = []
    for k in order:
        group = groups[k]
        if len(valid) + len(group) <= n_valid:
            valid.extend(group)
        elif len(test) + len(group) <= n_test:
            test.extend(group)
        else:
            train.extend(group)
    return _as_arrays(train, valid, test)


def scaffold_split(smiles: Sequence[str], frac: Fractions = (0.8, 0.1, 0.1),
                   seed: int = 0) -> SplitIndices:
    """Bemis–Murcko scaffold split (Hu et al. 2020).

    Parameters
    ----------
    smiles : sequence of str
        The molecules.
    frac : tuple of float
        Train / valid / test fractions, summing to 1.
    seed : int
        ``0``: Hu et al.'s deterministic split (rarest scaffolds in test). Any other value:
        Hu et al.'s random scaffold split with ``RandomState(seed)``; see the module docstring.

    Returns
    -------
    tuple of np.ndarray
        ``(train, valid, test)`` int64 index arrays; together a partition of ``range(len(smiles))``
        in which no scaffold appears in two parts.
    """
    groups = list(scaffold_groups(smiles).values())
    if seed == 0:
        return deterministic_scaffold_split(groups, len(smiles), frac)
    return random_scaffold_split(groups, len(smiles), frac, seed)


def random_split(n: int | Sequence, frac: Fractions = (0.8, 0.1, 0.1),
                 seed: int = 0) -> SplitIndices:
    """Random split of ``range(n)`` (``n`` may also be the sequence of molecules itself).

    A ``numpy.random.default_rng(seed)`` permutation cut at ``int(frac_train * n)`` and
    ``int((frac_train + frac_valid) * n)``.

    Returns
    -------
    tuple of np.ndarray
        ``(train, valid, test)`` int64 index arrays.
    """
    frac_train, frac_valid, _ = _check_fractions(frac)
    if not isinstance(n, (int, np.integer)):
        n = len(n)
    order = np.random.default_rng(seed).permutation(n).astype(np.int64)
    cut_train = int(frac_train * n)
    cut_valid = int((frac_train + frac_valid) * n)
    return order[:cut_train], order[cut_train:cut_valid], order[cut_valid:]
