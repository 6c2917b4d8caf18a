"""Consensus re-ranking (hsanet/lm/consensus.py): agreement, the no-model baseline, the model's rerank
score with the consensus and similarity terms, and the weight grid of hsanet/evaluation/rerank.py."""
from __future__ import annotations

import math

import numpy as np
import pytest

from hsanet.evaluation import rerank as tuning
from hsanet.featurizers import featurize, parse
from hsanet.lm.consensus import agreement, combined_scores, consensus, own_voters, word_tokens
from hsanet.retrieval import retrieval_baseline

from test_copy import _model

ANION = "the molecule is a carboxylic acid anion that is the conjugate base of acetic acid."
ANION_2 = "the molecule is a carboxylic acid anion that is the conjugate base of propionic acid."
ODD = "a steroid glycoside found in plants."


def test_word_tokens_lower_case_words_and_punctuation():
    assert word_tokens("An Alpha-amino acid.") == ["an", "alpha", "-", "amino", "acid", "."]


def test_a_caption_does_not_vote_for_itself_but_duplicates_do():
    voters = [ANION, ANION, ODD]
    a = agreement(voters, voters)
    assert np.isnan(np.diag(a)).all()
    assert a[0, 1] == pytest.approx(1.0) and a[1, 0] == pytest.approx(1.0)
    assert a[2, 0] < 0.2
    # a generated caption that copies a neighbour's is that neighbour: it gets the others' votes only
    assert own_voters(["x", ODD], voters) == [None, 2]


def test_consensus_is_the_similarity_weighted_mean_of_the_other_votes():
    voters = [ANION, ANION_2, ODD]
    w = [0.9, 0.5, 0.1]
    a = agreement(voters, voters)
    got = consensus(voters, voters, w)
    assert got[0] == pytest.approx((0.5 * a[0, 1] + 0.1 * a[0, 2]) / 0.6)
    assert got[2] == pytest.approx((0.9 * a[2, 0] + 0.5 * a[2, 1]) / 1.4)
    assert got[0] > got[2]
    assert consensus(["only"], ["only"], [1.0]).tolist() == [0.0]          # nobody left to vote


def test_baseline_consensus_outvotes_a_lone_top_neighbour_unless_similarity_dominates():
    pool = ["CCO", "CCCO", "CCCCO", "c1ccccc1"]
    captions = [ODD, ANION, ANION_2, "benzene"]
    top1 = retrieval_baseline(pool, captions, ["CCO"])
    assert top1 == [ODD]
    assert retrieval_baseline(pool, captions, ["CCO"], consensus=3, own_similarity=8.0) == [ODD]
    voted = retrieval_baseline(pool, captions, ["CCO"], consensus=3, own_similarity=0.0)
    assert voted[0] in (ANION, ANION_2)
    assert retrieval_baseline(pool, captions, ["not a molecule"], consensus=3) == [""]


def test_rerank_consensus_changes_the_pick_and_scores_add_up(tokenizer):
    model = _model(tokenizer).eval()
    mol = parse("CC(=O)O")
    fused = model.encode(featurize([mol]))["fused"]
    prompt = model.decoder.prompt_ids(mol.smiles, [ANION])
    pair = [ANION, ODD]
    (_, ll), = model.rerank(fused, [prompt], [["g"] + pair])
    likely, unlikely = (ANION, ODD) if ll[1] >= ll[2] else (ODD, ANION)
    # the less likely caption is the one two neighbours share: consensus prefers it
    cands = ["generated text", likely, unlikely, unlikely]
    sims = [None, 0.8, 0.6, 0.6]
    cfg = model.config
    try:
        cfg.rerank_likelihood, cfg.rerank_consensus, cfg.rerank_similarity = 1.0, 0.0, 0.0
        (best_ll, plain), = model.rerank(fused, [prompt], [cands], [sims])
        assert best_ll != 2 and plain == pytest.approx(model.rerank(fused, [prompt], [cands])[0][1])
        cfg.rerank_likelihood, cfg.rerank_consensus = 0.0, 1.0
        (best_c, _), = model.rerank(fused, [prompt], [cands], [sims])
        assert best_c == 2                                # the first of the shared captions
        cfg.rerank_likelihood, cfg.rerank_consensus, cfg.rerank_similarity = 1.0, 2.0, 3.0
        (_, mixed), = model.rerank(fused, [prompt], [cands], [sims])
        votes = consensus(cands, cands[1:], sims[1:], [None, 0, 1, 2])
        expect = combined_scores(plain, votes, [0.0, 0.8, 0.6, 0.6], 1.0, 2.0, 3.0)
        assert mixed == pytest.approx(expect.tolist())
        # decoding uses it: every pick is a candidate, the sources say where it came from
        captions, sources, _ = model.decode(fused, [mol], max_new_tokens=8, rerank=True)
        assert sources[0] == "generated" or sources[0].startswith("neighbour")
    finally:
        cfg.rerank_likelihood, cfg.rerank_consensus, cfg.rerank_similarity = 1.0, 0.0, 0.0


def test_grid_picks_follow_the_model_rerank(tokenizer):
    """The tuner's offline picks are what the model's rerank returns with the same weights."""
    model = _model(tokenizer).eval()
    mols = [parse(s) for s in ("CC(=O)O", "CCO", "c1ccccc1O")]
    rows = tuning.collect(model, [m.smiles for m in mols], ["r1", "r2", "r3"], neighbours=3)
    assert all(len(r["candidates"]) == len(r["loglik"]) == len(r["similarities"]) for r in rows)
    agree = tuning._agreements(rows)
    cfg = model.config
    try:
        for ll, c, s in ((1.0, 0.0, 0.0), (0.0, 1.0, 2.0), (1.0, 4.0, 1.0)):
            cfg.rerank_likelihood, cfg.rerank_consensus, cfg.rerank_similarity = ll, c, s
            offline = tuning.picks(rows, agree, 3, ll, c, s)
            fused = model.encode(featurize(mols))["fused"]
            k = cfg.retrieval_k
            hits = model.references([m.smiles for m in mols], k=3)
            prompts = [model.decoder.prompt_ids(m.smiles, [n.caption for n in h[:k]]) for m, h in zip(mols, hits)]
            online = model.rerank(fused, prompts, [r["candidates"] for r in rows], [r["similarities"] for r in rows])
            assert offline == [r["candidates"][j] for r, (j, _) in zip(rows, online)]
    finally:
        cfg.rerank_likelihood, cfg.rerank_consensus, cfg.rerank_similarity = 1.0, 0.0, 0.0
    assert not math.isnan(sum(sum(r["loglik"]) for r in rows))


def test_config_rejects_negative_or_all_zero_rerank_weights():
    from hsanet.config import ConfigError, HSANetConfig

    with pytest.raises(ConfigError, match="rerank_likelihood"):
        HSANetConfig(rerank_consensus=-1.0)
    with pytest.raises(ConfigError, match="not all 0"):
        HSANetConfig(rerank_likelihood=0.0)
