"""Tests of the reference set (hsanet/reference/): build, save without pickle, load, place, nearest, CLI.

One build (module-scoped) from the small untrained model on 60 molecules, captions off. UMAP's numba
JIT makes the first fit slow: the tests that build are marked ``slow`` (GUIDE section 4) and take about
60 s of CPU on the 2-core machine (1-3 minutes of wall time while a training runs), almost all of it the
first UMAP fit. ``-m "not slow"`` keeps the numpy-only tests.
"""
from __future__ import annotations

import json
import time
import zipfile

import numpy as np
import pytest

from hsanet.cli.reference import register
from hsanet.reference.build import build_reference
from hsanet.reference.store import (
    FILES,
    ReferenceSet,
    cluster_column,
    membership_weights,
    stage_names,
    stage_vector,
)

SMILES = [
    "C", "CC", "CCC", "CCCC", "CCCCC", "CCCCCC", "CCCCCCCC", "CCCCCCCCCCCC", "CO", "CCO",
    "CCCO", "CCCCO", "CC(C)O", "CC(C)(C)O", "OCCO", "OCC(O)CO", "C=O", "CC=O", "CC(C)=O", "CCC(=O)C",
    "C=C", "C#C", "C=CC=C", "CC(=O)O", "CCC(=O)O", "CCCC(=O)O", "OC(=O)C(=O)O", "OC(=O)CC(=O)O", "CN", "CCN",
    "CNC", "CN(C)C", "NCCN", "NCC(=O)O", "CC(N)C(=O)O", "CC(C)C(N)C(=O)O", "c1ccccc1", "Cc1ccccc1", "Oc1ccccc1",
    "Nc1ccccc1", "OC(=O)c1ccccc1", "CC(=O)Oc1ccccc1C(=O)O", "c1ccc2ccccc2c1", "c1ccncc1", "c1ccoc1", "c1ccsc1",
    "c1cc[nH]c1", "C1CCCCC1", "C1CCOC1", "C1CCNCC1", "ClC(Cl)Cl", "FC(F)(F)F", "BrCCBr", "CS(C)=O", "CSC",
    "NC(N)=O", "NC(=O)c1ccccc1", "CC#N", "O=C=O", "CCOC(C)=O",
]
assert len(set(SMILES)) == len(SMILES) == 60


