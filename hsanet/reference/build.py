"""Building a reference set (``hsanet reference build``): run the model over a molecule set, fit one 2-D
UMAP and one k-means clustering per stage, aggregate the statistics, and save it in the format that
:mod:`hsanet.reference.store` reads (see there for the stages and the files).

For every stage it fits a 2-D UMAP (umap-learn, ``metric="cosine"``, ``n_neighbors=15``,
``min_dist=0.1``, ``random_state=seed``) and a k-means clustering (scikit-learn, 8 clusters on the
L2-normalized embeddings, so the clusters follow cosine geometry like the map; cluster 0 is the
largest). It also aggregates, over the whole set: per level the median and quartiles of each
over-smoothing metric (the band drawn behind one molecule's metrics), per level the Mamba share (the
paper's Fig. 5) and mean p_mamba, and SAF expert usage (overall and per token source).
"""
from __future__ import annotations

import json
import os
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from hsanet.reference.store import (BASE_COLUMNS, FORMAT_VERSION, MAX_STORED_DIM, N_CLUSTERS, UMAP_MIN_DIST,
                                    UMAP_NEIGHBOURS, ReferenceSet, json_value, stage_key, normalize_rows, write_atomic,
                                    stage_names, stage_vector)


# ---------------------------------------------------------------------------------------------
def build_reference(model, smiles: Sequence[str], out_dir: str | os.PathLike, descriptions: Sequence[str] | None = None,
                    cids: Sequence | None = None, caption: bool = True, batch_size: int = 64, seed: int = 0,
                    progress: Callable[[int, int], None] | None = None, max_new_tokens: int | None = None,
                    checkpoint: str | None = None, command: str | None = None,
                    captions: Sequence[str] | None = None) -> ReferenceSet:
    """Run ``model`` over ``smiles``, fit the maps and save a reference set to ``out_dir``.

    Parameters
    ----------
    model : HSANet
    smiles : list of str
        The molecules. Inputs that do not parse are skipped and listed in ``meta["skipped"]``.
        Duplicates (same canonical SMILES) are kept once.
    out_dir : path
        Created if needed; the seven files are replaced one by one.
    descriptions, cids : optional lists parallel to ``smiles`` (reference captions, ids).
    caption : bool
        Generate a caption per molecule (the slow part; off gives empty captions).
    captions : optional list parallel to ``smiles``
        Captions the same model already generated (``hsanet evaluate``'s predictions); used instead
        of generating them again.
    batch_size : int
        Molecules per ``model.analyze`` call.
    seed : int
        ``random_state`` of UMAP and k-means.
    progress : callable(done, total), optional
        Called after every batch.
    checkpoint, command : str, optional
        Recorded in ``meta.json``.

    Returns
    -------
    ReferenceSet
        The set as :meth:`ReferenceSet.load` reads it back.
    """
    from hsanet.featurizers import MoleculeError, parse

    started = time.perf_counter()
    smiles = list(smiles)
    n_in = len(smiles)
    for name, seq in (("descriptions", descriptions), ("cids", cids)):
        if seq is not None and len(seq) != n_in:
            raise ValueError(f"{name} has {len(seq)} entries for {n_in} SMILES")
    mols, rows, skipped, seen = [], [], [], set()
    max_atoms = getattr(model.config, "max_atoms", 200)
    for i, s in enumerate(smiles):
        try:
            m = parse(s, max_atoms)
        except MoleculeError as exc:
            skipped.append({"row": i, "input": str(s)[:200], "reason": str(exc)})
            continue
        if m.smiles in seen:
            skipped.append({"row": i, "input": str(s)[:200], "reason": "duplicate canonical SMILES"})
            continue
        seen.add(m.smiles)
        mols.append(m)
        rows.append(i)
    n = len(mols)
    if n < 3:
        raise ValueError(f"a reference set needs at least 3 usable molecules, got {n}")

    num_levels = model.config.num_levels
    stages = stage_names(num_levels)
    vectors = {s: [] for s in stages}
    records = []
    metric_values: dict[tuple[int, str], list[float]] = {}
    choices = np.zeros((n, num_levels), dtype=bool)
    p_mamba = np.zeros((n, num_levels), dtype=np.float64)
    num_experts = 0
    top_k = 0
    usage_counts: dict[str, np.ndarray] = {}
    weight_sums = None
    n_tokens = 0
    prop_kinds: dict[str, str] = {}
    done = 0
    for start in range(0, n, batch_size):
        chunk = mols[start:start + batch_size]
        traces = model.analyze(chunk, caption=caption and captions is None, max_new_tokens=max_new_tokens,
                               metrics=True)
        for j, tr in enumerate(traces):
            g = start + j
            src_row = rows[g]
            records.append({
                "smiles": tr.smiles,
                "cid": "" if cids is None else str(cids[src_row]),
                "caption": (tr.caption or "") if captions is None else str(captions[src_row]),
                "description": "" if descriptions is None else str(descriptions[src_row]),
                "heavy_atoms": int(tr.num_atoms),
                "hap_pattern": tr.hap_pattern,
                "properties": dict(tr.properties),
            })
            prop_kinds.update(tr.property_kinds)
            for s in stages:
                vectors[s].append(stage_vector(tr, s))
            for lv in tr.levels:
                choices[g, lv.level] = lv.choice == "mamba"
                p_mamba[g, lv.level] = lv.p_mamba
                for name, value in lv.metrics.items():
                    metric_values.setdefault((lv.level, name), []).append(float(value))
            if tr.num_experts:
                num_experts = tr.num_experts
                if weight_sums is None:
                    weight_sums = np.zeros(num_experts)
                for tok in tr.saf_tokens:
                    if not tok.experts:
                        continue
                    top_k = max(top_k, len(tok.experts))
                    counts = usage_counts.setdefault(tok.source, np.zeros(num_experts))
                    for e, w in zip(tok.experts, tok.weights):
                        counts[e] += 1
                        weight_sums[e] += w
                    n_tokens += 1
        done += len(chunk)
        if progress is not None:
            progress(done, n)
    analyze_s = time.perf_counter() - started

    # --- maps: UMAP + k-means per stage, on the full-width embeddings ---------------------------
    t0 = time.perf_counter()
    full = {s: np.stack(vectors[s]).astype(np.float32) for s in stages}
    coords, clusters, stored, bases, energy = {}, {}, {}, {}, {}
    for s in stages:
        X = full[s]
        coords[s] = _umap_2d(X, seed)
        clusters[s] = _kmeans(normalize_rows(X), seed)
        if X.shape[1] > MAX_STORED_DIM:
            # uncentered truncated SVD (the best rank-128 approximation of X, keeps inner products),
            # from the eigenvectors of the small d x d Gram matrix X^T X
            X64 = X.astype(np.float64)
            eigval, eigvec = np.linalg.eigh(X64.T @ X64)
            top = np.argsort(-eigval)[:MAX_STORED_DIM]
            basis = eigvec[:, top].T.astype(np.float32)                       # (128, d)
            bases[stage_key(s)] = basis
            kept = np.clip(eigval[top], 0, None).sum()
            energy[s] = min(1.0, float(kept / max(np.clip(eigval, 0, None).sum(), 1e-30)))
            X = X @ basis.T
        stored[stage_key(s)] = normalize_rows(X).astype(np.float16)
    maps_s = time.perf_counter() - t0

    # --- aggregates ------------------------------------------------------------------------------
    level_stats = []
    for (level, metric), vals in sorted(metric_values.items()):
        v = np.asarray(vals, dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size:
            q25, med, q75 = np.quantile(v, [0.25, 0.5, 0.75])
            level_stats.append([level, metric, float(med), float(q25), float(q75), int(v.size)])
        else:
            level_stats.append([level, metric, None, None, None, 0])
    expert_usage = {"num_experts": int(num_experts), "top_k": int(top_k), "assignments": 0, "overall": [],
                    "mean_weight": [], "by_source": {}}
    if num_experts and usage_counts:
        total = sum(usage_counts.values())
        expert_usage.update(
            assignments=int(total.sum()),
            overall=[float(x) for x in total / max(total.sum(), 1)],
            mean_weight=[float(x) for x in weight_sums / max(n_tokens, 1)],
            by_source={src: [float(x) for x in c / max(c.sum(), 1)] for src, c in usage_counts.items()})
    stats = {"level_stats": level_stats,
             "mamba_share": [float(x) for x in choices.mean(0)],
             "mean_p_mamba": [float(x) for x in p_mamba.mean(0)],
             "expert_usage": expert_usage}

    # --- table -----------------------------------------------------------------------------------
    prop_names = sorted({p for r in records for p in r["properties"]})
    prop_columns = {p: (p if p not in BASE_COLUMNS and not p.startswith("cluster ") else f"property {p}")
                    for p in prop_names}
    columns = {c: [r[c] for r in records] for c in BASE_COLUMNS}
    for p, col in prop_columns.items():
        columns[col] = [json_value(r["properties"].get(p, float("nan"))) for r in records]

    meta = {
        "format_version": FORMAT_VERSION,
        "checkpoint": checkpoint,
        "model": getattr(model, "meta", {}),
        "trained": bool(getattr(model, "meta", {}).get("trained")),
        "variant": model.config.variant,
        "num_levels": num_levels,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "n": n,
        "n_input": n_in,
        "command": command,
        "stages": stages,
        "dims": {s: int(full[s].shape[1]) for s in stages},
        "stored_dim": {s: int(stored[stage_key(s)].shape[1]) for s in stages},
        "svd_energy": energy,
        "caption": bool(caption),
        "seed": seed,
        "umap": {"n_components": 2, "metric": "cosine", "n_neighbors": _n_neighbours(n), "min_dist": UMAP_MIN_DIST,
                 "random_state": seed},
        "kmeans": {"n_clusters": min(N_CLUSTERS, n), "on": "L2-normalized embeddings", "random_state": seed},
        "placement": "weighted mean of the k nearest (cosine) reference points, UMAP membership weights",
        "timings_s": {"analyze": round(analyze_s, 2), "maps": round(maps_s, 2)},
        "skipped": skipped,
    }

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "embeddings.npz", lambda p: np.savez(p, **stored))
    write_atomic(out / "projections.npz", lambda p: np.savez(p, **bases))
    write_atomic(out / "coords.npz", lambda p: np.savez(p, **{stage_key(s): coords[s].astype(np.float32)
                                                                 for s in stages}))
    write_atomic(out / "clusters.npz", lambda p: np.savez(p, **{stage_key(s): clusters[s].astype(np.int16)
                                                                   for s in stages}))
    write_atomic(out / "stats.json", lambda p: p.write_text(json.dumps(stats, allow_nan=False)))
    write_atomic(out / "molecules.json", lambda p: p.write_text(json.dumps(
        {"columns": columns, "property_columns": list(prop_columns.values()),
         "property_kinds": {prop_columns[p]: prop_kinds.get(p, "") for p in prop_names}},
        allow_nan=False, ensure_ascii=False)))
    # meta.json last: a folder with a new meta.json is complete
    write_atomic(out / "meta.json", lambda p: p.write_text(json.dumps(meta, indent=2, default=json_value) + "\n"))
    return ReferenceSet.load(out)


