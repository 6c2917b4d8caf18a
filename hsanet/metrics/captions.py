"""Caption metrics of the MolT5 smiles2caption protocol (Edwards et al., EMNLP 2022).

Follows ``evaluation/text_translation_metrics.py`` of ``blender-nlp/MolT5``:

* captions are split into SciBERT uncased word-pieces (``scibert_scivocab_uncased/vocab.txt``),
  at most 512 pieces, with no [CLS]/[SEP]/[PAD];
* BLEU-2 and BLEU-4 are NLTK's ``corpus_bleu`` over those pieces, weights (.5, .5) and
  (.25, .25, .25, .25), no smoothing, one reference per caption;
* METEOR is NLTK's ``meteor_score([reference_pieces], prediction_pieces)`` (default alpha,
  beta, gamma), averaged over captions; it needs WordNet 3.0 (:mod:`hsanet.metrics.wordnet`);
* ROUGE-1/2/L are the F-measures of ``rouge_score.RougeScorer(['rouge1', 'rouge2', 'rougeL'])``
  on the raw strings (no stemming, the library default MolT5 keeps), averaged over captions.

The word-pieces come from the ``tokenizers`` library's ``BertWordPieceTokenizer``, which gives
the same pieces as transformers' ``BertTokenizerFast`` that MolT5 loads (transformers 5's slow
``BertTokenizer(vocab_file=...)`` silently loads a 5-token vocabulary, so it is not used).
"""
from __future__ import annotations

import csv
import os
from functools import lru_cache
from pathlib import Path

from hsanet.paths import data_dir as _data_dir

VOCAB_RELATIVE = Path("scibert_scivocab_uncased") / "vocab.txt"
MAX_PIECES = 512
SPECIAL_TOKENS = frozenset({"[CLS]", "[SEP]", "[PAD]"})
COLUMNS = ("SMILES", "ground truth", "output")
METRIC_KEYS = ("bleu2", "bleu4", "rouge1", "rouge2", "rougeL", "meteor")


# --------------------------------------------------------------------------- tokenizer
@lru_cache(maxsize=4)
def _wordpiece_tokenizer(vocab_path: str):
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(vocab_path, lowercase=True)
    tok.no_truncation()
    tok.no_padding()
    return tok


def scibert_tokenizer(data_dir: str | os.PathLike | None = None):
    """The SciBERT uncased word-piece tokenizer (``tokenizers.BertWordPieceTokenizer``).

    Raises
    ------
    FileNotFoundError
        When ``<data_dir>/scibert_scivocab_uncased/vocab.txt`` is missing.
    """
    vocab = _data_dir(data_dir) / VOCAB_RELATIVE
    if not vocab.is_file():
        raise FileNotFoundError(
            f"SciBERT vocabulary not found: {vocab}. Point --data-dir or HSANET_DATA at the "
            f"folder that holds {VOCAB_RELATIVE} (by default ../shared/data)."
        )
    return _wordpiece_tokenizer(str(vocab))


def tokenize(texts: list[str], data_dir: str | os.PathLike | None = None) -> list[list[str]]:
    """Split each text into at most 512 SciBERT word-pieces, special tokens dropped (as MolT5)."""
    tok = scibert_tokenizer(data_dir)
    encodings = tok.encode_batch(list(texts), add_special_tokens=False)
    return [[t for t in enc.tokens[:MAX_PIECES] if t not in SPECIAL_TOKENS] for enc in encodings]


# --------------------------------------------------------------------------- metrics
def _meteor_mean(ref_tokens: list[list[str]], out_tokens: list[list[str]]) -> float:
    from nltk.translate.meteor_score import meteor_score

    from hsanet.metrics.wordnet import ensure_wordnet

    ensure_wordnet(quiet=True)
    scores = [meteor_score([r], o) for r, o in zip(ref_tokens, out_tokens)]
    return float(sum(scores) / len(scores))


