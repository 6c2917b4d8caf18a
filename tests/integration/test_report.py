"""``hsanet report``: traces from a model, verdict logic, and the report built from a runs folder."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hsanet import paths
from hsanet.evaluation import report
from hsanet.featurizers import parse
from hsanet.metrics.captions import write_predictions

from conftest import small_config


def test_verdict_logic():
    holds = report.verdict(1, [0.30, 0.31, 0.32], [0.20, 0.21, 0.22])
    assert holds[0] == "holds" and holds[1] == pytest.approx(0.1) and holds[2] < 0.05
    assert report.verdict(-1, [0.30, 0.31, 0.32], [0.20, 0.21, 0.22])[0] == "does not hold"
    assert report.verdict(1, [0.30, 0.10, 0.20], [0.21, 0.19, 0.22])[0] == "cannot be told apart from seed noise"
    assert report.verdict(1, [0.3], [0.2])[0].startswith("cannot be told apart")
    assert report.verdict_mean(-1, [0.5, 0.55, 0.6], 1.0)[0] == "holds"
    assert report.verdict_mean(-1, [1.5, 0.5, 1.0], 1.0)[0] == "cannot be told apart from seed noise"


def test_collect_traces_shapes(small_model):
    mols = [parse(s) for s in ("CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1")]
    tr = report.collect_traces(small_model, mols, batch_size=2)
    L, E = small_model.config.num_levels, small_model.config.num_experts
    assert tr["atoms"].tolist() == [3, 7, 11]
    assert tr["hap_mamba"].shape == (3, L) and set(np.unique(tr["hap_mamba"])) <= {0.0, 1.0}
    assert tr["attn"].shape == (3, L, small_model.config.proj_dim) and not np.isnan(tr["attn"]).any()
    np.testing.assert_allclose(tr["saf_usage"].sum(1), 1.0, rtol=1e-5)
    assert tr["saf_source_usage"].shape == (3, L + 1, E)
    # every token picks top_k experts
    T = L * small_model.config.num_queries
    assert (tr["saf_source_usage"][:, :L].sum((1, 2)) == T * small_model.config.top_k).all()


def test_collect_traces_marks_untrained_projector(tokenizer):
    from hsanet import HSANet

    model = HSANet(small_config(variant="attn"), tokenizer)
    tr = report.collect_traces(model, [parse("CCO")])
    assert np.isnan(tr["mamba"]).all() and not np.isnan(tr["attn"]).any()
    assert (tr["hap_mamba"] == 0).all()


def _fake_run(root, variant, seed, bleu, n=6, rng=None):
    folder = root / f"{variant}-s{seed}"
    (folder / "eval").mkdir(parents=True)
    metrics = {m: bleu for m in report.METRICS} | {"n": n}
    (folder / "eval" / "metrics.json").write_text(json.dumps(metrics))
    smiles = ["CCO", "CCN", "c1ccccc1", "C" * 25, "C" * 45, "C" * 65][:n]
    refs = ["the molecule is an alcohol found in wine"] * n
    outs = ["the molecule is an alcohol found in wine" if i % 2 == 0 else "the molecule is a benzene"
            for i in range(n)]
    write_predictions(folder / "eval" / "predictions.tsv", smiles, refs, outs)
    L, E, d = 6, 4, 8
    rng = rng or np.random.default_rng(seed)
    traces = {"atoms": np.array([3, 3, 6, 25, 45, 65][:n], dtype=np.int32),
              "hap_mamba": (rng.random((n, L)) < np.linspace(0.1, 0.9, L)).astype(np.float32),
              "hap_prob": np.tile(np.linspace(0.1, 0.9, L), (n, 1)).astype(np.float32),
              "attn": rng.normal(size=(n, L, d)).astype(np.float32) if variant != "mamba" else np.full((n, L, d), np.nan, np.float32),
              "mamba": rng.normal(size=(n, L, d)).astype(np.float32) if variant != "attn" else np.full((n, L, d), np.nan, np.float32),
              "saf_usage": np.full((n, E), 0.25, np.float32),
              "saf_source_usage": np.ones((n, L + 1, E), np.float32)}
    np.savez_compressed(folder / "traces.npz", **traces)


@pytest.mark.skipif(not (paths.data_dir() / "scibert_scivocab_uncased" / "vocab.txt").is_file(),
                    reason="shared data absent: the SciBERT vocabulary scores the runs (set HSANET_DATA)")
def test_report_from_runs_folder(tmp_path, monkeypatch):
    for seed, (a, f) in enumerate(((0.20, 0.30), (0.21, 0.31), (0.19, 0.32))):
        _fake_run(tmp_path / "runs", "attn", seed, a)
        _fake_run(tmp_path / "runs", "full", seed, f)
    (tmp_path / "runs" / "notarun").mkdir()
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({m: 0.25 for m in report.METRICS}))
    out = tmp_path / "docs" / "RESULTS.md"
    res = report.build_report(tmp_path / "runs", out, baseline=baseline, figures=False)
    text = out.read_text()
    for heading in ("## Summary", "## 1. Captions", "## 2. Dispersion", "## 3. HAP", "## 4. BLEU-4 by molecule size", "## 5. SAF"):
        assert heading in text
    assert res["seeds"] == {"attn": [0, 1, 2], "full": [0, 1, 2]}
    full_vs_attn = [c for c in res["claims"] if c["claim"].startswith("Table 3: full vs attn-only, BLEU4")]
    assert full_vs_attn[0]["verdict"] == "holds" and full_vs_attn[0]["ours"] == pytest.approx(11.0)
    assert res["variants"]["full"]["beats_retrieval_on"] == list(report.METRICS)
    assert res["variants"]["attn"]["beats_retrieval_on"] == []
    assert "20.0 ± 1.0" in text and "31.0 ± 1.0" in text
    assert res["bins"]["counts"] == [3, 1, 1, 1]
    assert res["saf"]["balance_entropy"] == pytest.approx([1.0, 1.0, 1.0])
    assert (tmp_path / "docs" / "results" / "results.json").is_file()


def test_report_without_runs_is_a_clear_error(tmp_path, capsys):
    from hsanet.cli import main

    assert main(["report", "--runs", str(tmp_path), "--out", str(tmp_path / "R.md"), "--no-figures"]) == 2
    assert "no evaluated runs" in capsys.readouterr().err
