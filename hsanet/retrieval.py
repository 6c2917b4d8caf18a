"""Nearest-neighbour caption retrieval by Morgan-fingerprint Tanimoto similarity.

Implements the retrieval baseline of ChEBI-20 molecule captioning: the caption of a test molecule
is the caption of its most similar training molecule, similarity being the Tanimoto coefficient of
Morgan (ECFP-like, Rogers & Hahn, J. Chem. Inf. Model. 2010) fingerprints, radius 2, 2,048 bits.
MolT5 (Edwards et al., EMNLP 2022) and MolCA (Liu et al., EMNLP 2023) report such a baseline. With
the train split as the pool (the standard protocol, ``hsanet baseline retrieval``) it scores BLEU-2 /
BLEU-4 / METEOR .568 / .479 / .582 on the ChEBI-20 test split (assets/hsanet-default/README.md).

:class:`FingerprintIndex` holds the reference fingerprints and captions, answers k-nearest
queries (best first, ties broken by the lower index) and saves to a folder without pickle: packed
fingerprint bits in ``fingerprints.npy``, SMILES and captions in ``index.json``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from rdkit import Chem, DataStructs, rdBase
from rdkit.Chem import rdFingerprintGenerator

RADIUS = 2
N_BITS = 2048
FORMAT = "hsanet-fingerprint-index"
VERSION = 1
BITS_FILE = "fingerprints.npy"
META_FILE = "index.json"

Neighbour = tuple[int, float]


@lru_cache(maxsize=4)
def _generator(radius: int, n_bits: int):
    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)


def morgan_fingerprint(smiles: str, radius: int = RADIUS,
                       n_bits: int = N_BITS) -> DataStructs.ExplicitBitVect | None:
    """Morgan bit fingerprint of a SMILES, or ``None`` when RDKit cannot parse it to atoms."""
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return _generator(radius, n_bits).GetFingerprint(mol)


def fingerprint_bits(smiles: Sequence[str], radius: int = RADIUS,
                     n_bits: int = N_BITS) -> tuple[np.ndarray, np.ndarray]:
    """Fingerprints of many SMILES as a ``(n, n_bits)`` uint8 0/1 matrix, and a validity mask.

    Unparseable SMILES get an all-zero row and ``False`` in the mask.
    """
    bits = np.zeros((len(smiles), n_bits), dtype=np.uint8)
    valid = np.zeros(len(smiles), dtype=bool)
    for i, smi in enumerate(smiles):
        fp = morgan_fingerprint(smi, radius, n_bits)
        if fp is not None:
            bits[i, list(fp.GetOnBits())] = 1
            valid[i] = True
    return bits, valid


def tanimoto_matrix(query_bits: np.ndarray, ref_bits: np.ndarray,
                    ref_counts: np.ndarray | None = None) -> np.ndarray:
    """Tanimoto similarity ``|a & b| / |a | b|`` of every query row to every reference row.

    Intersections come from one float32 matrix product (exact for counts below 2**24), so the
    values equal RDKit's ``DataStructs.BulkTanimotoSimilarity``; two empty fingerprints score 0.
    """
    q = query_bits.astype(np.float32, copy=False)
    r = ref_bits.astype(np.float32, copy=False)
    inter = (q @ r.T).astype(np.float64)
    ref_counts = r.sum(axis=1) if ref_counts is None else ref_counts
    union = q.sum(axis=1)[:, None] + ref_counts[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def rank(similarities: np.ndarray, candidates: np.ndarray, k: int) -> list[Neighbour]:
    """The ``k`` best candidates: highest similarity first, ties by lower index.

    Parameters
    ----------
    similarities : np.ndarray
        Similarity to every reference.
    candidates : np.ndarray
        Boolean mask of the references that may be returned.
    k : int
        Number of neighbours.
    """
    idx = np.flatnonzero(candidates)
    order = np.argsort(-similarities[idx], kind="stable")[:k]
    return [(int(idx[o]), float(similarities[idx[o]])) for o in order]


class FingerprintIndex:
    """Reference molecules with captions, searchable by Tanimoto similarity.

    Parameters
    ----------
    bits : np.ndarray
        ``(n, n_bits)`` uint8 0/1 fingerprint matrix (all-zero rows for unparseable SMILES).
    smiles, captions : list[str]
        The references' SMILES and captions.
    valid : np.ndarray
        Boolean mask; invalid references (unparseable SMILES) are never returned.
    radius : int
        The Morgan radius the fingerprints were made with.
    """

    #: queries per block in :meth:`query_many` (bounds memory at about block x n x 8 bytes)
    block_size = 512

    def __init__(self, bits: np.ndarray, smiles: Sequence[str], captions: Sequence[str],
                 valid: np.ndarray, radius: int = RADIUS):
        bits = np.asarray(bits, dtype=np.uint8)
        if bits.ndim != 2 or not bits.shape[0] == len(smiles) == len(captions) == len(valid):
            raise ValueError("bits (n x n_bits), smiles, captions and valid must have n rows")
        self.bits = bits
        self.smiles = list(smiles)
        self.captions = list(captions)
        self.valid = np.asarray(valid, dtype=bool)
        self.radius = radius
        self.n_bits = bits.shape[1]
        self._counts = bits.sum(axis=1, dtype=np.float64)
        self._matrix: np.ndarray | None = None  # float32 copy of bits, made on first query

    @classmethod
    def build(cls, smiles: Sequence[str], captions: Sequence[str] | None = None,
              radius: int = RADIUS, n_bits: int = N_BITS) -> "FingerprintIndex":
        """Fingerprint the references.

        Parameters
        ----------
        smiles : sequence of str
            Reference SMILES. Unparseable ones get an all-zero fingerprint and are never returned.
        captions : sequence of str, optional
            One caption per SMILES (default: empty strings).
        """
        captions = [""] * len(smiles) if captions is None else list(captions)
        if len(captions) != len(smiles):
            raise ValueError(f"{len(smiles)} SMILES but {len(captions)} captions")
        bits, valid = fingerprint_bits(smiles, radius, n_bits)
        return cls(bits, smiles, captions, valid, radius)

    def __len__(self) -> int:
        return len(self.smiles)

    def similarities(self, smiles: str) -> np.ndarray:
        """Tanimoto similarity of ``smiles`` to every reference (0 for invalid references).

        Raises
        ------
        ValueError
            If RDKit cannot parse ``smiles``.
        """
        bits, valid = fingerprint_bits([smiles], self.radius, self.n_bits)
        if not valid[0]:
            raise ValueError(f"RDKit cannot parse the query SMILES {smiles!r}")
        return tanimoto_matrix(bits, self._float_bits(), self._counts)[0]

    def query(self, smiles: str, k: int = 1, exclude: set[int] | None = None) -> list[Neighbour]:
        """The ``k`` most similar references as ``(index, similarity)``, best first.

        Ties are broken by the lower index, so results are deterministic.

        Parameters
        ----------
        smiles : str
            The query molecule.
        k : int
            Number of neighbours (fewer when fewer references are eligible).
        exclude : set[int], optional
            Reference indices never to return (e.g. the query itself).

        Raises
        ------
        ValueError
            If ``k < 1`` or RDKit cannot parse ``smiles``.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return rank(self.similarities(smiles), self._candidates(exclude), k)

    def query_many(self, smiles_list: Sequence[str], k: int = 1,
                   exclude_self: bool = False) -> list[list[Neighbour]]:
        """:meth:`query` for each SMILES, computed in blocks of matrix products.

        Parameters
        ----------
        smiles_list : sequence of str
            The queries. An unparseable query gets an empty list (one bad row does not stop a
            batch).
        k : int
            Neighbours per query.
        exclude_self : bool
            Query ``i`` never returns reference ``i`` (leave-one-out on the references
            themselves); then ``smiles_list`` must have one entry per reference.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if exclude_self and len(smiles_list) != len(self):
            raise ValueError(f"exclude_self needs one query per reference ({len(self)}), "
                             f"got {len(smiles_list)}")
        results: list[list[Neighbour]] = []
        for start in range(0, len(smiles_list), self.block_size):
            block = smiles_list[start:start + self.block_size]
            bits, valid = fingerprint_bits(block, self.radius, self.n_bits)
            sims = tanimoto_matrix(bits, self._float_bits(), self._counts)
            for row, ok in enumerate(valid):
                exclude = {start + row} if exclude_self else None
                results.append(rank(sims[row], self._candidates(exclude), k) if ok else [])
        return results

    def _float_bits(self) -> np.ndarray:
        if self._matrix is None:
            self._matrix = self.bits.astype(np.float32)
        return self._matrix

    def _candidates(self, exclude: set[int] | None) -> np.ndarray:
        candidates = self.valid.copy()
        if exclude:
            candidates[[i for i in exclude if 0 <= i < len(self)]] = False
        return candidates

    # --- persistence (no pickle) ------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``fingerprints.npy`` (packed bits) and ``index.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / BITS_FILE, np.packbits(self.bits, axis=1), allow_pickle=False)
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "fingerprint": {"type": "morgan", "radius": self.radius, "n_bits": self.n_bits},
            "smiles": self.smiles,
            "captions": self.captions,
            "valid": self.valid.tolist(),
        }
        (directory / META_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "FingerprintIndex":
        """Read an index written by :meth:`save` (``np.load(..., allow_pickle=False)``).

        Raises
        ------
        ValueError
            If the files are not a consistent index of this format.
        """
        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ValueError(f"{directory / META_FILE} is not a {FORMAT} v{VERSION} file")
        radius = int(meta["fingerprint"]["radius"])
        n_bits = int(meta["fingerprint"]["n_bits"])
        packed = np.load(directory / BITS_FILE, allow_pickle=False)
        n = len(meta["smiles"])
        if packed.dtype != np.uint8 or packed.shape != (n, (n_bits + 7) // 8):
            raise ValueError(f"{directory / BITS_FILE}: expected uint8 of shape "
                             f"({n}, {(n_bits + 7) // 8}), got {packed.dtype} {packed.shape}")
        bits = np.unpackbits(packed, axis=1, count=n_bits)
        return cls(bits, meta["smiles"], meta["captions"], np.array(meta["valid"], dtype=bool),
                   radius)


def retrieval_baseline(train_smiles: Sequence[str], train_captions: Sequence[str],
                       test_smiles: Sequence[str], with_similarity: bool = False, consensus: int = 0,
                       own_similarity: float = 8.0):
    """Caption each test molecule with the caption of its most similar training molecule, or with
    ``consensus`` = K, the caption among its K nearest training molecules' that agrees best with the
    others (:mod:`hsanet.lm.consensus`: similarity-weighted sentence BLEU, plus ``own_similarity`` x its
    own similarity; Devlin et al. 2015's consensus re-ranking, no neural model).

    Parameters
    ----------
    train_smiles, train_captions : sequence of str
        The reference pairs (for ChEBI-20: the train split).
    test_smiles : sequence of str
        The molecules to caption. An unparseable one gets ``""``.

    Returns
    -------
    list[str]
        One caption per test molecule; with ``with_similarity`` also the list of the top
        neighbour's Tanimoto similarity (NaN where the molecule did not parse).
    """
    index = FingerprintIndex.build(train_smiles, train_captions)
    hits = index.query_many(test_smiles, k=max(1, consensus))
    if consensus > 1:
        from hsanet.lm.consensus import consensus as agree

        captions = []
        for h in hits:
            if not h:
                captions.append("")
                continue
            texts = [index.captions[i] for i, _ in h]
            sims = np.array([s for _, s in h])
            captions.append(texts[int(np.argmax(agree(texts, texts, sims) + own_similarity * sims))])
    else:
        captions = [index.captions[h[0][0]] if h else "" for h in hits]
    if with_similarity:
        return captions, [h[0][1] if h else float("nan") for h in hits]
    return captions
