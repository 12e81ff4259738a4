"""Datasets: the `Datum` record, the `DatasetBase` class, the dataset registry and the base/new class split."""

from .base_dataset import DatasetBase, Datum, group_by_label, sample_few_shot
from .build import DATASET_REGISTRY, build_dataset
from .class_split import SUBSAMPLE_CHOICES, base_new_labels, subsample_classes

__all__ = [
    "DATASET_REGISTRY",
    "SUBSAMPLE_CHOICES",
    "build_dataset",
    "Datum",
    "DatasetBase",
    "base_new_labels",
    "sample_few_shot",
    "group_by_label",
    "subsample_classes",
]
