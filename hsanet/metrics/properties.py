"""Property-prediction metrics for the MoleculeNet benchmarks (Wu et al., Chem. Sci. 2018).

Classification sets (BBBP, BACE, ClinTox, Tox21, SIDER, ToxCast, HIV) report ROC-AUC averaged
over tasks, each task scored on the molecules that have its label, and tasks whose scored labels
hold only one class skipped (the usual MoleculeNet / OGB ``molhiv`` practice). Regression sets
(ESOL, FreeSolv, Lipophilicity) report RMSE; MAE is offered too.

Inputs may be numpy arrays, torch tensors or lists; results are Python floats.
"""
from __future__ import annotations

import math

import numpy as np


def _as_2d(a, dtype=np.float64) -> np.ndarray:
    """``a`` as an (n, T) numpy array (a 1-D input is one task)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=dtype)
    return a[:, None] if a.ndim == 1 else a


def _label_mask(y_true: np.ndarray, mask) -> np.ndarray:
    """Boolean (n, T) mask of present labels: ``mask`` (if given) and not NaN."""
    present = ~np.isnan(y_true)
    if mask is not None:
        present &= _as_2d(mask) != 0
    return present


def roc_auc_multitask(y_true, y_score, mask=None) -> tuple[float, list[float]]:
    """Mean ROC-AUC over the tasks that have both classes among their labelled molecules.

    Parameters
    ----------
    y_true : (n, T) or (n,)
        0/1 labels; NaN counts as missing.
    y_score : (n, T) or (n,)
        Scores or probabilities (higher = more likely positive).
    mask : (n, T) or (n,), optional
        1 where the label is present, 0 where missing.

    Returns
    -------
    mean : float
        Mean over the scored tasks, ``nan`` when no task could be scored.
    per_task : list of float
        One ROC-AUC per task, ``nan`` for the skipped ones.
    """
    from sklearn.metrics import roc_auc_score

    y_true, y_score = _as_2d(y_true), _as_2d(y_score)
    if y_true.shape != y_score.shape:
        raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} differ in shape")
    present = _label_mask(y_true, mask)
    per_task = []
    for t in range(y_true.shape[1]):
        labels = y_true[present[:, t], t]
        if np.unique(labels).size < 2:
            per_task.append(float("nan"))
            continue
        per_task.append(float(roc_auc_score(labels, y_score[present[:, t], t])))
    scored = [v for v in per_task if not math.isnan(v)]
    return (float(np.mean(scored)) if scored else float("nan")), per_task


def _residuals(y_true, y_pred, mask) -> np.ndarray:
    y_true, y_pred = _as_2d(y_true), _as_2d(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    present = _label_mask(y_true, mask)
    return (y_pred - y_true)[present]


def rmse(y_true, y_pred, mask=None) -> float:
    """Root-mean-square error over the present labels (all tasks pooled); ``nan`` if none."""
    r = _residuals(y_true, y_pred, mask)
    return float(np.sqrt(np.mean(r**2))) if r.size else float("nan")


def mae(y_true, y_pred, mask=None) -> float:
    """Mean absolute error over the present labels (all tasks pooled); ``nan`` if none."""
    r = _residuals(y_true, y_pred, mask)
    return float(np.mean(np.abs(r))) if r.size else float("nan")