def _n_neighbours(n: int) -> int:
    return max(2, min(UMAP_NEIGHBOURS, n - 1))


def _umap_2d(X: np.ndarray, seed: int) -> np.ndarray:
    """2-D UMAP of X with the cosine metric.

    Below 4,096 points umap-learn computes all pairwise distances, and with metric="cosine" it does so
    through a Python callable (about 100 s for 3,300 points here); the same cosine distances computed
    with numpy and passed as metric="precomputed" give the same neighbour graph in well under a second.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # "n_jobs overridden by random_state", numba notes
        import umap

        kw = dict(n_components=2, n_neighbors=_n_neighbours(len(X)), min_dist=UMAP_MIN_DIST, random_state=seed,
                  init="spectral" if len(X) > 20 else "random")
        if len(X) < 4096:
            U = normalize_rows(X)                      # same neighbour graph as metric="cosine"
            D = np.clip(1.0 - U @ U.T, 0.0, 2.0)
            np.fill_diagonal(D, 0.0)
            out = umap.UMAP(metric="precomputed", **kw).fit_transform(D)
        else:
            out = umap.UMAP(metric="cosine", **kw).fit_transform(X)
    return np.asarray(out, dtype=np.float32)


def _kmeans(X: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    k = min(N_CLUSTERS, len(X))
    with threadpool_limits(1):                    # BLAS threads only contend on a small, busy machine
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(X)
    # relabel by size, largest first, so colours are stable across rebuilds
    order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
    rank = np.empty(k, dtype=int)
    rank[order] = np.arange(k)
    return rank[labels]
