"""Macro-F1 and confusion matrix from label lists, without scikit-learn (upstream's hard dependency).

Both follow scikit-learn's definitions so numbers match upstream's ``f1_score(y_true, y_pred,
average="macro", labels=np.unique(y_true))`` and ``confusion_matrix(y_true, y_pred, normalize="true")``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["macro_f1_score", "confusion_matrix"]


def macro_f1_score(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Unweighted mean of per-class F1 over the labels present in ``y_true`` (in [0, 1]).

    Per class, F1 = 2 TP / (2 TP + FP + FN), which equals 2PR / (P + R) and is 0 where scikit-learn's
    zero-division rule gives 0 (no true positive). A predicted label that never occurs in ``y_true`` is not
    scored as a class (``labels=unique(y_true)``) but still counts as a miss (FN) of the true class.
    """
    yt = np.asarray(y_true, dtype=np.int64)
    yp = np.asarray(y_pred, dtype=np.int64)
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred differ in length: {yt.shape[0]} vs {yp.shape[0]}")
    if yt.size == 0:
        raise ValueError("macro_f1_score needs at least one sample")
    if yt.min() < 0 or yp.min() < 0:
        raise ValueError("macro_f1_score expects non-negative integer labels")
    n = int(max(yt.max(), yp.max())) + 1
    tp = np.bincount(yt[yt == yp], minlength=n).astype(np.float64)
    n_true = np.bincount(yt, minlength=n).astype(np.float64)
    n_pred = np.bincount(yp, minlength=n).astype(np.float64)
    labels = np.unique(yt)
    # 2TP + FP + FN = n_pred + n_true > 0 for every label present in y_true
    f1 = 2 * tp[labels] / (n_true[labels] + n_pred[labels])
    return float(f1.mean())


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], normalize: str | None = "true") -> np.ndarray:
    """Confusion matrix over the sorted union of labels; ``normalize="true"`` makes rows sum to 1.

    Rows are true labels, columns predictions. Rows without samples (labels only predicted) stay 0.
    """
    yt = np.asarray(y_true, dtype=np.int64)
    yp = np.asarray(y_pred, dtype=np.int64)
    labels = np.union1d(yt, yp)
    index = {int(label): i for i, label in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.float64)
    np.add.at(cm, ([index[int(v)] for v in yt], [index[int(v)] for v in yp]), 1)
    if normalize is None:
        return cm.astype(np.int64)
    if normalize != "true":
        raise ValueError(f"confusion_matrix: normalize must be 'true' or None, got {normalize!r}")
    with np.errstate(all="ignore"):
        cm = cm / cm.sum(axis=1, keepdims=True)
    return np.nan_to_num(cm)
