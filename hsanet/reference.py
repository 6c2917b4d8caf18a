"""The reference set behind the app's embedding map and its "typical molecule" bands.

A reference set is a few thousand molecules (by default the 3,300 ChEBI-20 test molecules) run once
through HSA-Net, offline, by ``hsanet reference build``. :func:`build_reference` stores, per molecule,
its canonical SMILES, generated caption, heavy-atom count, HAP pattern, property predictions and one
embedding per **stage** of the model:

==============  ==========================================================================================
stage           embedding
==============  ==========================================================================================
``level l``     the mean of the GIN node states of level l, H^(l) (``LevelTrace.pooled``), l = 0..L
``after HAP``   the mean over levels of the mean of the chosen expert's tokens Z^(l) (Eq. 3). The mean,
                not the concatenation, so that the vector lives in the same proj_dim space as
                ``after SAF`` and two molecules routed differently are still compared token for token.
``after SAF``   the molecule embedding: the mean of the fused tokens Y (``Trace.embedding``, Eqs. 4-5)
==============  ==========================================================================================

For every stage it fits a 2-D UMAP (umap-learn, ``metric="cosine"``, ``n_neighbors=15``,
``min_dist=0.1``, ``random_state=seed``) and a k-means clustering (scikit-learn, 8 clusters on the
L2-normalized embeddings, so the clusters follow cosine geometry like the map; cluster 0 is the
largest). It also aggregates, over the whole set: per level the median and quartiles of each
over-smoothing metric (the band drawn behind one molecule's metrics), per level the Mamba share (the
paper's Fig. 5) and mean p_mamba, and SAF expert usage (overall and per token source).

**Placing a new molecule without refitting.** UMAP is not refitted in the app, and its fitted object is
not stored (it can only be pickled). :meth:`ReferenceSet.place` finds the k nearest reference embeddings
by cosine similarity and returns the weighted mean of their 2-D coordinates. This is exactly how
``umap.UMAP.transform`` initializes new points (``init_transform``) before it refines them with a few
optimization epochs, which we skip. The weights are UMAP's fuzzy membership strengths:
``w_j = exp(-(d_j - rho) / sigma)`` with d = 1 - cosine similarity, rho the distance to the nearest
neighbour (UMAP's ``local_connectivity=1``) and sigma found by bisection so that ``sum w_j = log2(k)``
(``smooth_knn_dist``). A molecule that is itself in the reference set (same canonical SMILES) is placed
on its own point. Both calls are numpy only (no umap import) and take well under a millisecond.

**Files** (no pickle anywhere; arrays load with ``np.load(..., allow_pickle=False)``)::

    meta.json          model, date, command, counts, stages, UMAP / k-means settings, skipped inputs
    molecules.json     the table, column-oriented: smiles, cid, caption, description, heavy_atoms,
                       hap_pattern and one column per property head
    stats.json         level_stats, mamba_share, mean_p_mamba, expert_usage
    embeddings.npz     per stage: (n, <=128) float16, L2-normalized (the nearest-neighbour index)
    projections.npz    per stage wider than 128: the (128, d) float32 basis of a truncated SVD
    coords.npz         per stage: (n, 2) float32 UMAP coordinates
    clusters.npz       per stage: (n,) int16 k-means labels

Stages wider than 128 (the 300-dim GIN levels) are stored reduced by an uncentered truncated SVD, which
approximately preserves inner products, hence cosine similarities (``meta["svd_energy"]`` gives the
share of squared norm kept); new molecules are projected on the same basis. UMAP and k-means are
fitted on the full-width embeddings. The 3,300 ChEBI-20 test molecules take about 7 MB.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .paths import REFERENCE_DIR

FORMAT_VERSION = 1
MAX_STORED_DIM = 128          # wider stages are reduced by truncated SVD before they are stored
N_CLUSTERS = 8
UMAP_NEIGHBOURS = 15
UMAP_MIN_DIST = 0.1
FILES = ("meta.json", "molecules.json", "stats.json", "embeddings.npz", "projections.npz", "coords.npz",
         "clusters.npz")
BASE_COLUMNS = ("smiles", "cid", "caption", "description", "heavy_atoms", "hap_pattern")


def stage_names(num_levels: int) -> list[str]:
    """``["level 0", ..., "level L", "after HAP", "after SAF"]`` for a model with ``num_levels`` levels."""
    return [f"level {l}" for l in range(num_levels)] + ["after HAP", "after SAF"]


def stage_vector(trace, stage: str) -> np.ndarray:
    """The embedding of one molecule (a :class:`~hsanet.trace.Trace`) at one stage, float32 (dim,)."""
    if stage == "after SAF":
        v = trace.embedding
    elif stage == "after HAP":
        v = np.mean([np.asarray(lv.tokens, dtype=np.float32).mean(0) for lv in trace.levels], axis=0)
    elif stage.startswith("level "):
        try:
            level = int(stage.split()[1])
        except ValueError:
            raise ValueError(f"unknown stage {stage!r}") from None
        by_level = {lv.level: lv for lv in trace.levels}
        if level not in by_level:
            raise ValueError(f"stage {stage!r}: this trace has levels {sorted(by_level)}")
        v = by_level[level].pooled
    else:
        raise ValueError(f"unknown stage {stage!r}: use 'level l', 'after HAP' or 'after SAF'")
    return np.asarray(v, dtype=np.float32).ravel()


def cluster_column(stage: str) -> str:
    """Name of the table column holding the k-means cluster of ``stage``."""
    return f"cluster {stage}"


def _key(stage: str) -> str:
    return stage.replace(" ", "_")


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def _json_value(v):
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp" + path.suffix)
    write(tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
@dataclass
class ReferenceSet:
    """A stored reference set; :meth:`load` reads one, :func:`build_reference` makes one.

    Attributes
    ----------
    folder : Path
    meta : dict
        ``checkpoint``, ``model`` (the checkpoint's metadata), ``variant``, ``date`` (UTC, ISO),
        ``n``, ``command``, ``stages``, ``seed``, ``umap``, ``kmeans``, ``svd_energy``, ``skipped``.
    stages : list[str]
        ``["level 0", ..., "level L", "after HAP", "after SAF"]``.
    table : pandas.DataFrame
        One row per molecule: smiles, cid, caption, description, heavy_atoms, hap_pattern,
        ``cluster <stage>`` per stage (int) and one float column per property head
        (names in ``property_columns``).
    level_stats : pandas.DataFrame
        Long format, one row per (level, metric): level, metric, median, q25, q75, n
        (NaN values, e.g. MAD of a one-atom molecule, are left out). :meth:`band` gives one metric.
    mamba_share : numpy.ndarray
        (num_levels,) fraction of molecules whose HAP gate chose E_Mamba at each level.
    mean_p_mamba : numpy.ndarray
        (num_levels,) mean gate probability of E_Mamba at each level.
    expert_usage : dict
        ``num_experts``, ``top_k``, ``assignments`` (count), ``overall`` (fraction of the top-k
        assignments that went to each expert, sums to 1), ``mean_weight`` (mean renormalized gate weight
        per expert over all tokens), ``by_source`` ({"level l" | "motif": fractions per expert}).
        ``num_experts`` is 0 for the nosaf variant.
    """

    folder: Path
    meta: dict
    stages: list[str]
    table: pd.DataFrame
    level_stats: pd.DataFrame
    mamba_share: np.ndarray
    mean_p_mamba: np.ndarray
    expert_usage: dict
    property_columns: list[str] = field(default_factory=list)
    property_kinds: dict = field(default_factory=dict)
    _coords: dict = field(default_factory=dict, repr=False)
    _emb: dict = field(default_factory=dict, repr=False)          # stage -> float16 (n, d') unit rows
    _emb32: dict = field(default_factory=dict, repr=False)        # float32 copies, made on first use
    _basis: dict = field(default_factory=dict, repr=False)        # stage -> (d', d) float32
    _row_of: dict = field(default_factory=dict, repr=False)       # canonical SMILES -> row

    # --- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | os.PathLike | None = None) -> "ReferenceSet":
        """Read a reference set (default ``assets/reference``).

        Raises ``FileNotFoundError`` naming the command that builds it when the folder is incomplete.
        """
        folder = Path(folder) if folder else REFERENCE_DIR
        missing = [f for f in FILES if not (folder / f).is_file()]
        if missing:
            raise FileNotFoundError(f"no reference set in {folder} (missing {', '.join(missing)}); build one "
                                    "with `hsanet reference build`")
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"{folder}: reference format {meta.get('format_version')} is newer than this "
                             f"hsanet ({FORMAT_VERSION})")
        stages = list(meta["stages"])
        cols = json.loads((folder / "molecules.json").read_text())
        table = pd.DataFrame(cols["columns"])
        props = list(cols.get("property_columns", []))
        for p in props:
            table[p] = pd.to_numeric(table[p], errors="coerce").astype(float)

        def arrays(name):
            with np.load(folder / name, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}

        emb, basis, coords, clusters = (arrays(n) for n in
                                        ("embeddings.npz", "projections.npz", "coords.npz", "clusters.npz"))
        for s in stages:
            table[cluster_column(s)] = clusters[_key(s)].astype(int)
        stats = json.loads((folder / "stats.json").read_text())
        level_stats = pd.DataFrame(stats["level_stats"], columns=["level", "metric", "median", "q25", "q75", "n"])
        level_stats[["median", "q25", "q75"]] = level_stats[["median", "q25", "q75"]].astype(float)
        ref = cls(folder=folder, meta=meta, stages=stages, table=table, level_stats=level_stats,
                  mamba_share=np.asarray(stats["mamba_share"], dtype=float),
                  mean_p_mamba=np.asarray(stats["mean_p_mamba"], dtype=float),
                  expert_usage=stats["expert_usage"], property_columns=props,
                  property_kinds=dict(cols.get("property_kinds", {})),
                  _coords={s: coords[_key(s)].astype(np.float32) for s in stages},
                  _emb={s: emb[_key(s)] for s in stages},
                  _basis={s: basis[_key(s)] for s in stages if _key(s) in basis})
        ref._row_of = {s: i for i, s in enumerate(table["smiles"])}
        return ref

    # --- map ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.table)

    def _check_stage(self, stage: str) -> None:
        if stage not in self.stages:
            raise ValueError(f"unknown stage {stage!r}; this reference set has {self.stages}")

    def coords(self, stage: str) -> np.ndarray:
        """(n, 2) UMAP coordinates of the reference molecules at ``stage`` (row order of ``table``)."""
        self._check_stage(stage)
        return self._coords[stage]

    def bounds(self, stage: str) -> tuple[float, float, float, float]:
        """``(xmin, xmax, ymin, ymax)`` of the map at ``stage``."""
        c = self.coords(stage)
        return float(c[:, 0].min()), float(c[:, 0].max()), float(c[:, 1].min()), float(c[:, 1].max())

    def band(self, metric: str) -> pd.DataFrame:
        """One over-smoothing metric's reference band: rows per level with median, q25, q75, n."""
        out = self.level_stats[self.level_stats["metric"] == metric]
        if out.empty:
            raise ValueError(f"unknown metric {metric!r}; have {sorted(self.level_stats['metric'].unique())}")
        return out.sort_values("level").reset_index(drop=True)

    # --- placing new molecules ---------------------------------------------------------------
    def query_vector(self, trace_or_vector, stage: str) -> np.ndarray:
        """The unit vector a trace (or a raw stage embedding) is compared with, in the stored space."""
        self._check_stage(stage)
        v = (np.asarray(trace_or_vector, dtype=np.float32).ravel() if isinstance(trace_or_vector, np.ndarray)
             else stage_vector(trace_or_vector, stage))
        basis = self._basis.get(stage)
        want = basis.shape[1] if basis is not None else self._emb[stage].shape[1]
        if v.shape[0] != want:
            raise ValueError(f"stage {stage!r}: the embedding has {v.shape[0]} dimensions but this reference set "
                             f"was built with {want} (a different model); rebuild it with `hsanet reference build`")
        if basis is not None:
            v = basis @ v
        return _normalize(v)

    def _similarities(self, trace_or_vector, stage: str) -> np.ndarray:
        q = self.query_vector(trace_or_vector, stage)
        emb = self._emb32.get(stage)
        if emb is None:
            emb = self._emb32[stage] = self._emb[stage].astype(np.float32)
        return emb @ q

    def _top(self, sims: np.ndarray, k: int) -> np.ndarray:
        k = max(1, min(int(k), len(sims)))
        idx = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
        return idx[np.argsort(-sims[idx], kind="stable")]

    def _own_row(self, trace_or_vector) -> int | None:
        smiles = getattr(trace_or_vector, "smiles", None)
        return self._row_of.get(smiles) if smiles is not None else None

    def place(self, trace, stage: str, k: int = 10, exact: bool = True) -> tuple[float, float]:
        """2-D position of a new molecule on the ``stage`` map, without refitting UMAP.

        The weighted mean of the coordinates of its ``k`` nearest reference molecules (cosine), with
        UMAP's fuzzy membership weights: UMAP's own ``transform`` starts from this point (see the module
        docstring). With ``exact`` (default), a molecule whose canonical SMILES is in the reference set
        lands on its own point. ``trace`` may also be a raw stage embedding (numpy array).
        """
        coords = self.coords(stage)
        if exact:
            row = self._own_row(trace)
            if row is not None:
                return float(coords[row, 0]), float(coords[row, 1])
        sims = self._similarities(trace, stage)
        idx = self._top(sims, k)
        w = membership_weights(1.0 - sims[idx])
        x, y = (w[:, None] * coords[idx]).sum(0) / w.sum()
        return float(x), float(y)

    def nearest(self, trace, stage: str = "after SAF", k: int = 5) -> pd.DataFrame:
        """The ``k`` reference molecules most similar (cosine) to ``trace`` at ``stage``.

        Rows of ``table`` (its index is the row number) with a ``similarity`` column, most similar first.
        """
        self._check_stage(stage)
        sims = self._similarities(trace, stage)
        idx = self._top(sims, k)
        out = self.table.iloc[idx].copy()
        out.insert(0, "similarity", sims[idx].astype(float))
        return out


def membership_weights(distances: np.ndarray, n_iter: int = 64) -> np.ndarray:
    """UMAP's fuzzy membership strengths of one point to its k nearest neighbours (``smooth_knn_dist``).

    ``w_j = exp(-max(d_j - rho, 0) / sigma)``, rho = the smallest distance, sigma chosen by bisection
    so that ``sum_j w_j = log2(k)``. The nearest neighbour gets weight 1.
    """
    d = np.asarray(distances, dtype=np.float64)
    if d.size == 1:
        return np.ones(1)
    gap = np.maximum(d - d.min(), 0.0)
    target = math.log2(d.size)
    lo, hi = 0.0, np.inf
    sigma = 1.0
    for _ in range(n_iter):
        total = np.exp(-gap / sigma).sum()
        if abs(total - target) < 1e-5:
            break
        if total > target:
            hi = sigma
            sigma = (lo + hi) / 2.0
        else:
            lo = sigma
            sigma = sigma * 2.0 if hi == np.inf else (lo + hi) / 2.0
    return np.exp(-gap / max(sigma, 1e-12))


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
    from .chem import MoleculeError, parse

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
        clusters[s] = _kmeans(_normalize(X), seed)
        if X.shape[1] > MAX_STORED_DIM:
            # uncentered truncated SVD (the best rank-128 approximation of X, keeps inner products),
            # from the eigenvectors of the small d x d Gram matrix X^T X
            X64 = X.astype(np.float64)
            eigval, eigvec = np.linalg.eigh(X64.T @ X64)
            top = np.argsort(-eigval)[:MAX_STORED_DIM]
            basis = eigvec[:, top].T.astype(np.float32)                       # (128, d)
            bases[_key(s)] = basis
            kept = np.clip(eigval[top], 0, None).sum()
            energy[s] = min(1.0, float(kept / max(np.clip(eigval, 0, None).sum(), 1e-30)))
            X = X @ basis.T
        stored[_key(s)] = _normalize(X).astype(np.float16)
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
        columns[col] = [_json_value(r["properties"].get(p, float("nan"))) for r in records]

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
        "stored_dim": {s: int(stored[_key(s)].shape[1]) for s in stages},
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
    _write_atomic(out / "embeddings.npz", lambda p: np.savez(p, **stored))
    _write_atomic(out / "projections.npz", lambda p: np.savez(p, **bases))
    _write_atomic(out / "coords.npz", lambda p: np.savez(p, **{_key(s): coords[s].astype(np.float32)
                                                                 for s in stages}))
    _write_atomic(out / "clusters.npz", lambda p: np.savez(p, **{_key(s): clusters[s].astype(np.int16)
                                                                   for s in stages}))
    _write_atomic(out / "stats.json", lambda p: p.write_text(json.dumps(stats, allow_nan=False)))
    _write_atomic(out / "molecules.json", lambda p: p.write_text(json.dumps(
        {"columns": columns, "property_columns": list(prop_columns.values()),
         "property_kinds": {prop_columns[p]: prop_kinds.get(p, "") for p in prop_names}},
        allow_nan=False, ensure_ascii=False)))
    # meta.json last: a folder with a new meta.json is complete
    _write_atomic(out / "meta.json", lambda p: p.write_text(json.dumps(meta, indent=2, default=_json_value) + "\n"))
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
            U = _normalize(X)                      # same neighbour graph as metric="cosine"
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


# ---------------------------------------------------------------------------------------------
def register(subparsers) -> None:
    """Add ``hsanet reference build`` to the ``hsanet`` command line."""
    p = subparsers.add_parser("reference", help="build the reference set behind the app's embedding map")
    sub = p.add_subparsers(dest="reference_command", required=True)
    b = sub.add_parser("build", help="run the model over a molecule set, fit UMAP maps, save to assets/reference",
                       description="Run HSA-Net over the ChEBI-20 test molecules (or --smiles-file), fit one 2-D "
                                   "UMAP and k-means per stage and save the reference set (JSON + npz, no pickle).")
    b.add_argument("--checkpoint", help="checkpoint folder (default: the embedded model in assets/)")
    b.add_argument("--untrained", action="store_true",
                   help="use an untrained model when no checkpoint exists (development only)")
    b.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    b.add_argument("--data-dir", help="data folder (default: ../shared/data or $HSANET_DATA)")
    b.add_argument("--split", default="test", choices=["test", "validation", "train"], help="ChEBI-20 split")
    b.add_argument("--smiles-file", help="your own molecules: one SMILES per line, optionally followed by "
                                         "whitespace and an id")
    b.add_argument("--limit", type=int, help="use only the first N molecules")
    b.add_argument("--out", default=str(REFERENCE_DIR), help="output folder (default: assets/reference)")
    b.add_argument("--no-caption", action="store_true", help="skip caption generation (fast)")
    b.add_argument("--captions-from", dest="captions_from",
                   help="predictions TSV of the same model (hsanet evaluate --out): reuse its captions")
    b.add_argument("--max-new-tokens", type=int, default=None)
    b.add_argument("--batch-size", type=int, default=64)
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=cmd_build)


