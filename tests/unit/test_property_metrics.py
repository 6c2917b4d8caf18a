"""MoleculeNet metrics: multitask ROC-AUC with missing labels, RMSE, MAE."""
import math

import numpy as np
import pytest
import torch

from hsanet.metrics.properties import mae, rmse, roc_auc_multitask


def test_roc_auc_multitask_masks_and_skips():
    y = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 1], [0, 1, 1]], dtype=float)
    s = np.array([[0.9, 0.2, 0.5], [0.1, 0.8, 0.4], [0.4, 0.7, 0.3], [0.6, 0.1, 0.2]])
    mask = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 0, 1]])
    mean, per_task = roc_auc_multitask(y, s, mask)
    # task 0: positives {0.9, 0.4}, negatives {0.1, 0.6}: 3 of 4 pairs ordered -> 0.75
    # task 1 (row 3 masked): positive {0.7}, negatives {0.2, 0.8} -> 0.5
    # task 2: one class only -> skipped
    assert per_task[0] == pytest.approx(0.75)
    assert per_task[1] == pytest.approx(0.5)
    assert math.isnan(per_task[2])
    assert mean == pytest.approx(0.625)


def test_roc_auc_nan_labels_and_torch_inputs():
    y = torch.tensor([1.0, 0.0, float("nan"), 1.0, 0.0])
    s = torch.tensor([0.9, 0.1, 0.0, 0.8, 0.3])
    mean, per_task = roc_auc_multitask(y, s)
    assert mean == pytest.approx(1.0) and per_task == [pytest.approx(1.0)]
    mean, per_task = roc_auc_multitask([[1], [1]], [[0.2], [0.3]])
    assert math.isnan(mean) and math.isnan(per_task[0])


def test_rmse_mae():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([2.0, 2.0, 1.0, 4.0])  # errors 1, 0, -2, 0
    assert rmse(y, p) == pytest.approx(math.sqrt(5 / 4))
    assert mae(y, p) == pytest.approx(3 / 4)
    assert rmse(y, p, mask=[1, 1, 0, 1]) == pytest.approx(math.sqrt(1 / 3))
    assert mae(torch.tensor(y), torch.tensor(p)) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        rmse(y, p[:3])
