"""Over-smoothing metrics against values worked out by hand on tiny graphs."""
import math

import numpy as np
import pytest
import torch

from hsanet.metrics import oversmoothing as om


def path_edges(n):
    """Edge index of the path 0-1-...-(n-1), both directions (as PyG stores bonds)."""
    one_way = [(i, i + 1) for i in range(n - 1)]
    return np.array(one_way + [(j, i) for i, j in one_way]).T


def test_identical_rows_are_fully_smoothed():
    X = np.tile([0.3, -1.0, 2.0], (5, 1))
    assert om.mad(X) == 0.0
    assert om.effective_rank(X) == pytest.approx(1.0, abs=1e-12)
    assert om.numerical_rank(X) == pytest.approx(1.0)
    assert om.mean_cosine(X) == pytest.approx(1.0)
    assert om.dirichlet_energy(X, path_edges(5)) == 0.0


def test_orthogonal_rows():
    X = 3.0 * np.eye(4)
    assert om.mean_cosine(X) == pytest.approx(0.0, abs=1e-12)
    assert om.effective_rank(X) == pytest.approx(4.0)
    assert om.numerical_rank(X) == pytest.approx(4.0)
    assert om.mad(X) == pytest.approx(1.0)  # every pair at cosine distance 1


def test_ranks_by_hand():
    X = np.diag([3.0, 1.0])  # singular values 3 and 1
    p = np.array([0.75, 0.25])
    assert om.effective_rank(X) == pytest.approx(math.exp(-np.sum(p * np.log(p))))
    assert om.numerical_rank(X) == pytest.approx(10.0 / 9.0)
    assert om.effective_rank(np.zeros((3, 4))) == 0.0
    assert om.numerical_rank(np.zeros((3, 4))) == 0.0


def test_mean_cosine_by_hand():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # pair cosines 0, 1/sqrt2, 1/sqrt2
    assert om.mean_cosine(X) == pytest.approx(math.sqrt(2) / 3)
    assert math.isnan(om.mean_cosine(np.ones((1, 3))))


def test_mad_by_hand_with_mask_and_zero_row():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # distances: 0-1: 1, 0-2: 2, 1-2: 1
    # per node: (1+2)/2, (1+1)/2, (2+1)/2
    assert om.mad(X) == pytest.approx((1.5 + 1.0 + 1.5) / 3)
    mask = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]])  # only the pair 0-1
    assert om.mad(X, mask) == pytest.approx(1.0)
    assert om.mad(X, torch.tensor(mask)) == pytest.approx(1.0)
    # a zero row has cosine 0, distance 1, with every row (scikit-learn's convention)
    Z = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    assert om.mad(Z) == pytest.approx((1.0 + 1.0 + 1.0) / 3)
    assert not math.isnan(om.mad(np.zeros((3, 2))))


def test_dirichlet_energy_path3_by_hand():
    X = np.array([[1.0], [2.0], [4.0]])
    ei = path_edges(3)
    # Rusch: each bond counted in both directions: 2 * (1^2 + 2^2) over 3 nodes
    assert om.dirichlet_energy(X, ei) == pytest.approx(10.0 / 3.0)
    # Cai & Wang: degrees with self-loops 2, 3, 2
    expected = (1 / math.sqrt(2) - 2 / math.sqrt(3)) ** 2 + (2 / math.sqrt(3) - 4 / math.sqrt(2)) ** 2
    assert om.dirichlet_energy_normalized(X, ei) == pytest.approx(expected)
    # one direction per bond, or an explicit self-loop, describes the same undirected graph
    one_way_with_loop = np.array([[0, 1, 2], [1, 2, 2]])
    assert om.dirichlet_energy_normalized(X, one_way_with_loop) == pytest.approx(expected)


