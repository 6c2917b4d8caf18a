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

It is made by :mod:`hsanet.reference.build`; this module reads it.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from hsanet.paths import REFERENCE_DIR

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
    """The embedding of one molecule (a :class:`~hsanet.inference.trace.Trace`) at one stage, float32 (dim,)."""
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


def stage_key(stage: str) -> str:
    return stage.replace(" ", "_")


def normalize_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def json_value(v):
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
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
    _centred: dict = field(default_factory=dict, repr=False)      # stage -> (mean, centred unit rows)
    _pca: dict = field(default_factory=dict, repr=False)          # stage -> fitted 2-D PCA of the stored rows

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
            table[cluster_column(s)] = clusters[stage_key(s)].astype(int)
        stats = json.loads((folder / "stats.json").read_text())
        level_stats = pd.DataFrame(stats["level_stats"], columns=["level", "metric", "median", "q25", "q75", "n"])
        level_stats[["median", "q25", "q75"]] = level_stats[["median", "q25", "q75"]].astype(float)
        ref = cls(folder=folder, meta=meta, stages=stages, table=table, level_stats=level_stats,
                  mamba_share=np.asarray(stats["mamba_share"], dtype=float),
                  mean_p_mamba=np.asarray(stats["mean_p_mamba"], dtype=float),
                  expert_usage=stats["expert_usage"], property_columns=props,
                  property_kinds=dict(cols.get("property_kinds", {})),
                  _coords={s: coords[stage_key(s)].astype(np.float32) for s in stages},
                  _emb={s: emb[stage_key(s)] for s in stages},
                  _basis={s: basis[stage_key(s)] for s in stages if stage_key(s) in basis})
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

    def mamba_trend(self) -> dict | None:
        """How the share routed to E_Mamba changes with depth over this set (the paper's Fig. 5 claims
        it rises): ``first`` and ``last`` level shares, the Spearman correlation ``rho`` of share and
        level, and ``direction``: "rises", "falls" or "stays flat" (|rho| < 0.5 or a change under 5 points)."""
        share = np.asarray(self.mamba_share, dtype=float)
        if share.size < 2 or not np.isfinite(share).all():
            return None
        from scipy.stats import spearmanr

        rho = float(spearmanr(np.arange(share.size), share).statistic) if np.ptp(share) > 0 else 0.0
        change = share[-1] - share[0]
        direction = ("stays flat" if abs(rho) < 0.5 or abs(change) < 0.05 else
                     "rises" if change > 0 else "falls")
        return {"first": float(share[0]), "last": float(share[-1]), "rho": rho, "direction": direction,
                "levels": int(share.size)}

    def pca(self, stage: str):
        """A 2-D PCA (scikit-learn) of the stage's stored embeddings, fitted on first use: the linear map
        beside UMAP, on which a new molecule is placed exactly (``place(..., projection="pca")``)."""
        self._check_stage(stage)
        if stage not in self._pca:
            from sklearn.decomposition import PCA

            emb = self._emb[stage].astype(np.float32)
            pca = PCA(n_components=min(2, emb.shape[1], len(emb)), svd_solver="full").fit(emb)
            self._pca[stage] = (pca, pca.transform(emb).astype(np.float32))
        return self._pca[stage][0]

    def projected(self, stage: str, projection: str = "umap") -> np.ndarray:
        """(n, 2) coordinates of the reference molecules on the ``umap`` or ``pca`` map of ``stage``."""
        if projection == "umap":
            return self.coords(stage)
        if projection != "pca":
            raise ValueError(f"projection must be 'umap' or 'pca', got {projection!r}")
        self.pca(stage)
        return self._pca[stage][1]

    def find(self, query: str, limit: int = 200) -> list[int]:
        """Rows matching a search: the molecule itself (any SMILES of it), a PubChem CID, or else the
        words in its ChEBI-20 description or generated caption (case-insensitive), at most ``limit``."""
        query = (query or "").strip()
        if not query:
            return []
        rows: list[int] = []
        try:
            from hsanet.featurizers import parse

            row = self._own_row(parse(query))
            if row is not None:
                rows.append(row)
        except Exception:  # noqa: BLE001 - not a SMILES: search the other fields
            pass
        if "cid" in self.table.columns:
            rows += [int(i) for i in np.flatnonzero(self.table["cid"].astype(str).to_numpy() == query)]
        if not rows and len(query) >= 3:
            text = pd.Series([""] * len(self.table))
            for col in ("description", "caption"):
                if col in self.table.columns:
                    text = text + " " + self.table[col].fillna("").astype(str)
            rows = [int(i) for i in np.flatnonzero(text.str.contains(query, case=False, regex=False).to_numpy())]
        return list(dict.fromkeys(rows))[:limit]

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
        return normalize_rows(v)

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

    def place(self, trace, stage: str, k: int = 10, exact: bool = True, projection: str = "umap") -> tuple[float, float]:
        """2-D position of a new molecule on the ``stage`` map, without refitting UMAP. On the ``pca``
        map it is the exact linear projection of its embedding.

        The weighted mean of the coordinates of its ``k`` nearest reference molecules (cosine), with
        UMAP's fuzzy membership weights: UMAP's own ``transform`` starts from this point (see the module
        docstring). With ``exact`` (default), a molecule whose canonical SMILES is in the reference set
        lands on its own point. ``trace`` may also be a raw stage embedding (numpy array).
        """
        coords = self.projected(stage, projection)
        if exact:
            row = self._own_row(trace)
            if row is not None:
                return float(coords[row, 0]), float(coords[row, 1])
        if projection == "pca":
            x, y = self.pca(stage).transform(self.query_vector(trace, stage)[None].astype(np.float32))[0]
            return float(x), float(y)
        sims = self._similarities(trace, stage)
        idx = self._top(sims, k)
        w = membership_weights(1.0 - sims[idx])
        x, y = (w[:, None] * coords[idx]).sum(0) / w.sum()
        return float(x), float(y)

    def _centred_rows(self, stage: str) -> tuple[np.ndarray, np.ndarray]:
        if stage not in self._centred:
            emb = self._emb[stage].astype(np.float32)
            mean = emb.mean(0)
            self._centred[stage] = (mean, normalize_rows(emb - mean))
        return self._centred[stage]

    def nearest(self, trace, stage: str = "after SAF", k: int = 5) -> pd.DataFrame:
        """The ``k`` reference molecules closest to ``trace`` at ``stage``, closest first.

        ``similarity`` is the cosine after centring: the stage's mean reference embedding is removed
        first, because the embeddings share a large common offset (raw cosines of unrelated molecules
        are all near 1 and their order is noise); it is clipped to [-1, 1]. ``tanimoto`` is the Morgan
        (r = 2, 2,048 bits) Tanimoto similarity of the structures, when the trace has a SMILES. A
        molecule that is in the set is its own nearest neighbour (similarity 1). Rows of ``table``
        (its index is the row number).
        """
        self._check_stage(stage)
        mean, rows = self._centred_rows(stage)
        q = self.query_vector(trace, stage)
        sims = np.clip(rows @ normalize_rows(q - mean), -1.0, 1.0)
        own = self._own_row(trace)
        if own is not None:
            sims[own] = 1.0
        idx = self._top(sims, k)
        if own is not None and own in idx:                  # ties at 1.0: the molecule itself first
            idx = np.concatenate([[own], idx[idx != own]])
        out = self.table.iloc[idx].copy()
        out.insert(0, "similarity", sims[idx].astype(float))
        smiles = getattr(trace, "smiles", None)
        if smiles:
            from hsanet.retrieval import fingerprint_bits, tanimoto_matrix

            bits, _ = fingerprint_bits([smiles] + [str(x) for x in out["smiles"]])
            out.insert(1, "tanimoto", tanimoto_matrix(bits[:1], bits[1:])[0])
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