def _read_smiles_file(path: str) -> tuple[list[str], list[str]]:
    from .cli import UsageError

    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    smiles, ids = [], []
    for i, line in enumerate(lines):
        parts = line.split(None, 1)
        if not parts or parts[0].startswith("#"):
            continue
        smiles.append(parts[0])
        ids.append(parts[1].strip() if len(parts) > 1 else str(i + 1))
    if not smiles:
        raise UsageError(f"{path} holds no SMILES")
    return smiles, ids


def _command_line(args) -> str:
    """The ``hsanet reference build`` command that reproduces this build (recorded in meta.json)."""
    parts = ["hsanet", "reference", "build"]
    for opt in ("checkpoint", "device", "data_dir", "smiles_file", "limit", "max_new_tokens", "captions_from"):
        value = getattr(args, opt)
        if value is not None:
            parts += ["--" + opt.replace("_", "-"), str(value)]
    if not args.smiles_file and args.split != "test":
        parts += ["--split", args.split]
    if args.out != str(REFERENCE_DIR):
        parts += ["--out", args.out]
    for opt, default in (("batch_size", 64), ("seed", 0)):
        if getattr(args, opt) != default:
            parts += ["--" + opt.replace("_", "-"), str(getattr(args, opt))]
    parts += [f for f, on in (("--no-caption", args.no_caption), ("--untrained", args.untrained)) if on]
    return shlex.join(parts)


