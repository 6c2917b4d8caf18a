"""Over-smoothing metrics of node features (the numbers behind the paper's Fig. 2).

HSA-Net (AAAI-26) shows over-smoothing only with t-SNE; these functions put numbers on it.
Every function takes a node-feature matrix ``X`` (n x d, numpy array or torch tensor) and,
where the graph matters, an ``edge_index`` (2 x E integer array or tensor, both directions of
each bond present as in PyG). Results are Python floats computed in float64 with numpy.

* MAD and MADGap: Chen et al., "Measuring and Relieving the Over-smoothing Problem for Graph
  Neural Networks from the Topological View", AAAI 2020.
* Dirichlet energy, unnormalized: Rusch, Bronstein & Mishra, "A Survey on Oversmoothing in
  Graph Neural Networks", 2023.
* Dirichlet energy, normalized: Cai & Wang, "A Note on Over-Smoothing for Graph Neural
  Networks", ICML GRL+ workshop 2020.
* Effective rank: Roy & Vetterli, "The effective rank: a measure of effective dimensionality",
  EUSIPCO 2007. Numerical (stable) rank: ||X||_F^2 / ||X||_2^2.
* Mean pairwise cosine similarity over distinct node pairs.

Zero-norm rows: their cosine similarity with any row (another zero row included) is taken as 0,
so their cosine distance is 1. This is scikit-learn's ``pairwise_distances(metric="cosine")``
convention, which Chen et al.'s reference code uses.
"""
from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path

from hsanet.inference.runtime import serial_blas

#: Cosine distances below this are rounding noise and count as exactly 0 in MAD.
DIST_EPS = 1e-10
#: Singular values below this fraction of the largest count as zero in the rank measures.
RANK_RTOL = 1e-6


# --------------------------------------------------------------------------- helpers
def _as_features(X) -> np.ndarray:
    """``X`` as a 2-D float64 numpy array (torch tensors are detached and moved to the CPU)."""
    if hasattr(X, "detach"):
        X = X.detach().cpu().double().numpy()
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"X must be n x d, got shape {X.shape}")
    return X


def _as_edges(edge_index) -> np.ndarray:
    """``edge_index`` as a 2 x E int64 numpy array."""
    if hasattr(edge_index, "detach"):
        edge_index = edge_index.detach().cpu().numpy()
    edge_index = np.asarray(edge_index, dtype=np.int64)
    if edge_index.size == 0:
        return np.zeros((2, 0), dtype=np.int64)
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must be 2 x E, got shape {edge_index.shape}")
    return edge_index


def _unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm; zero rows stay zero (cosine 0 with everything)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)


def _cosine_similarities(X: np.ndarray) -> np.ndarray:
    """n x n matrix cos(x_i, x_j) (0 where a row is zero)."""
    U = _unit_rows(X)
    return U @ U.T


def _cosine_distances(X: np.ndarray, S: np.ndarray | None = None) -> np.ndarray:
    """n x n matrix 1 - cos(x_i, x_j), clipped to [0, 2], rounding noise set to 0."""
    if S is None:
        S = _cosine_similarities(X)
    D = np.clip(1.0 - S, 0.0, 2.0)
    D[D < DIST_EPS] = 0.0
    return D


# --------------------------------------------------------------------------- MAD
def _mad_from_distances(D: np.ndarray, mask: np.ndarray) -> float:
    """MAD from a distance matrix and a 0/1 mask (Chen et al. 2020, Eqs. 1-4)."""
    masked = D * mask
    counts = np.count_nonzero(masked, axis=1)
    node_mean = np.divide(masked.sum(axis=1), counts, out=np.zeros(len(D)), where=counts > 0)
    nonzero = node_mean[node_mean > 0]
    return float(nonzero.mean()) if nonzero.size else 0.0


def _default_mask(n: int) -> np.ndarray:
    return 1.0 - np.eye(n)