def _rouge_means(references: list[str], predictions: list[str]) -> dict[str, float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for ref, out in zip(references, predictions):
        # MolT5 calls scorer.score(out, gt); the F-measure is symmetric, so the order is moot.
        scores = scorer.score(ref, out)
        for key in totals:
            totals[key] += scores[key].fmeasure
    return {key: total / len(references) for key, total in totals.items()}


def caption_metrics(
    references: list[str],
    predictions: list[str],
    data_dir: str | os.PathLike | None = None,
) -> dict:
    """Score predicted captions against references with the MolT5 protocol.

    Parameters
    ----------
    references, predictions
        Equal-length lists of caption strings (one reference per prediction).
    data_dir
        Data folder holding ``scibert_scivocab_uncased/vocab.txt`` (see :func:`hsanet.paths.data_dir`).

    Returns
    -------
    dict
        ``bleu2``, ``bleu4``, ``rouge1``, ``rouge2``, ``rougeL``, ``meteor`` as floats in [0, 1],
        and ``n``, the number of pairs.
    """
    from nltk.translate.bleu_score import corpus_bleu

    references, predictions = list(references), list(predictions)
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    if not references:
        raise ValueError("no captions to score")
    ref_tokens = tokenize(references, data_dir)
    out_tokens = tokenize(predictions, data_dir)
    refs_for_bleu = [[r] for r in ref_tokens]
    result = {
        "bleu2": float(corpus_bleu(refs_for_bleu, out_tokens, weights=(0.5, 0.5))),
        "bleu4": float(corpus_bleu(refs_for_bleu, out_tokens, weights=(0.25, 0.25, 0.25, 0.25))),
    }
    result.update(_rouge_means(references, predictions))
    result["meteor"] = _meteor_mean(ref_tokens, out_tokens)
    result["n"] = len(references)
    return result


def sentence_scores(reference: str, prediction: str, data_dir: str | os.PathLike | None = None) -> dict:
    """BLEU-4 and METEOR of one caption against one reference, on SciBERT word-pieces.

    Sentence BLEU uses NLTK's smoothing ``method1`` (a single caption often has no matching
    4-gram, where unsmoothed BLEU is 0); it is therefore not comparable with the corpus BLEU
    of :func:`caption_metrics`. METEOR is exactly the per-caption term averaged there.
    """
    from nltk.translate.meteor_score import meteor_score

    from hsanet.metrics.wordnet import ensure_wordnet

    ref, out = tokenize([reference, prediction], data_dir)
    bleu4 = _sentence_bleu4(ref, out)
    ensure_wordnet(quiet=True)
    return {"bleu4": bleu4, "meteor": float(meteor_score([ref], out))}


def _sentence_bleu4(ref: list[str], out: list[str]) -> float:
    """Sentence BLEU-4 of word-pieces with NLTK's ``method1`` smoothing (0 for an empty output)."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    return float(sentence_bleu([ref], out, smoothing_function=SmoothingFunction().method1)) if out else 0.0


# --------------------------------------------------------------------------- files
def read_predictions(path: str | os.PathLike) -> tuple[list[str], list[str], list[str]]:
    """Read a MolT5-style predictions TSV (columns ``SMILES``, ``ground truth``, ``output``).

    Parsed as MolT5 does: tab-delimited, ``csv.QUOTE_NONE`` (captions contain quotes), and a
    leading ``"[CLS] "`` is stripped from each output.

    Returns
    -------
    smiles, references, outputs : list of str
    """
    smiles, refs, outs = [], [], []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; expected {list(COLUMNS)}")
        for row in reader:
            out = row["output"] or ""
            smiles.append(row["SMILES"])
            refs.append(row["ground truth"])
            outs.append(out[6:] if out.startswith("[CLS] ") else out)
    return smiles, refs, outs


def clean_field(text: str) -> str:
    return " ".join(str(text).replace("\t", " ").splitlines())


def write_predictions(
    path: str | os.PathLike, smiles: list[str], refs: list[str], outs: list[str]
) -> Path:
    """Write a predictions TSV that :func:`read_predictions` (and MolT5's scripts) can read.

    Tabs and line breaks inside fields become spaces; quotes are written as they are.
    """
    if not len(smiles) == len(refs) == len(outs):
        raise ValueError("smiles, refs and outs must have the same length")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None,
                            lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in zip(smiles, refs, outs):
            writer.writerow([clean_field(x) for x in row])
    return path


def outputs_for(path: str | os.PathLike, smiles: list[str]) -> tuple[list[str] | None, int]:
    """The outputs of a predictions TSV for ``smiles``, rows matched by SMILES (any order, as in
    MolT5's published files; the first row of a repeated SMILES counts).

    Returns ``(outputs, 0)``, or ``(None, missing)`` when ``missing`` of the SMILES have no row.
    Raises ``ValueError`` for a file without the expected columns.
    """
    p_smiles, _, p_outs = read_predictions(path)
    by_smiles: dict[str, str] = {}
    for smi, out in zip(p_smiles, p_outs):
        by_smiles.setdefault(smi, out)
    keys = [clean_field(s) for s in smiles]
    missing = sum(k not in by_smiles for k in keys)
    return (None, missing) if missing else ([by_smiles[k] for k in keys], 0)


def score_predictions(path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> dict:
    """:func:`caption_metrics` of a predictions TSV written by MolT5 or :func:`write_predictions`."""
    _, refs, outs = read_predictions(path)
    return caption_metrics(refs, outs, data_dir=data_dir)


# --------------------------------------------------------------------------- head to head
SIMILARITY_BINS = (0.0, 0.4, 0.6, 0.8, 1.0 + 1e-9)


def head_to_head(references: list[str], predictions: list[str], baseline: list[str],
                 similarities: list[float], data_dir: str | os.PathLike | None = None,
                 bins: tuple[float, ...] = SIMILARITY_BINS) -> dict:
    """Per molecule: does the prediction beat the baseline caption (the top neighbour's)?

    Each caption is scored against its reference with sentence BLEU-4 on SciBERT word-pieces
    (NLTK ``method1`` smoothing, as :func:`sentence_scores`); a win is a strictly higher score, a
    tie an equal one (often the very same caption). Reported over all molecules and per bin of the
    top neighbour's Tanimoto similarity, where the gains of a retrieval-reading model are expected
    to differ: at high similarity copying is hard to beat, at low similarity it is weak.

    Returns
    -------
    dict
        ``overall`` and ``bins`` (a list, one per similarity range), each with ``n``, ``win``,
        ``tie``, ``loss`` (fractions) and the mean sentence BLEU-4 of ``model`` and ``baseline``.
    """
    import numpy as np

    n = len(references)
    if not (len(predictions) == len(baseline) == len(similarities) == n):
        raise ValueError("references, predictions, baseline and similarities must have one entry per molecule")
    refs, outs, base = (tokenize(list(x), data_dir) for x in (references, predictions, baseline))
    m = np.array([_sentence_bleu4(r, o) for r, o in zip(refs, outs)])
    b = np.array([_sentence_bleu4(r, o) for r, o in zip(refs, base)])
    sim = np.nan_to_num(np.asarray(similarities, dtype=float), nan=0.0)

    def summary(mask) -> dict:
        k = int(mask.sum())
        if not k:
            return {"n": 0}
        d = m[mask] - b[mask]
        return {"n": k, "win": float((d > 0).mean()), "tie": float((d == 0).mean()), "loss": float((d < 0).mean()),
                "model_bleu4": float(m[mask].mean()), "baseline_bleu4": float(b[mask].mean())}

    out = {"measure": "sentence BLEU-4 (SciBERT word-pieces, NLTK method1 smoothing)",
           "overall": summary(np.ones(n, bool)), "bins": []}
    for lo, hi in zip(bins[:-1], bins[1:]):
        out["bins"].append({"similarity": [lo, min(hi, 1.0)], **summary((sim >= lo) & (sim < hi))})
    return out
