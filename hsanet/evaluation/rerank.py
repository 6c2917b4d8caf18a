"""Choosing the reranking weights on validation data (the decoding step after Eq. 6, see
:meth:`hsanet.models.hsanet.HSANet.rerank` and :mod:`hsanet.lm.consensus`).

``collect`` captions molecules once and keeps, per molecule, the generated caption, the captions of
its nearest training molecules with their similarities, and every candidate's mean token
log-likelihood under the model; ``grid`` then scores every setting of (neighbours, likelihood,
consensus, similarity weights) on those candidates without running the model again, by corpus
BLEU-4 (MolT5 protocol); the best setting is scored on all six metrics beside the model's plain
reranking and the top-1 retrieval baseline.

    hsanet evaluate --checkpoint DIR --split validation --tune-rerank --out OUT  -> OUT/rerank_grid.json
"""
from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Sequence

import numpy as np

NEIGHBOURS = (5,)
LIKELIHOOD = (0.0, 0.25, 0.5, 1.0)
CONSENSUS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
SIMILARITY = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def collect(model, smiles: Sequence[str], references: Sequence[str], neighbours: int = 5,
            batch_size: int = 32, max_atoms: int | None = None) -> list[dict]:
    """Per molecule: ``candidates`` (the generated caption, then the ``neighbours`` nearest training
    molecules' captions), ``similarities`` (None, then theirs), ``loglik`` (each candidate's mean token
    log-likelihood) and the ``reference``."""
    import torch
    from tqdm.auto import tqdm

    from hsanet.featurizers import featurize, parse

    model.eval()
    mols = [parse(s) if max_atoms is None else parse(s, max_atoms=max_atoms) for s in smiles]
    order = sorted(range(len(mols)), key=lambda i: -len(mols[i].smiles))
    rows: list[dict | None] = [None] * len(mols)
    k = model.config.retrieval_k
    with tqdm(total=len(mols), desc="candidates", unit="mol", file=sys.stderr, mininterval=2.0) as bar:
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            chunk = [mols[i] for i in idx]
            with torch.no_grad():
                fused = model.encode(featurize(chunk))["fused"]
            generated, _, _ = model.decode(fused, chunk, rerank=False)
            hits = model.references([m.smiles for m in chunk], k=max(neighbours, k))
            prompts = [model.decoder.prompt_ids(m.smiles, [n.caption for n in h[:k]]) for m, h in zip(chunk, hits)]
            cands = [[g] + [n.caption for n in h[:neighbours]] for g, h in zip(generated, hits)]
            scored = model.rerank(fused, prompts, cands)       # no similarities: the log-likelihoods
            for i, g, h, (_, ll) in zip(idx, cands, hits, scored):
                rows[i] = {"reference": references[i], "candidates": g,
                           "similarities": [None] + [n.similarity for n in h[:neighbours]], "loglik": ll}
            bar.update(len(idx))
    return rows


def _agreements(rows: list[dict]) -> list[np.ndarray]:
    from hsanet.lm.consensus import agreement, own_voters

    out = []
    for r in rows:
        voters = r["candidates"][1:]
        out.append(agreement(r["candidates"], voters, own_voters(r["candidates"][:1], voters) + list(range(len(voters)))))
    return out


def picks(rows: list[dict], agree: list[np.ndarray], neighbours: int, likelihood: float, consensus: float,
          similarity: float) -> list[str]:
    """The caption each molecule gets under one setting (as :meth:`HSANet.rerank` scores it)."""
    from hsanet.lm.consensus import combined_scores, weighted_votes

    out = []
    for r, a in zip(rows, agree):
        n = 1 + min(neighbours, len(r["candidates"]) - 1)
        sims = [s for s in r["similarities"][1:n]]
        own = [0.0] + sims                              # the generated caption: no molecule behind it
        votes = weighted_votes(a[:n, :n - 1], sims) if consensus > 0 else np.zeros(n)
        scores = combined_scores(r["loglik"][:n] if likelihood > 0 else np.zeros(n), votes, own,
                                 likelihood, consensus, similarity)
        out.append(r["candidates"][int(np.argmax(scores))])
    return out


def grid(rows: list[dict], data_dir=None, neighbours=NEIGHBOURS, likelihood=LIKELIHOOD, consensus=CONSENSUS,
         similarity=SIMILARITY) -> dict:
    """Every setting's corpus BLEU-4 on the collected candidates; the best one (ties: the earlier, i.e.
    the simpler, setting) with all six metrics, beside plain reranking and the top-1 neighbour."""
    from nltk.translate.bleu_score import corpus_bleu

    from hsanet.metrics.captions import caption_metrics, tokenize

    start = time.time()
    agree = _agreements(rows)
    refs = [[t] for t in tokenize([r["reference"] for r in rows], data_dir)]
    texts = sorted({c for r in rows for c in r["candidates"]})
    tokens = dict(zip(texts, tokenize(texts, data_dir)))
    table = []
    for k, ll, c, s in itertools.product(neighbours, likelihood, consensus, similarity):
        if ll == c == s == 0:
            continue
        chosen = picks(rows, agree, k, ll, c, s)
        bleu = corpus_bleu(refs, [tokens[t] for t in chosen])
        table.append({"neighbours": k, "likelihood": ll, "consensus": c, "similarity": s, "bleu4": round(bleu, 4),
                      "generated_share": round(float(np.mean([t == r["candidates"][0] for t, r in zip(chosen, rows)])), 4)})
    best = max(table, key=lambda e: e["bleu4"])     # max keeps the first of equals
    refs_text = [r["reference"] for r in rows]
    scored = {
        "best": caption_metrics(refs_text, picks(rows, agree, best["neighbours"], best["likelihood"],
                                                 best["consensus"], best["similarity"]), data_dir),
        "likelihood_only": caption_metrics(refs_text, picks(rows, agree, best["neighbours"], 1.0, 0.0, 0.0), data_dir),
        "generated": caption_metrics(refs_text, [r["candidates"][0] for r in rows], data_dir),
        "top1_neighbour": caption_metrics(refs_text, [r["candidates"][1] if len(r["candidates"]) > 1 else ""
                                                      for r in rows], data_dir),
    }
    return {"n": len(rows), "best": best, "scores": scored, "grid": table, "seconds": round(time.time() - start, 1)}