def test_dirichlet_normalized_equals_trace_form():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 3))
    ei = np.array([[0, 1, 1, 2, 2, 3, 0, 2], [1, 0, 2, 1, 3, 2, 2, 0]])  # path + chord 0-2
    A = np.zeros((4, 4))
    A[ei[0], ei[1]] = 1
    At = A + np.eye(4)
    d = At.sum(1)
    lap = np.eye(4) - At / np.sqrt(np.outer(d, d))
    assert om.dirichlet_energy_normalized(X, ei) == pytest.approx(np.trace(X.T @ lap @ X))
    assert om.dirichlet_energy(X, ei) == pytest.approx(
        sum(np.sum((X[i] - X[j]) ** 2) for i, j in ei.T) / 4
    )


def test_hop_distances():
    hops = om.hop_distances(np.array([[0, 1], [1, 2]]), 4)  # one direction suffices
    assert hops[0, 2] == 2 and hops[2, 0] == 2 and hops[1, 1] == 0
    assert np.isinf(hops[0, 3])


def test_mad_gap_path6_by_hand():
    # node k at angle 45 deg * k: 1 hop apart -> 1 - cos45, 2 hops -> 1, 4 hops -> 2, 5 hops -> 1 + cos45
    angles = np.deg2rad(45.0 * np.arange(6))
    X = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    a, b = 1 - math.sqrt(0.5), 1 + math.sqrt(0.5)
    # remote pairs (>= 4 hops): 0-4 (2), 0-5 (b), 1-5 (2); nodes 0, 1, 4, 5
    mad_remote = ((2 + b) / 2 + 2 + 2 + (2 + b) / 2) / 4
    # near pairs (1-2 hops), per node
    near = [(a + 1) / 2, (2 * a + 1) / 3, (2 * a + 2) / 4, (2 * a + 2) / 4, (2 * a + 1) / 3, (a + 1) / 2]
    mad_near = sum(near) / 6
    assert om.mad_gap(X, path_edges(6)) == pytest.approx(mad_remote - mad_near)


def test_mad_gap_nan_without_remote_pairs():
    X = np.eye(3)
    assert math.isnan(om.mad_gap(X, path_edges(3)))  # a 3-atom molecule has no 4-hop pair
    two_parts = np.array([[0, 1, 2, 3], [1, 0, 3, 2]])  # unreachable pairs are not remote
    assert math.isnan(om.mad_gap(np.eye(4), two_parts, remote=2))


def test_torch_and_numpy_agree_and_all_metrics_keys():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(12, 8))
    ei = path_edges(12)
    ref = om.all_metrics(X, ei)
    assert set(ref) == {
        "mad", "mad_gap", "dirichlet_energy", "dirichlet_energy_normalized",
        "mean_cosine", "effective_rank", "numerical_rank",
    }
    assert all(isinstance(v, float) for v in ref.values())
    from_torch = om.all_metrics(torch.tensor(X), torch.tensor(ei))
    assert from_torch == pytest.approx(ref, rel=1e-12)
    from_float32 = om.all_metrics(torch.tensor(X, dtype=torch.float32), torch.tensor(ei))
    assert from_float32 == pytest.approx(ref, rel=1e-5)
    singles = {
        "mad": om.mad(X), "mad_gap": om.mad_gap(X, ei), "dirichlet_energy": om.dirichlet_energy(X, ei),
        "dirichlet_energy_normalized": om.dirichlet_energy_normalized(X, ei),
        "mean_cosine": om.mean_cosine(X), "effective_rank": om.effective_rank(X),
        "numerical_rank": om.numerical_rank(X),
    }
    assert singles == pytest.approx(ref, rel=1e-10)


def test_all_metrics_is_fast():
    import time

    rng = np.random.default_rng(2)
    X, ei = rng.normal(size=(30, 300)), path_edges(30)
    om.all_metrics(X, ei)
    start = time.perf_counter()
    for _ in range(20):
        om.all_metrics(X, ei)
    per_call = (time.perf_counter() - start) / 20
    assert per_call < 0.05  # about 2 ms here; generous for a busy CI machine
