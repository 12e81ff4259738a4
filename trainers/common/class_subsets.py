"""Evaluation on class subsets by logit columns: base-to-novel generalisation for any trainer.

A classifier over all C classes is scored on a subset S by keeping the test images whose label is in S and the
logit columns of S, labels renumbered ``0..|S|-1`` in S's order. For the cosine classifiers of this project
(each class logit depends on that class's features alone) this is exactly a classifier built for S evaluated on
S's images, which is what base-to-novel protocols do by rebuilding datasets and classifiers; here one pass over
the test images scores every subset, and no loader, evaluator or model attribute of the trainer changes.
"""

from __future__ import annotations

import logging
import os.path as osp
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from tqdm import tqdm

from dassl.base_novel import harmonic_mean
from dassl.data.datasets import base_new_labels
from dassl.engine import distributed as ddp
from dassl.engine.results_log import RESULTS_FILE, append_result_line, build_result_record
from dassl.evaluation import build_evaluator

__all__ = ["ClassSubsetEvaluator", "base_novel_subsets", "evaluate_class_subsets", "report_base_novel"]

logger = logging.getLogger(__name__)


def base_novel_subsets(num_classes: int) -> dict[str, list[int]]:
    """``{"base": first ceil(C/2) labels, "new": the rest}`` (the split ``DATASET.SUBSAMPLE_CLASSES`` uses)."""
    base, new = base_new_labels(range(num_classes))
    return {"base": base, "new": new}


class ClassSubsetEvaluator:
    """One evaluator per named subset of labels, fed from logits over all classes."""

    def __init__(self, cfg, lab2cname: Mapping[int, str], subsets: Mapping[str, Sequence[int]]) -> None:
        num_classes = len(lab2cname)
        self.subsets = {name: list(labels) for name, labels in subsets.items()}
        self.evaluators = {}
        self._index = {}  # name -> [C] tensor: label -> position in the subset, -1 outside it
        for name, labels in self.subsets.items():
            outside = sorted(set(labels) - set(range(num_classes)))
            if not labels or outside or len(set(labels)) != len(labels):
                raise ValueError(
                    f"class subset {name!r} must list distinct labels in [0, {num_classes}), got {labels[:10]}"
                )
            index = torch.full((num_classes,), -1, dtype=torch.long)
            index[labels] = torch.arange(len(labels))
            self._index[name] = index
            self.evaluators[name] = build_evaluator(cfg, lab2cname={i: lab2cname[y] for i, y in enumerate(labels)})

    def reset(self) -> None:
        for evaluator in self.evaluators.values():
            evaluator.reset()

    def process(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Give each subset's evaluator its images (rows) and its classes (columns), labels renumbered."""
        for name, labels_in in self.subsets.items():
            index = self._index[name].to(labels.device)[labels]
            keep = index >= 0
            if keep.any():
                columns = torch.as_tensor(labels_in, device=logits.device)
                self.evaluators[name].process(logits[keep][:, columns], index[keep])

    def evaluate(self, name: str, split: str) -> OrderedDict:
        """Print and return subset ``name``'s result block (a confusion matrix file is tagged ``<split>_<name>``)."""
        return self.evaluators[name].evaluate(split=f"{split}_{name}")


@torch.no_grad()
def evaluate_class_subsets(trainer, subsets: Mapping[str, Sequence[int]], split: str = "test") -> dict[str, float]:
    """Score ``trainer``'s model on each subset of the classes of ``trainer.test_loader`` in one pass.

    Each subset gets the engine's result block (its ``Evaluate on the *<split>* set`` header kept for log
    readers), tensorboard scalars ``<split>/<subset>/<metric>`` and a ``results.jsonl`` record with
    ``classes=<subset>``. Returns the first metric (accuracy) per subset.
    """
    trainer.set_model_mode("eval")
    evaluator = ClassSubsetEvaluator(trainer.cfg, trainer.lab2cname, subsets)
    for batch in tqdm(trainer.test_loader, desc=f"eval {split}", leave=False, disable=None):  # None: on a tty
        image, label = trainer.parse_batch_test(batch)
        with trainer.autocast():
            logits = trainer.model_inference(image)
        evaluator.process(logits, label)
    first = {}
    for name in subsets:
        logger.info("%s classes (%d)", name, len(subsets[name]))
        print(f"Evaluate on the *{split}* set")  # the engine's block header, one per subset
        results = evaluator.evaluate(name, split)
        for key, value in results.items():
            trainer.write_scalar(f"{split}/{name}/{key}", value, trainer.epoch)
        trainer.record_results(split, {**results, **evaluator.evaluators[name].counts()}, classes=name)
        first[name] = next(iter(results.values()))
    return first


def report_base_novel(trainer, base: float, novel: float) -> float:
    """Print upstream's base-to-novel block and append the ``summary`` record; returns the harmonic mean."""
    hm = harmonic_mean(base, novel)
    print("=> base-to-novel result")
    print(f"* base_accuracy: {base:.1f}%")
    print(f"* novel_accuracy: {novel:.1f}%")
    print(f"* HM: {hm:.1f}%")
    if ddp.is_main_process():
        phase = trainer._eval_phase
        record = build_result_record(
            trainer.cfg,
            split="test",
            classes="all",
            phase=phase,
            epoch=trainer._result_epoch(phase),
            metrics={},
            event="summary",
        )
        del record["metrics"]
        record.update(base=float(base), novel=float(novel), hm=float(hm))
        append_result_line(osp.join(trainer.output_dir, RESULTS_FILE), record)
    return hm