@pytest.fixture(scope="module")
def built(small_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "ref"
    calls = []
    t0 = time.perf_counter()
    ref = build_reference(small_model, SMILES + ["not a smiles", "OCC"], out, caption=False, batch_size=16,
                          cids=[str(i) for i in range(62)], descriptions=[f"description {i}" for i in range(62)],
                          progress=lambda done, total: calls.append((done, total)), checkpoint="tiny",
                          command="pytest")
    return ref, out, calls, time.perf_counter() - t0


@pytest.mark.slow
def test_build_files_and_no_pickle(built):
    ref, out, calls, seconds = built
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    for p in out.glob("*.npz"):
        with np.load(p, allow_pickle=False) as z:            # raises if anything needs pickle
            for k in z.files:
                assert z[k].dtype != object
        with zipfile.ZipFile(p) as zf:
            assert all(n.endswith(".npy") for n in zf.namelist())
    for p in out.glob("*.json"):
        json.loads(p.read_text())
    assert sum(p.stat().st_size for p in out.iterdir()) < 1_000_000
    assert calls[-1] == (60, 60) and len(calls) == 4                  # 60 molecules in batches of 16
    print(f"build of 60 molecules: {seconds:.1f} s")


@pytest.mark.slow
def test_load_shapes_and_keys(built, small_model):
    ref, out, _, _ = built
    again = ReferenceSet.load(out)
    L = small_model.config.num_levels
    assert again.stages == stage_names(L) == ["level 0", "level 1", "level 2", "after HAP", "after SAF"]
    assert len(again) == 60
    t = again.table
    for col in ("smiles", "cid", "caption", "description", "heavy_atoms", "hap_pattern"):
        assert col in t.columns
    assert t["heavy_atoms"].tolist()[:3] == [1, 2, 3]
    assert t["cid"].tolist()[:2] == ["0", "1"] and t["description"][1] == "description 1"
    assert all(len(p) == L and set(p) <= {"A", "M"} for p in t["hap_pattern"])
    # the bad SMILES and the duplicate of ethanol (OCC) are skipped, and said so
    reasons = [s["reason"] for s in again.meta["skipped"]]
    assert len(reasons) == 2 and "duplicate canonical SMILES" in reasons
    assert again.meta["n"] == 60 and again.meta["checkpoint"] == "tiny" and again.meta["command"] == "pytest"
    for s in again.stages:
        c = again.coords(s)
        assert c.shape == (60, 2) and np.isfinite(c).all()
        labels = t[cluster_column(s)]
        assert labels.min() == 0 and labels.max() == 7
        counts = np.bincount(labels)
        assert (np.diff(counts) <= 0).all()                        # cluster 0 is the largest
    # aggregates
    metrics = set(again.level_stats["metric"])
    assert {"mad", "dirichlet_energy", "effective_rank", "mean_cosine"} <= metrics
    band = again.band("mad")
    assert band["level"].tolist() == list(range(L))
    assert (band["q25"] <= band["median"]).all() and (band["median"] <= band["q75"]).all()
    assert again.mamba_share.shape == (L,) and ((0 <= again.mamba_share) & (again.mamba_share <= 1)).all()
    assert again.mean_p_mamba.shape == (L,)
    eu = again.expert_usage
    assert eu["num_experts"] == small_model.config.num_experts and eu["top_k"] == small_model.config.top_k
    assert np.isclose(sum(eu["overall"]), 1.0)
    assert set(eu["by_source"]) == {f"level {l}" for l in range(L)} | {"motif"}
    assert eu["assignments"] == 60 * len(small_model.token_sources) * small_model.config.top_k


@pytest.mark.slow
def test_stored_embeddings_match_trace(built, small_model):
    ref, _, _, _ = built
    tr = small_model.analyze(SMILES[41], caption=False, metrics=False)
    for s in ref.stages:
        row = ref.nearest(tr, s, k=1)
        assert row["smiles"].iloc[0] == tr.smiles
        assert row["similarity"].iloc[0] == pytest.approx(1.0, abs=2e-3)
    assert stage_vector(tr, "after SAF").shape == (small_model.config.proj_dim,)
    assert stage_vector(tr, "level 0").shape == (small_model.config.hidden,)
    with pytest.raises(ValueError):
        stage_vector(tr, "level 9")


@pytest.mark.slow
def test_place_own_point_and_new_molecule(built, small_model):
    ref, _, _, _ = built
    traces = small_model.analyze(["CC(=O)Oc1ccccc1C(=O)O", "CCCCCCCCCCCCCCCC(=O)OCC(O)CO"], caption=False)
    aspirin, new = traces
    row = int(np.flatnonzero(ref.table["smiles"] == aspirin.smiles)[0])
    for s in ref.stages:
        xmin, xmax, ymin, ymax = ref.bounds(s)
        pad = 0.05 * max(xmax - xmin, ymax - ymin)
        assert ref.place(aspirin, s) == pytest.approx(tuple(ref.coords(s)[row]))
        # without the SMILES shortcut it is still a weighted mean of neighbours: finite, inside the map
        for tr in (aspirin, new):
            x, y = ref.place(tr, s, k=10, exact=False)
            assert np.isfinite([x, y]).all()
            assert xmin - pad <= x <= xmax + pad and ymin - pad <= y <= ymax + pad
        # k=1: exactly on its nearest neighbour, which is itself
        assert ref.place(aspirin, s, k=1, exact=False) == pytest.approx(tuple(ref.coords(s)[row]), abs=1e-5)
    # a raw vector works too, and a wrong-width one is refused with a clear message
    assert np.isfinite(ref.place(stage_vector(new, "after SAF"), "after SAF")).all()
    with pytest.raises(ValueError, match="different model"):
        ref.place(np.zeros(7, dtype=np.float32), "after SAF")
    with pytest.raises(ValueError, match="unknown stage"):
        ref.place(new, "after everything")


@pytest.mark.slow
def test_nearest_and_speed(built, small_model):
    ref, _, _, _ = built
    tr = small_model.analyze("CCCO", caption=False)
    near = ref.nearest(tr, "after SAF", k=5)
    assert len(near) == 5 and near["smiles"].iloc[0] == "CCCO"
    assert near["similarity"].iloc[0] == pytest.approx(1.0, abs=2e-3)
    assert (np.diff(near["similarity"].to_numpy()) <= 1e-9).all()
    assert {"caption", "description", "cid"} <= set(near.columns)
    times = []
    for s in ref.stages:
        ref.place(tr, s, exact=False)                               # warm the float32 copy
        for _ in range(3):
            t0 = time.perf_counter()
            ref.place(tr, s, exact=False)
            ref.nearest(tr, s)
            times.append(time.perf_counter() - t0)
    assert np.median(times) < 0.05          # about 1 ms here; the median ignores a busy machine's stalls


def test_nearest_is_itself_centred_clipped_with_tanimoto(built, small_model):
    """A molecule of the set is its own nearest neighbour (similarity 1, Tanimoto 1); similarities are
    centred cosines within [-1, 1], not the raw ones that the shared offset pushes towards 1."""
    ref, _, _, _ = built
    for smiles in ("CCCO", "OCC(O)CO", "CC(C)=O"):
        tr = small_model.analyze(smiles, caption=False)
        for stage in ref.stages:
            near = ref.nearest(tr, stage, k=len(ref))
            assert near["smiles"].iloc[0] == smiles and near["similarity"].iloc[0] == 1.0
            assert near["tanimoto"].iloc[0] == pytest.approx(1.0)
            sims = near["similarity"].to_numpy()
            assert (sims <= 1.0).all() and (sims >= -1.0).all() and (np.diff(sims) <= 1e-9).all()
            assert ((near["tanimoto"] >= 0) & (near["tanimoto"] <= 1)).all()
    raw = ref._emb["after SAF"].astype(np.float32)
    raw_cos = raw @ raw.T
    centred = ref._centred_rows("after SAF")[1]
    spread = lambda m: float(np.std(m[np.triu_indices(len(m), 1)]))
    assert spread(centred @ centred.T) >= spread(raw_cos)      # centring spreads the similarities out


def test_membership_weights():
    w = membership_weights(np.array([0.0, 0.1, 0.2, 0.4]))
    assert w[0] == pytest.approx(1.0) and w.sum() == pytest.approx(2.0, abs=1e-4)     # log2(4)
    assert (np.diff(w) < 0).all()
    assert membership_weights(np.array([0.3])).tolist() == [1.0]
    w = membership_weights(np.array([0.2, 0.2, 0.2]))                                   # ties: equal weights
    assert np.allclose(w, w[0])


def test_load_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="hsanet reference build"):
        ReferenceSet.load(tmp_path)


