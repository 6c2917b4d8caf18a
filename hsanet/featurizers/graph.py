"""Featurization: an RDKit molecule to a PyTorch Geometric graph (the encoder's input, Sec. 3.1).

Atoms and bonds get the OGB categorical features that LLaMo and MolCA's GIN read (Hu et al. 2020):
9 per atom (atomic number, chirality, degree, formal charge, number of H, radical electrons,
hybridization, aromatic, in ring) and 3 per bond (type, stereo, conjugated), each an index into a
small vocabulary whose last entry stands for "unknown".

Each atom also gets a BRICS fragment id (the motif branch and the Graph-Mamba ordering use it; the
paper fragments with a ReLMole-style retrosynthesis tool, BRICS is RDKit's retrosynthesis-based
fragmentation) and the topological distance matrix (flattened, so PyG can batch it) that modulates
the Mamba step size.

:func:`serialize_batch` is E_Mamba's scan order (Sec. 3.2, structure-aware serialization): the atoms
of each molecule by BRICS fragment, then degree (ascending, so the best-connected atoms of a fragment
come last and see most context, as MOL-Mamba orders), ties by canonical atom index in eval and at
random in training (Graph-Mamba's augmentation), with the bond-path distance from each atom to the one
before it. It is the one implementation of the order; E_Mamba and the app's "scan order" read it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import BRICS
from torch_geometric.data import Batch, Data

from hsanet.featurizers.parse import Molecule
from hsanet.rng import keyed_uniform

_CHIRAL = ["CHI_UNSPECIFIED", "CHI_TETRAHEDRAL_CW", "CHI_TETRAHEDRAL_CCW", "CHI_OTHER"]
_HYBRID = ["SP", "SP2", "SP3", "SP3D", "SP3D2"]
_BOND_TYPE = ["SINGLE", "DOUBLE", "TRIPLE", "AROMATIC"]
_STEREO = ["STEREONONE", "STEREOZ", "STEREOE", "STEREOCIS", "STEREOTRANS", "STEREOANY"]

ATOM_FEATURE_DIMS = [119, 5, 12, 12, 10, 6, 6, 2, 2]
BOND_FEATURE_DIMS = [5, 6, 2]
DISCONNECTED = 255.0   # distance stored between atoms of different components


def _index(value, choices: list) -> int:
    """Position of ``value`` in ``choices``; the last slot (one past the list) for anything else."""
    try:
        return choices.index(value)
    except ValueError:
        return len(choices)


def _bounded(value: int, lo: int, hi: int) -> int:
    """Index of an integer in the range lo..hi, or the "unknown" slot after it."""
    return value - lo if lo <= value <= hi else hi - lo + 1


def atom_features(atom: Chem.Atom) -> list[int]:
    return [
        _bounded(atom.GetAtomicNum(), 1, 118),
        _index(str(atom.GetChiralTag()), _CHIRAL),
        _bounded(atom.GetTotalDegree(), 0, 10),
        _bounded(atom.GetFormalCharge(), -5, 5),
        _bounded(atom.GetTotalNumHs(), 0, 8),
        _bounded(atom.GetNumRadicalElectrons(), 0, 4),
        _index(str(atom.GetHybridization()), _HYBRID),
        int(atom.GetIsAromatic()),
        int(atom.IsInRing()),
    ]


def bond_features(bond: Chem.Bond) -> list[int]:
    stereo = str(bond.GetStereo())
    return [
        _index(str(bond.GetBondType()), _BOND_TYPE),
        _STEREO.index(stereo) if stereo in _STEREO else len(_STEREO) - 1,
        int(bond.GetIsConjugated()),
    ]


def brics_fragments(mol: Chem.Mol) -> list[int]:
    """Fragment id per atom: the components left after cutting RDKit's BRICS bonds.

    Ids are numbered in order of each fragment's smallest atom index (canonical, since the parser
    rebuilds molecules from canonical SMILES). Disconnected components are separate fragments.
    """
    n = mol.GetNumAtoms()
    cut = [mol.GetBondBetweenAtoms(a, b).GetIdx() for (a, b), _ in BRICS.FindBRICSBonds(mol)]
    frag_mol = Chem.FragmentOnBonds(mol, cut, addDummies=False) if cut else mol
    groups = sorted(Chem.GetMolFrags(frag_mol, sanitizeFrags=False), key=min)
    frag = [0] * n
    for fid, atoms in enumerate(groups):
        for a in atoms:
            if a < n:
                frag[a] = fid
    return frag


def mol_to_data(mol: Chem.Mol) -> Data:
    """One molecule as a PyG ``Data`` with x, edge_index, edge_attr, frag, degree and dist."""
    n = mol.GetNumAtoms()
    x = torch.tensor([atom_features(a) for a in mol.GetAtoms()], dtype=torch.long).view(n, 9)
    src, dst, feats = [], [], []
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        f = bond_features(bond)
        src += [i, j]
        dst += [j, i]
        feats += [f, f]
    edge_index = torch.tensor([src, dst], dtype=torch.long).view(2, -1)
    edge_attr = torch.tensor(feats, dtype=torch.long).view(-1, 3)
    dist = np.asarray(Chem.GetDistanceMatrix(mol), dtype=np.float32) if n > 1 else np.zeros((1, 1), np.float32)
    dist = np.where(dist > 1e6, DISCONNECTED, dist)
    frag = torch.tensor(brics_fragments(mol), dtype=torch.long)
    degree = torch.tensor([a.GetDegree() for a in mol.GetAtoms()], dtype=torch.long)
    return Data(x=x, edge_index=edge_index, edge_attr=edge_attr, frag=frag, degree=degree,
                num_frags=int(frag.max()) + 1, dist=torch.from_numpy(dist).reshape(-1), num_nodes=n)


def featurize(molecules: list[Molecule] | Molecule) -> Batch:
    """Featurize parsed molecules into one PyG ``Batch``."""
    if isinstance(molecules, Molecule):
        molecules = [molecules]
    return Batch.from_data_list([mol_to_data(m.mol) for m in molecules])


def slice_batch(batch: Batch, start: int, stop: int) -> Batch:
    """Molecules ``start:stop`` of a batch made by :func:`featurize`, as a batch of their own.

    Cuts the concatenated tensors at PyG's recorded slices (about 1 ms for 256 molecules, where
    ``Batch.index_select`` + ``from_data_list`` takes about 100 ms)."""
    n = batch.num_graphs
    if not 0 <= start < stop <= n:
        raise ValueError(f"slice {start}:{stop} of a batch of {n} molecules")
    cuts = batch._slice_dict
    ptr = batch.ptr
    part = {key: batch[key][int(cuts[key][start]):int(cuts[key][stop])]
            for key in ("x", "edge_attr", "frag", "degree", "num_frags", "dist")}
    e0, e1 = int(cuts["edge_index"][start]), int(cuts["edge_index"][stop])
    part["edge_index"] = batch.edge_index[:, e0:e1] - ptr[start]
    out = Batch(**part)
    out.batch = batch.batch[int(ptr[start]):int(ptr[stop])] - start
    out.ptr = ptr[start:stop + 1] - ptr[start]
    out._num_graphs = stop - start
    return out


@dataclass
class Serialization:
    """The E_Mamba scan order of a batch, shared by all levels."""

    index: torch.Tensor        # (B, Lmax) global node index per step, left-padded (pads point at node 0)
    dist: torch.Tensor         # (B, Lmax) bond-path distance to the previous atom in the order
    mask: torch.Tensor         # (B, Lmax) True for real atoms
    orders: list[list[int]]    # per molecule, local atom indices in scan order


def serialize_batch(batch, random_ties: bool = False, generator: torch.Generator | None = None,
                    keys: torch.Tensor | None = None) -> Serialization:
    """The scan order of every molecule of a PyG batch (see the module docstring), left-padded.

    All molecules at once: one sort of all atoms by (molecule, fragment, degree, tie), the tie being
    the atom index, or with ``random_ties`` a uniform number per atom (Graph-Mamba's augmentation):
    from ``keys`` (one int64 key per molecule, ``hsanet.rng``: the same order for a molecule
    whatever its batch) or else from ``generator``.
    """
    device = batch.x.device
    ptr = batch.ptr.cpu()
    sizes = ptr[1:] - ptr[:-1]
    graph = batch.batch.cpu()
    n_total, b, lmax = graph.numel(), sizes.numel(), int(sizes.max())
    local = torch.arange(n_total) - ptr[graph]
    frag, degree = batch.frag.cpu(), batch.degree.cpu()
    key = graph
    for part, size in ((frag, int(frag.max()) + 1), (degree, int(degree.max()) + 1)):
        key = key * size + part
    if not random_ties:
        perm = torch.argsort(key * lmax + local)       # molecule-major, so each molecule is contiguous
    else:
        if keys is not None:
            tie = keyed_uniform(keys.cpu()[graph], 1000, local)
        else:
            tie = torch.rand(n_total, generator=generator)
        perm = torch.argsort(tie)
        perm = perm[torch.argsort(key[perm], stable=True)]     # by (molecule, fragment, degree), ties random
    g = graph[perm]
    col = lmax - sizes[g] + torch.arange(n_total) - ptr[g]
    index = torch.zeros(b, lmax, dtype=torch.long)
    dist = torch.ones(b, lmax)
    mask = torch.zeros(b, lmax, dtype=torch.bool)
    index[g, col] = perm
    mask[g, col] = True
    # bond-path distance from each atom to the one before it in its molecule's order
    offsets = torch.cumsum(sizes * sizes, 0) - sizes * sizes
    later = torch.nonzero(g[1:] == g[:-1]).squeeze(1) + 1           # positions with a predecessor
    gl = g[later]
    flat = offsets[gl] + local[perm[later - 1]] * sizes[gl] + local[perm[later]]
    dist[gl, col[later]] = batch.dist.cpu()[flat]
    orders = [o.tolist() for o in torch.split(local[perm], sizes.tolist())]
    return Serialization(index.to(device), dist.to(device), mask.to(device), orders)
