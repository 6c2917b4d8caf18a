"""Consensus re-ranking of candidate captions: how much a candidate agrees with the captions of the
molecule's nearest training molecules.

Not part of HSA-Net (the paper decodes once, Eq. 6); it is the decoding step our retrieval-augmented
model adds after generation, taken from image captioning: "consensus re-ranking" (Devlin et al. 2015,
"Exploring nearest neighbor approaches for image captioning", arXiv 1505.04467) picks, among the
captions of the nearest training images, the one with the highest mean BLEU against the others. Here
the votes are weighted by each neighbour's Tanimoto similarity to the query molecule, and the score
of a candidate is combined with the model's mean token log-likelihood and the candidate's own
similarity (:meth:`hsanet.models.hsanet.HSANet.rerank`; the weights are chosen on validation data,
see the model card).

Agreement is NLTK's sentence BLEU-4 (smoothing method 1) on lower-cased word tokens
(``\\w+|[^\\w\\s]``), so the running app needs no SciBERT vocabulary for it.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"\w+|[^\w\s]")


def word_tokens(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens of a caption."""
    return _WORD.findall(text.lower())


def own_voters(candidates: Sequence[str], voters: Sequence[str]) -> list[int | None]:
    """Which voter each candidate is: the voter at the same position when the candidates are the
    voters (the baseline), else the first voter with the same text (a generated caption that copies a
    neighbour's is that neighbour's caption), else None."""
    if list(candidates) == list(voters):
        return list(range(len(candidates)))
    return [next((b for b, v in enumerate(voters) if v == c), None) for c in candidates]


def agreement(candidates: Sequence[str], voters: Sequence[str], own: Sequence[int | None] | None = None) -> np.ndarray:
    """``A[a, b]``: sentence BLEU-4 of candidate ``a`` with voter ``b`` as the reference; NaN where voter
    ``b`` is candidate ``a`` itself (``own``, default :func:`own_voters`): a caption does not vote for
    itself, while two neighbours with the same caption do vote for each other."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    smooth = SmoothingFunction().method1
    own = own_voters(candidates, voters) if own is None else own
    cand_tokens = [word_tokens(c) for c in candidates]
    voter_tokens = [word_tokens(v) for v in voters]
    out = np.zeros((len(candidates), len(voters)))
    for a, tokens in enumerate(cand_tokens):
        for b, vtokens in enumerate(voter_tokens):
            if own[a] == b:
                out[a, b] = np.nan
            elif tokens and vtokens:
                out[a, b] = sentence_bleu([vtokens], tokens, smoothing_function=smooth)
    return out


def consensus(candidates: Sequence[str], voters: Sequence[str], weights: Sequence[float],
              own: Sequence[int | None] | None = None) -> np.ndarray:
    """Per candidate: the weighted mean agreement with the voters (weights: their similarities to the
    query molecule), over the voters other than the candidate itself; 0 where no voter is left."""
    return weighted_votes(agreement(candidates, voters, own), weights)


def weighted_votes(agree: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """:func:`consensus` from an :func:`agreement` matrix (NaN entries: no vote)."""
    w = np.clip(np.asarray(weights, dtype=float), 0.0, None)
    if agree.size == 0:
        return np.zeros(agree.shape[0])
    mask = ~np.isnan(agree)
    total = (mask * w[None, :]).sum(axis=1)
    votes = (np.where(mask, agree, 0.0) * w[None, :]).sum(axis=1)
    return np.divide(votes, total, out=np.zeros(agree.shape[0]), where=total > 0)


def combined_scores(loglik: Sequence[float], agree: Sequence[float], similarity: Sequence[float],
                    likelihood_weight: float, consensus_weight: float, similarity_weight: float) -> np.ndarray:
    """The reranking score of each candidate: a weighted sum of the model's mean token
    log-likelihood, its consensus with the neighbours and its own similarity to the query."""
    return (likelihood_weight * np.asarray(loglik, dtype=float) + consensus_weight * np.asarray(agree, dtype=float)
            + similarity_weight * np.asarray(similarity, dtype=float))
