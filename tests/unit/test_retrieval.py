"""Tests of hsanet.retrieval: Morgan/Tanimoto nearest-neighbour index and the caption baseline."""
from __future__ import annotations

import json

import numpy as np
import pytest
from rdkit import DataStructs

from hsanet import retrieval
from hsanet.retrieval import FingerprintIndex, morgan_fingerprint, retrieval_baseline

SMILES = ["CCO", "c1ccccc1O", "CCCCCC", "c1ccccc1O", "not a smiles", "CC(=O)Oc1ccccc1C(=O)O", "CCN"]
CAPTIONS = ["ethanol", "phenol A", "hexane", "phenol B", "broken", "aspirin ✓", "ethylamine"]


@pytest.fixture(scope="module")
def index():
    return FingerprintIndex.build(SMILES, CAPTIONS)


def test_build_marks_unparseable(index):
    assert len(index) == 7
    assert index.valid.tolist() == [True, True, True, True, False, True, True]
    assert index.bits.shape == (7, 2048) and index.bits[4].sum() == 0


def test_molecule_retrieves_itself_unless_excluded(index):
    assert index.query("CCO", k=1) == [(0, 1.0)]
    hits = index.query("CCO", k=2, exclude={0})
    assert 0 not in [i for i, _ in hits] and all(s < 1.0 for _, s in hits)
    loo = index.query_many(["CCO", "CCCCCC"], k=1, exclude_self=False)
    assert loo == [[(0, 1.0)], [(2, 1.0)]]


def test_ties_are_broken_by_lower_index(index):
    hits = index.query("c1ccccc1O", k=2)
    assert hits == [(1, 1.0), (3, 1.0)]
    assert index.query("c1ccccc1O", k=1, exclude={1}) == [(3, 1.0)]
    assert index.query("Oc1ccccc1", k=3) == index.query("c1ccccc1O", k=3)


def test_unparseable_reference_never_returned_and_bad_query(index):
    hits = index.query("CCC", k=100)
    assert len(hits) == 6 and 4 not in [i for i, _ in hits]
    sims = [s for _, s in hits]
    assert sims == sorted(sims, reverse=True)
    with pytest.raises(ValueError, match="cannot parse"):
        index.query("C1CC")
    with pytest.raises(ValueError, match="k must be"):
        index.query("CCO", k=0)
    assert index.query_many(["C1CC", "CCO"])[0] == []


def test_query_many_exclude_self_is_leave_one_out(index):
    results = index.query_many(SMILES, k=1, exclude_self=True)
    assert results[1] == [(3, 1.0)] and results[3] == [(1, 1.0)]
    assert results[4] == []
    assert all(hit[0][0] != i for i, hit in enumerate(results) if hit)
    with pytest.raises(ValueError, match="one query per reference"):
        index.query_many(["CCO"], exclude_self=True)


def test_similarities_equal_rdkit_bulk_tanimoto(index):
    fps = [morgan_fingerprint(s) or DataStructs.ExplicitBitVect(2048) for s in SMILES]
    for query in ("CCO", "c1ccccc1CO", "CC(=O)Oc1ccccc1"):
        expected = DataStructs.BulkTanimotoSimilarity(morgan_fingerprint(query), fps)
        assert index.similarities(query).tolist() == expected


def test_query_many_matches_query_across_blocks(index, monkeypatch):
    queries = ["CCO", "c1ccccc1", "CCCO", "Oc1ccccc1C", "CCN"]
    monkeypatch.setattr(FingerprintIndex, "block_size", 2)
    assert index.query_many(queries, k=3) == [index.query(q, k=3) for q in queries]


def test_save_load_round_trip(index, tmp_path):
    folder = index.save(tmp_path / "idx")
    assert sorted(p.name for p in folder.iterdir()) == ["fingerprints.npy", "index.json"]
    packed = np.load(folder / "fingerprints.npy", allow_pickle=False)
    assert packed.dtype == np.uint8 and packed.shape == (7, 256)
    loaded = FingerprintIndex.load(folder)
    assert np.array_equal(loaded.bits, index.bits)
    assert loaded.smiles == index.smiles and loaded.captions == index.captions
    assert loaded.valid.tolist() == index.valid.tolist()
    assert (loaded.radius, loaded.n_bits) == (2, 2048)
    assert loaded.query_many(SMILES, k=3) == index.query_many(SMILES, k=3)


def test_load_rejects_inconsistent_files(index, tmp_path):
    folder = index.save(tmp_path / "idx")
    np.save(folder / "fingerprints.npy", np.zeros((3, 256), dtype=np.uint8))
    with pytest.raises(ValueError, match="shape"):
        FingerprintIndex.load(folder)
    (folder / "index.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a"):
        FingerprintIndex.load(folder)


def test_retrieval_baseline_returns_nearest_caption():
    preds = retrieval_baseline(SMILES, CAPTIONS, ["CCCCCCC", "Oc1ccccc1", "CC(=O)O", "xyz"])
    assert preds[:2] == ["hexane", "phenol A"]
    assert preds[3] == ""
    with pytest.raises(ValueError, match="captions"):
        FingerprintIndex.build(["CCO"], ["a", "b"])


def test_module_docstring_names_sources():
    assert "Morgan" in retrieval.__doc__ and "ChEBI-20" in retrieval.__doc__
