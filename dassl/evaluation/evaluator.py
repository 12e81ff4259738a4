"""Evaluators: the ``Classification`` result block that ``parse_test_res.py`` reads.

Kept from upstream: the printed block (``=> result`` ... ``* macro_f1: x%``), the per-class block, and
``evaluate()`` returning an ``OrderedDict`` with ``accuracy``, ``error_rate``, ``macro_f1`` [,
``perclass_accuracy``] in that order. Changed: scikit-learn is not needed, the confusion
matrix file is tagged by split (``cmat_{split}.pt``; ``cmat.pt`` when no split is given) and saved atomically
as a float64 tensor, per-class names can come from the evaluated split, and under ``torch.distributed``
with world size > 1 the predictions of every rank are gathered before the metrics are computed (only
rank 0 prints and saves).
The raw counts behind the percentages are available as ``counts()`` (and upstream's ``_total``/``_correct``).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from ..utils.atomic import atomic_torch_save
from ..utils.process_group import get_world_size, is_distributed, is_main_process
from .build import EVALUATOR_REGISTRY
from .label_metrics import confusion_matrix, macro_f1_score

__all__ = ["EvaluatorBase", "Classification"]


class EvaluatorBase:
    """Interface: ``reset()``, ``process(model_output, ground_truth)``, ``evaluate() -> OrderedDict``."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def reset(self) -> None:
        raise NotImplementedError

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        raise NotImplementedError

    def evaluate(self) -> OrderedDict:
        raise NotImplementedError


def _gather_from_ranks(values: list[int]) -> list[int]:
    """Concatenate a list of ints over all ranks (identity without an initialised process group)."""
    if not is_distributed():
        return values
    gathered: list[Any] = [None] * get_world_size()
    torch.distributed.all_gather_object(gathered, values)
    return [v for part in gathered for v in part]


@EVALUATOR_REGISTRY.register()
class Classification(EvaluatorBase):
    """Accuracy, error, macro-F1 (and optionally per-class accuracy / confusion matrix) of classifiers."""

    def __init__(self, cfg: Any, lab2cname: dict[int, str] | None = None, **kwargs: Any) -> None:
        super().__init__(cfg)
        self._lab2cname = lab2cname
        self._per_class_res = cfg.TEST.PER_CLASS_RESULT
        if self._per_class_res and lab2cname is None:
            raise ValueError(
                "TEST.PER_CLASS_RESULT is True but the Classification evaluator got no lab2cname; "
                "pass lab2cname=... (label -> class name) or turn TEST.PER_CLASS_RESULT off"
            )
        self.reset()

    def reset(self) -> None:
        self._correct = 0
        self._total = 0
        self._y_true: list[int] = []
        self._y_pred: list[int] = []

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        """Record one batch: ``mo`` scores ``[B, C]``, ``gt`` labels ``[B]``."""
        if isinstance(mo, (tuple, list)):
            mo = mo[0]
        pred = mo.argmax(dim=1)
        matches = pred.eq(gt)
        self._correct += int(matches.sum().item())
        self._total += int(gt.shape[0])
        self._y_true.extend(gt.detach().cpu().tolist())
        self._y_pred.extend(pred.detach().cpu().tolist())

    def counts(self) -> dict[str, int]:
        """``{"total": n, "correct": c}`` of the last ``evaluate()`` (all ranks), for results.jsonl."""
        return {"total": self._total, "correct": self._correct}

    def evaluate(self, split: str | None = None, lab2cname: dict[int, str] | None = None) -> OrderedDict:
        """Compute and print the result block; return ``OrderedDict`` (accuracy, error_rate, macro_f1[, ...]).

        ``split`` tags the confusion-matrix file; ``lab2cname`` (names of the evaluated split's labels)
        overrides the constructor's mapping for the per-class block.
        """
        y_true = _gather_from_ranks(self._y_true)
        y_pred = _gather_from_ranks(self._y_pred)
        if not y_true:
            raise RuntimeError("Classification.evaluate() called before any process() call: no samples to score")
        # The recorded lists stay per-rank (evaluate() can be called again); the counts become global.
        yt = np.asarray(y_true, dtype=np.int64)
        yp = np.asarray(y_pred, dtype=np.int64)
        self._total = int(yt.size)
        self._correct = int(np.sum(yt == yp))

        results: OrderedDict[str, float] = OrderedDict()
        acc = 100.0 * self._correct / self._total
        err = 100.0 - acc
        macro_f1 = 100.0 * macro_f1_score(yt, yp)
        results["accuracy"] = acc
        results["error_rate"] = err
        results["macro_f1"] = macro_f1

        main = is_main_process()
        if main:
            print(
                "=> result\n"
                f"* total: {self._total:,}\n"
                f"* correct: {self._correct:,}\n"
                f"* accuracy: {acc:.1f}%\n"
                f"* error: {err:.1f}%\n"
                f"* macro_f1: {macro_f1:.1f}%"
            )

        if self._per_class_res:
            lines = []
            names = lab2cname if lab2cname is not None else self._lab2cname
            accs = []
            lines.append("=> per-class result")
            for label in np.unique(yt).tolist():
                mask = yt == label
                total = int(mask.sum())
                correct = int((yp[mask] == label).sum())
                class_acc = 100.0 * correct / total
                accs.append(class_acc)
                classname = names.get(label, str(label)) if names is not None else str(label)
                lines.append(
                    f"* class: {label} ({classname})\ttotal: {total:,}\tcorrect: {correct:,}\tacc: {class_acc:.1f}%"
                )
            mean_acc = float(np.mean(accs))
            lines.append(f"* average: {mean_acc:.1f}%")
            if main:
                print("\n".join(lines))
            results["perclass_accuracy"] = mean_acc

        if self.cfg.TEST.COMPUTE_CMAT and main:
            cmat = torch.from_numpy(confusion_matrix(yt, yp, normalize="true"))
            fname = f"cmat_{split}.pt" if split else "cmat.pt"
            save_path = os.path.join(self.cfg.OUTPUT_DIR, fname)
            atomic_torch_save(cmat, save_path)
            print(f"Confusion matrix is saved to {save_path}")

        return results
