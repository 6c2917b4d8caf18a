"""MolT5 caption protocol: hand-checked scores and the published ChEBI-20 baselines."""
import math
from pathlib import Path

import pytest

from hsanet.metrics import captions, wordnet
from hsanet.paths import data_dir

DATA = data_dir()
VOCAB = DATA / captions.VOCAB_RELATIVE
BASELINES = DATA / "chebi20" / "baselines"

needs_vocab = pytest.mark.skipif(
    not VOCAB.is_file(), reason=f"shared data absent: {VOCAB} (set HSANET_DATA or --data-dir)"
)


@pytest.fixture(scope="module")
def wordnet_ready():
    try:
        wordnet.ensure_wordnet(quiet=True)
    except RuntimeError as exc:
        pytest.skip(f"METEOR needs WordNet: {exc}")


# ----------------------------------------------------------------------------- WordNet setup
def test_build_wordnet_copies_and_writes_lexnames(tmp_path):
    if not (wordnet.DEBIAN_WORDNET / "data.noun").is_file():
        pytest.skip("Debian's wordnet-base is not installed")
    target = wordnet.build_wordnet(tmp_path)
    assert target == tmp_path / "corpora" / "wordnet"
    for name in wordnet.WORDNET_FILES + ("lexnames",):
        path = target / name
        assert path.is_file() and not path.is_symlink()
    lines = (target / "lexnames").read_text().splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3" and lines[3] == "03\tnoun.Tops\t1" and lines[44] == "44\tadj.ppl\t3"


def test_wordnet_missing_names_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(wordnet, "DEBIAN_WORDNET", tmp_path / "absent")
    monkeypatch.setenv("HSANET_NLTK_DATA", str(tmp_path / "nltk_data"))
    with pytest.raises(RuntimeError, match="apt-get install wordnet-base wordnet-sense-index"):
        wordnet.build_wordnet(tmp_path / "nltk_data", tmp_path / "absent")
    assert wordnet.main(["--quiet"]) == 1
    assert "./run setup" in capsys.readouterr().err


def test_wordnet_cli_succeeds(wordnet_ready):
    assert wordnet.main(["--quiet"]) == 0


# ----------------------------------------------------------------------------- small cases
@needs_vocab
def test_scibert_pieces():
    assert captions.tokenize(["The molecule is an acid."]) == [["the", "molecule", "is", "an", "acid", "."]]
    pieces = captions.tokenize(["word " * 600])[0]
    assert len(pieces) == 512


@needs_vocab
def test_identical_captions_score_one(wordnet_ready):
    refs = ["The molecule is a monocarboxylic acid anion.", "It is a conjugate base of ethanol."]
    m = captions.caption_metrics(refs, list(refs))
    assert m["n"] == 2
    for key in ("bleu2", "bleu4", "rouge1", "rouge2", "rougeL"):
        assert m[key] == pytest.approx(1.0)
    assert 0.99 < m["meteor"] < 1.0  # METEOR's fragmentation penalty 0.5 / m^3 keeps it below 1


@needs_vocab
def test_hand_checked_case(wordnet_ready):
    refs = ["the molecule is an acid", "it is a conjugate base of water"]
    outs = ["the molecule is a base", "it is a conjugate base of water"]
    assert captions.tokenize(refs + outs) == [r.split() for r in refs + outs]
    m = captions.caption_metrics(refs, outs)
    # clipped n-gram matches / candidate n-grams, pooled: 1-gram 10/12, 2-gram 8/10,
    # 3-gram 6/8, 4-gram 4/6; candidate and reference lengths equal, so no brevity penalty
    assert m["bleu2"] == pytest.approx(math.sqrt(10 / 12 * 8 / 10))
    assert m["bleu4"] == pytest.approx((10 / 12 * 8 / 10 * 6 / 8 * 4 / 6) ** 0.25)
    # pair 1: 3 of 5 unigrams, 2 of 4 bigrams, LCS 3; pair 2 identical
    assert m["rouge1"] == pytest.approx((0.6 + 1) / 2)
    assert m["rouge2"] == pytest.approx((0.5 + 1) / 2)
    assert m["rougeL"] == pytest.approx((0.6 + 1) / 2)
    # METEOR: pair 1 matches the/molecule/is in one chunk, P = R = 3/5, penalty 0.5 (1/3)^3;
    # pair 2: 7 matches in one chunk, penalty 0.5 (1/7)^3
    meteor1 = 0.6 * (1 - 0.5 / 27)
    meteor2 = 1 - 0.5 / 343
    assert m["meteor"] == pytest.approx((meteor1 + meteor2) / 2)