def cmd_build(args) -> int:
    from .cli import UsageError
    from .paths import DEFAULT_CHECKPOINT

    if args.limit is not None and args.limit < 3:
        raise UsageError("--limit must be at least 3")
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    descriptions = None
    if args.smiles_file:
        smiles, cids = _read_smiles_file(args.smiles_file)
        source = args.smiles_file
    else:
        from .data.chebi import load_chebi

        split = load_chebi(args.split, data_dir=args.data_dir)
        smiles, cids, descriptions = list(split.smiles), list(split.cids), list(split.descriptions)
        source = f"ChEBI-20 {args.split}"
    if args.limit is not None:
        smiles, cids = smiles[:args.limit], cids[:args.limit]
        descriptions = descriptions[:args.limit] if descriptions is not None else None

    from .model import HSANet

    checkpoint = args.checkpoint
    if not checkpoint and not DEFAULT_CHECKPOINT.is_dir():
        if not args.untrained:
            raise UsageError(f"no checkpoint: {DEFAULT_CHECKPOINT} does not exist; pass --checkpoint DIR "
                             "(or --untrained for a development map)")
        print("hsanet reference: using an untrained model (no captions)", file=sys.stderr)
        model = HSANet().eval()
        checkpoint_name = "untrained"
    else:
        model = HSANet.from_pretrained(checkpoint or None, device=args.device)
        checkpoint_name = str(Path(checkpoint or DEFAULT_CHECKPOINT).resolve().name)
    caption = not args.no_caption and model.decoder is not None
    print(f"reference: {len(smiles)} molecules from {source}, model {checkpoint_name} "
          f"({'trained' if model.meta.get('trained') else 'untrained'}), captions {'on' if caption else 'off'}",
          flush=True)
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    bar = tqdm(total=len(smiles), desc="analyzing", unit="mol", file=sys.stderr, mininterval=2.0)

    def progress(done, total):          # progress on stderr; the summary lines on stdout
        bar.total = total
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    captions = None
    if args.captions_from:
        from .metrics.captions import outputs_for

        captions, missing = outputs_for(args.captions_from, smiles)
        if missing:
            raise UsageError(f"{args.captions_from} has no caption for {missing} of the {len(smiles)} molecules")
        print(f"reference: captions taken from {args.captions_from}", flush=True)
    command = _command_line(args)
    ref = build_reference(model, smiles, args.out, descriptions=descriptions, cids=cids, caption=caption,
                          captions=captions,
                          batch_size=args.batch_size, seed=args.seed, progress=progress,
                          max_new_tokens=args.max_new_tokens, checkpoint=checkpoint_name, command=command)
    size = sum(f.stat().st_size for f in Path(args.out).iterdir() if f.name in FILES)
    t = ref.meta["timings_s"]
    print(f"reference: {len(ref)} molecules ({len(ref.meta['skipped'])} skipped), {len(ref.stages)} stages, "
          f"saved to {args.out} ({size / 1e6:.1f} MB); analyze {t['analyze']:.0f} s, maps {t['maps']:.0f} s, "
          f"total {time.perf_counter() - t0:.0f} s", flush=True)
    return 0
