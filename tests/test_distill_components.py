"""Shared distillation pieces in trainers.common: base-to-novel evaluation by logit columns, the frozen teacher."""

from __future__ import annotations

import pytest
import torch

from dassl.config import get_cfg_default
from trainers.common import ClassSubsetEvaluator, base_novel_subsets


def test_base_novel_subsets_split_the_labels_like_subsample_classes():
    assert base_novel_subsets(5) == {"base": [0, 1, 2], "new": [3, 4]}
    assert base_novel_subsets(4) == {"base": [0, 1], "new": [2, 3]}


def test_subset_scores_equal_a_classifier_built_for_the_subset_alone():
    torch.manual_seed(0)
    cfg = get_cfg_default()
    logits, labels = torch.randn(40, 6), torch.randint(0, 6, (40,))
    subsets = {"odd": [5, 1, 3], "low": [0, 1]}
    evaluator = ClassSubsetEvaluator(cfg, {i: f"c{i}" for i in range(6)}, subsets)
    for rows in torch.arange(40).split(7):  # batches mixing the subsets' images
        evaluator.process(logits[rows], labels[rows])
    for name, classes in subsets.items():
        keep = torch.isin(labels, torch.tensor(classes))
        predicted = torch.tensor(classes)[logits[keep][:, classes].argmax(-1)]
        results = evaluator.evaluate(name, "test")
        assert evaluator.evaluators[name].counts() == {
            "total": int(keep.sum()),
            "correct": int((predicted == labels[keep]).sum()),
        }
        assert results["accuracy"] == pytest.approx(100.0 * (predicted == labels[keep]).float().mean().item())


@pytest.mark.parametrize("labels", [[], [0, 0], [6]])
def test_a_bad_subset_is_refused(labels):
    with pytest.raises(ValueError, match="distinct labels in"):
        ClassSubsetEvaluator(get_cfg_default(), {i: str(i) for i in range(6)}, {"s": labels})