@serial_blas
def mad(X, mask=None) -> float:
    """Mean Average Distance (Chen et al., AAAI 2020).

    D_ij = 1 - cos(x_i, x_j) is multiplied by ``mask``; each node's value is the mean of its
    nonzero masked distances, and MAD is the mean over the nodes whose value is nonzero.

    Parameters
    ----------
    X : (n, d) array or tensor
        Node features.
    mask : (n, n) array or tensor of 0/1, optional
        Pairs to include; by default every pair i != j.

    Returns
    -------
    float
        MAD in [0, 2]; 0 when no masked pair has a nonzero distance (e.g. identical rows).
    """
    X = _as_features(X)
    n = len(X)
    if mask is None:
        mask = _default_mask(n)
    else:
        mask = _as_features(mask)
        if mask.shape != (n, n):
            raise ValueError(f"mask must be {n} x {n}, got {mask.shape}")
    return _mad_from_distances(_cosine_distances(X), mask)


def hop_distances(edge_index, n: int) -> np.ndarray:
    """All-pairs shortest-path hop counts of an unweighted, undirected graph.

    Returns
    -------
    (n, n) float ndarray
        Hops between nodes i and j; 0 on the diagonal, ``inf`` when j is unreachable from i.
    """
    ei = _as_edges(edge_index)
    if n == 0:
        return np.zeros((0, 0))
    rows = np.concatenate([ei[0], ei[1]])  # both directions: the graph is undirected
    cols = np.concatenate([ei[1], ei[0]])
    adj = csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
    # directed=True on the symmetrized matrix skips scipy's own (slower) symmetrization
    return shortest_path(adj, method="D", directed=True, unweighted=True)


def _mad_gap_from(D: np.ndarray, hops: np.ndarray, near: int, remote: int) -> float:
    near_mask = (hops >= 1) & (hops <= near)
    remote_mask = np.isfinite(hops) & (hops >= remote)
    if not near_mask.any() or not remote_mask.any():
        return float("nan")
    return _mad_from_distances(D, remote_mask.astype(float)) - _mad_from_distances(
        D, near_mask.astype(float)
    )


@serial_blas
def mad_gap(X, edge_index, near: int = 2, remote: int = 4) -> float:
    """MADGap = MAD(remote pairs) - MAD(near pairs) (Chen et al., AAAI 2020).

    Near pairs are 1 <= hops <= ``near``; remote pairs are ``remote`` <= hops < inf, so pairs
    in different connected components are left out. Chen et al. use 3 and 8 hops on citation
    graphs; the defaults 2 and 4 suit molecules. A positive gap means remote nodes stay more
    distinct than neighbours (information, not smoothing, dominates).

    Returns
    -------
    float
        The gap, or ``nan`` when there is no near pair or no remote pair (small molecules
        often have no pair 4 bonds apart).
    """
    X = _as_features(X)
    hops = hop_distances(edge_index, len(X))
    return _mad_gap_from(_cosine_distances(X), hops, near, remote)


# --------------------------------------------------------------------------- energies
def _dirichlet(X: np.ndarray, ei: np.ndarray) -> float:
    if len(X) == 0:
        return 0.0
    diff = X[ei[0]] - X[ei[1]]
    return float(np.einsum("ij,ij->", diff, diff) / len(X))


@serial_blas
def dirichlet_energy(X, edge_index) -> float:
    """Unnormalized Dirichlet energy (Rusch et al. 2023).

    E(X) = (1/|V|) sum_i sum_{j in N(i)} ||x_i - x_j||^2, summed over the directed edge list
    as given, so an undirected bond stored in both directions counts twice.
    """
    return _dirichlet(_as_features(X), _as_edges(edge_index))


def _undirected_pairs(ei: np.ndarray) -> np.ndarray:
    """Distinct undirected edges (i < j) of an edge list, self-loops dropped: 2 x M."""
    lo, hi = np.minimum(ei[0], ei[1]), np.maximum(ei[0], ei[1])
    keep = lo != hi
    if not keep.any():
        return np.zeros((2, 0), dtype=np.int64)
    return np.unique(np.stack([lo[keep], hi[keep]]), axis=1)


def _normalized_dirichlet(X: np.ndarray, ei: np.ndarray) -> float:
    n = len(X)
    if n == 0:
        return 0.0
    pairs = _undirected_pairs(ei)
    degree = 1.0 + np.bincount(pairs.ravel(), minlength=n)  # row sums of A~ = A + I
    Y = X / np.sqrt(degree)[:, None]
    diff = Y[pairs[0]] - Y[pairs[1]]  # self-loops of A~ add ||y_i - y_i||^2 = 0
    return float(np.einsum("ij,ij->", diff, diff))


