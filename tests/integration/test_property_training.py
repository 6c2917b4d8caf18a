"""Property heads: the multi-level read-out, linear heads fitted by scikit-learn, and a tiny run of
``hsanet train --task property`` that saves, reloads and predicts."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hsanet import HSANet
from hsanet.featurizers import featurize, parse
from hsanet.paths import data_dir
from hsanet.training.property import _fit_linear_heads

from conftest import ASPIRIN, MOLECULES, small_config


def test_levels_readout_is_pooled_gin_levels(tokenizer):
    torch.manual_seed(0)
    model = HSANet(small_config(property_tasks={"bbbp": "classification"}, property_readout="levels",
                                property_hidden=0), tokenizer).eval()
    mols = [parse(s) for s in MOLECULES[:3]]
    out = model.encode(featurize(mols))
    feats = model.property_features(out["levels"], out["batch"].batch, out["embedding"])
    assert feats.shape == (3, model.property_dim) == (3, 2 * model.config.num_levels * model.config.hidden)
    n0 = mols[0].num_atoms
    first = torch.cat([h[:n0].mean(0) for h in out["levels"]] + [h[:n0].max(0).values for h in out["levels"]])
    torch.testing.assert_close(feats[0], first)
    p = model.analyze(ASPIRIN, caption=False).properties["bbbp"]
    assert 0.0 <= p <= 1.0


def test_linear_heads_match_scikit_learn_on_standardized_inputs():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5)) * [1, 10, 100, 0.1, 1] + [0, 5, -50, 1, 0]
    logits = X[:, 0] - 0.1 * X[:, 1] + 0.01 * X[:, 2]
    y = (logits + rng.normal(scale=0.5, size=300) > np.median(logits)).astype(np.float32)
    Y = np.stack([y, np.where(np.arange(300) % 3 == 0, np.nan, 1 - y)], 1).astype(np.float32)
    heads, val = _fit_linear_heads(X[:200].astype(np.float32), Y[:200], X[200:].astype(np.float32), Y[200:],
                                   {"a": "classification", "b": "classification"})
    assert val > 0.8
    pred = heads.predict(torch.tensor(X[200:], dtype=torch.float)).detach().numpy()
    # the folded layer reproduces a logistic regression fitted on standardized inputs
    mu, sd = X[:200].astype(np.float32).mean(0), X[:200].astype(np.float32).std(0) + 1e-6
    C = None
    for c in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0):
        clf = LogisticRegression(C=c, max_iter=5000).fit((X[:200] - mu) / sd, y[:200])
        if np.allclose(clf.predict_proba((X[200:] - mu) / sd)[:, 1], pred[:, 0], atol=1e-4):
            C = c
    assert C is not None
    # one-class task: the prevalence, whatever the input
    heads, _ = _fit_linear_heads(X[:50].astype(np.float32), np.ones((50, 1), np.float32), X[50:60].astype(np.float32),
                                 np.ones((10, 1), np.float32), {"c": "classification"})
    assert np.allclose(heads.predict(torch.tensor(X[60:70], dtype=torch.float)).detach().numpy(), 0.999, atol=1e-3)


@pytest.mark.skipif(not (data_dir() / "moleculenet" / "BBBP.csv").exists(), reason="MoleculeNet BBBP not in the shared data")
def test_train_property_tiny_run(tiny_checkpoint, tmp_path):
    from hsanet.cli import main

    out = tmp_path / "prop"
    assert main(["train", "--task", "property", "--init", str(tiny_checkpoint), "--datasets", "BBBP",
                 "--seeds", "2", "--out", str(out), "--threads", "1"]) == 0
    model = HSANet.from_pretrained(out, device="cpu")
    assert model.config.property_readout == "levels" and model.config.property_hidden == 0
    res = model.meta["properties"]["results"]["BBBP"]
    assert 0.0 <= res["mean"] <= 1.0 and res["std"] == 0.0      # a convex fit: the seeds agree
    p = model.analyze(ASPIRIN, caption=False).properties
    assert set(p) == {"BBBP/p_np"} and 0.0 <= p["BBBP/p_np"] <= 1.0


@pytest.mark.skipif(not (data_dir() / "moleculenet" / "BBBP.csv").exists(), reason="MoleculeNet BBBP not in the shared data")
def test_train_property_over_split_seeds(tiny_checkpoint, tmp_path, capsys):
    from hsanet.cli import main

    out = tmp_path / "prop"
    assert main(["train", "--task", "property", "--init", str(tiny_checkpoint), "--datasets", "BBBP",
                 "--seeds", "1", "--split-seeds", "0,1", "--out", str(out), "--threads", "1"]) == 0
    props = HSANet.from_pretrained(out, device="cpu").meta["properties"]
    res = props["results"]["BBBP"]
    assert props["split_seeds"] == [0, 1] and len(res["per_seed"]) == 2
    assert res["per_seed"][0] != res["per_seed"][1]          # two different scaffold splits
    assert abs(res["mean"] - sum(res["per_seed"]) / 2) < 1e-12
    capsys.readouterr()
    assert main(["train", "--task", "property", "--init", str(tiny_checkpoint), "--split-seeds", "0,x",
                 "--out", str(out)]) == 2
    assert "--split-seeds" in capsys.readouterr().err