@pytest.mark.slow
def test_cli_build_smiles_file(capsys, tiny_checkpoint, tmp_path, monkeypatch):
    import argparse

    # store the 32-wide GIN levels reduced to 20 dims, to exercise the truncated-SVD path
    monkeypatch.setattr("hsanet.reference.build.MAX_STORED_DIM", 20)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    smi = tmp_path / "mols.smi"
    smi.write_text("\n".join(f"{s} id{i}" for i, s in enumerate(SMILES[:30])) + "\n")
    out = tmp_path / "ref"
    args = parser.parse_args(["reference", "build", "--checkpoint", str(tiny_checkpoint), "--smiles-file", str(smi),
                              "--out", str(out), "--no-caption", "--batch-size", "32", "--limit", "25"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "25 molecules" in text and "saved to" in text
    ref = ReferenceSet.load(out)
    assert len(ref) == 25 and ref.table["cid"][0] == "id0"
    assert ref.meta["command"].startswith("hsanet reference build --checkpoint")
    assert "--no-caption" in ref.meta["command"]
    assert ref.meta["stored_dim"]["level 0"] == 20 and ref.meta["stored_dim"]["after SAF"] == 16
    assert 0.5 < ref.meta["svd_energy"]["level 1"] <= 1.0
    with np.load(out / "projections.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["level_0", "level_1", "level_2"] and z["level_0"].shape == (20, 32)
    from hsanet import HSANet

    model = HSANet.from_pretrained(tiny_checkpoint, device="cpu")
    tr = model.analyze(SMILES[10], caption=False, metrics=False)
    for s in ref.stages:
        near = ref.nearest(tr, s, k=3)
        assert near["smiles"].iloc[0] == tr.smiles and near["similarity"].iloc[0] > 0.99


def test_mamba_trend_says_what_the_shares_do(built):
    from dataclasses import replace

    def trend(share):
        return replace(built[0], mamba_share=np.array(share)).mamba_trend()

    t = trend([0.9, 0.6, 0.3, 0.1])
    assert t["direction"] == "falls" and t["first"] == pytest.approx(0.9) and t["rho"] == pytest.approx(-1.0)
    assert trend([0.0, 0.2, 0.5, 0.9])["direction"] == "rises"
    assert trend([0.5, 0.52, 0.49, 0.51])["direction"] == "stays flat"
