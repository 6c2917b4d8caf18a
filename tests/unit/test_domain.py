"""Applicability domain (hsanet/inference/domain.py): per property dataset the training molecules and
a threshold chosen on validation molecules; the trace says how close a molecule is, and warns."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hsanet import HSANet
from hsanet.inference.domain import Domain, nearest_similarity, threshold
from hsanet.retrieval import FingerprintIndex

from conftest import small_config

TRAIN = ["CCO", "CCCO", "CCCCO", "CC(C)O", "OCCO", "CC(=O)O", "CCC(=O)O", "c1ccccc1O"]
VALID = ["CCCCCO", "CC(O)CO", "CCCC(=O)O", "Cc1ccccc1O"]


def test_threshold_is_the_validation_percentile():
    index = FingerprintIndex.build(TRAIN, [""] * len(TRAIN))
    sims = nearest_similarity(index, VALID)
    assert sims.shape == (4,) and ((sims > 0) & (sims <= 1)).all()
    assert threshold(index, VALID, 5.0) == pytest.approx(np.percentile(sims, 5.0))
    assert nearest_similarity(index, ["CCO"])[0] == pytest.approx(1.0)


def test_trace_reports_similarity_threshold_and_warning(tokenizer, tmp_path):
    model = HSANet(small_config(property_tasks={"BBBP/p_np": "classification"}), tokenizer).eval()
    model.domain = Domain()
    model.domain.add("BBBP", TRAIN, VALID)
    model.domain.caption_threshold = 0.5
    inside, outside = model.analyze(["CCCO", "FC(F)(F)c1nc2ccccc2[nH]1"], caption=False)
    t = model.domain.thresholds["BBBP"]
    assert inside.property_domain["BBBP/p_np"] == pytest.approx(1.0) and inside.property_domain_threshold["BBBP/p_np"] == t
    assert inside.outside_domain() == {"BBBP/p_np": False}
    assert outside.property_domain["BBBP/p_np"] < t and outside.outside_domain()["BBBP/p_np"] is True
    domain = outside.to_json()["domain"]
    assert domain["outside"]["BBBP/p_np"] is True and domain["caption_threshold"] == 0.5
    # stored beside the weights, no pickle, and loaded back
    model.save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "domain" / "domain.json").read_text())
    assert meta["datasets"] == ["BBBP"] and meta["percentile"] == 5.0
    loaded = HSANet.from_pretrained(tmp_path / "m", device="cpu")
    assert loaded.domain.thresholds == pytest.approx(model.domain.thresholds)
    assert loaded.analyze("CCCO", caption=False).property_domain == pytest.approx(inside.property_domain)
    # saving a model without domain data removes a stale folder
    loaded.domain = None
    loaded.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m" / "domain").exists()


def test_no_domain_data_no_signal(small_model):
    tr = small_model.analyze("CCO", caption=False)
    assert tr.property_domain == {} and tr.outside_domain() == {}