@serial_blas
def dirichlet_energy_normalized(X, edge_index) -> float:
    """Normalized Dirichlet energy tr(X^T Lap~ X) (Cai & Wang 2020).

    Lap~ = I - D~^(-1/2) A~ D~^(-1/2) with A~ = A + I, A the binary, symmetric adjacency of
    ``edge_index`` (each bond once whatever its directions; self-loops in ``edge_index`` are
    ignored, A~ adds them once) and D~ the degree matrix of A~. Computed as the equal sum
    over bonds {i, j} of ||x_i / sqrt(d_i) - x_j / sqrt(d_j)||^2.
    """
    return _normalized_dirichlet(_as_features(X), _as_edges(edge_index))


# --------------------------------------------------------------------------- similarity and rank
def _mean_cosine(S: np.ndarray) -> float:
    n = len(S)
    if n < 2:
        return float("nan")
    return float((S.sum() - np.trace(S)) / (n * (n - 1)))


@serial_blas
def mean_cosine(X) -> float:
    """Mean cosine similarity over the n(n-1)/2 distinct node pairs.

    Returns ``nan`` for fewer than 2 nodes. Zero rows count as cosine 0.
    """
    return _mean_cosine(_cosine_similarities(_as_features(X)))


def _singular_values(X: np.ndarray) -> np.ndarray:
    """Nonzero singular values of X, largest first, from the eigenvalues of its Gram matrix.

    The smaller of X X^T and X^T X is used (n <= 200 atoms: a few hundred microseconds, and
    unlike LAPACK's SVD it does not slow down when BLAS threads compete for busy cores).
    Values below ``RANK_RTOL`` * sigma_max count as zero.
    """
    if X.size == 0:
        return np.zeros(0)
    gram = X @ X.T if X.shape[0] <= X.shape[1] else X.T @ X
    eig = np.linalg.eigvalsh(gram)[::-1]
    if eig[0] <= 0:
        return np.zeros(0)
    eig = eig[eig > eig[0] * RANK_RTOL**2]
    return np.sqrt(eig)


def _effective_rank(s: np.ndarray) -> float:
    if s.size == 0:
        return 0.0
    p = s / s.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


def _numerical_rank(X: np.ndarray, s: np.ndarray) -> float:
    if s.size == 0:
        return 0.0
    return float(np.einsum("ij,ij->", X, X) / s[0] ** 2)


@serial_blas
def effective_rank(X) -> float:
    """Effective rank exp(-sum_k p_k log p_k), p_k = sigma_k / sum(sigma) (Roy & Vetterli 2007).

    Singular values below ``RANK_RTOL`` (1e-6) * sigma_max are dropped, so identical rows give
    exactly 1 and orthogonal rows of equal norm give n. All-zero X gives 0.
    """
    return _effective_rank(_singular_values(_as_features(X)))


@serial_blas
def numerical_rank(X) -> float:
    """Numerical (stable) rank ||X||_F^2 / ||X||_2^2; 0 for an all-zero X."""
    X = _as_features(X)
    return _numerical_rank(X, _singular_values(X))


# --------------------------------------------------------------------------- all at once
@serial_blas
def all_metrics(X, edge_index, near: int = 2, remote: int = 4) -> dict[str, float]:
    """Every over-smoothing metric of one graph's node features, sharing the work.

    Returns
    -------
    dict
        Keys ``mad``, ``mad_gap``, ``dirichlet_energy``, ``dirichlet_energy_normalized``,
        ``mean_cosine``, ``effective_rank``, ``numerical_rank`` (Python floats).
    """
    X = _as_features(X)
    ei = _as_edges(edge_index)
    n = len(X)
    S = _cosine_similarities(X)
    D = _cosine_distances(X, S)
    s = _singular_values(X)
    return {
        "mad": _mad_from_distances(D, _default_mask(n)),
        "mad_gap": _mad_gap_from(D, hop_distances(ei, n), near, remote),
        "dirichlet_energy": _dirichlet(X, ei),
        "dirichlet_energy_normalized": _normalized_dirichlet(X, ei),
        "mean_cosine": _mean_cosine(S),
        "effective_rank": _effective_rank(s),
        "numerical_rank": _numerical_rank(X, s),
    }