@needs_vocab
def test_sentence_scores(wordnet_ready):
    s = captions.sentence_scores("The molecule is an acid.", "The molecule is an acid.")
    assert s["bleu4"] == pytest.approx(1.0) and s["meteor"] > 0.99
    s = captions.sentence_scores("The molecule is an acid.", "Benzene.")
    assert 0 <= s["bleu4"] < 0.2 and 0 <= s["meteor"] < 0.2


def test_predictions_round_trip(tmp_path):
    path = tmp_path / "pred.txt"
    smiles = ["CCO", 'C/C=C\\C']
    refs = ['The molecule is "ethanol".', "A ref\twith a tab"]
    outs = ["[CLS] An output.", 'It is a "quoted" one.']
    captions.write_predictions(path, smiles, refs, outs)
    s, r, o = captions.read_predictions(path)
    assert s == smiles
    assert r == ['The molecule is "ethanol".', "A ref with a tab"]
    assert o == ["An output.", 'It is a "quoted" one.']  # MolT5 strips a leading "[CLS] "


# ----------------------------------------------------------------------------- MolT5 baselines
# MolT5 paper (Edwards et al., EMNLP 2022), smiles2caption on ChEBI-20 test:
# BLEU-2, BLEU-4, ROUGE-1, ROUGE-2, ROUGE-L, METEOR
PAPER = {
    "t5-v1_1-small": (0.501, 0.415, 0.602, 0.446, 0.545, 0.532),
    "t5-v1_1-base": (0.511, 0.423, 0.607, 0.451, 0.550, 0.539),
    "t5-v1_1-large": (0.558, 0.467, 0.630, 0.478, 0.569, 0.586),
    "molt5-small": (0.519, 0.436, 0.620, 0.469, 0.563, 0.551),
    "molt5-base": (0.540, 0.457, 0.634, 0.485, 0.578, 0.569),
    "molt5-large": (0.594, 0.508, 0.654, 0.510, 0.594, 0.614),
}
KEYS = ("bleu2", "bleu4", "rouge1", "rouge2", "rougeL", "meteor")
TOLERANCE = {"bleu2": 0.015, "bleu4": 0.015, "meteor": 0.015, "rouge1": 0.003, "rouge2": 0.003, "rougeL": 0.003}


def _baseline(name) -> Path:
    path = BASELINES / f"{name}-smiles2caption.txt"
    if not path.is_file() or not VOCAB.is_file():
        pytest.skip(f"shared data absent: {path} or {VOCAB} (set HSANET_DATA or --data-dir)")
    return path


def test_baseline_files_parse():
    for name in PAPER:
        smiles, refs, outs = captions.read_predictions(_baseline(name))
        assert len(smiles) == len(refs) == len(outs) == 3300
        assert all(outs) and all(refs)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PAPER))
def test_rescoring_matches_molt5_paper(name, wordnet_ready):
    scores = captions.score_predictions(_baseline(name))
    assert scores["n"] == 3300
    misses = {
        k: (round(scores[k], 4), p) for k, p in zip(KEYS, PAPER[name]) if abs(scores[k] - p) > TOLERANCE[k]
    }
    assert not misses, f"{name}: (ours, paper) outside tolerance: {misses}"


# ----------------------------------------------------------------------------- head to head
@needs_vocab
def test_head_to_head_counts_wins_ties_losses_by_similarity():
    ref = "The molecule is a monocarboxylic acid that is acetic acid substituted by a phenyl group."
    good = ref
    bad = "The molecule is a steroid."
    refs = [ref] * 4
    model = [good, bad, good, good]
    base = [bad, good, good, bad]
    sims = [0.9, 0.3, 0.5, float("nan")]           # NaN: the molecule did not parse -> lowest bin
    out = captions.head_to_head(refs, model, base, sims)
    o = out["overall"]
    assert o["n"] == 4 and (o["win"], o["tie"], o["loss"]) == (0.5, 0.25, 0.25)
    assert o["model_bleu4"] > o["baseline_bleu4"]
    by = {tuple(b["similarity"]): b for b in out["bins"]}
    assert by[(0.0, 0.4)]["n"] == 2 and by[(0.0, 0.4)]["win"] == 0.5 and by[(0.0, 0.4)]["loss"] == 0.5
    assert by[(0.4, 0.6)]["tie"] == 1.0
    assert by[(0.6, 0.8)] == {"similarity": [0.6, 0.8], "n": 0}
    assert by[(0.8, 1.0)]["win"] == 1.0
    with pytest.raises(ValueError):
        captions.head_to_head(refs, model[:3], base, sims)
