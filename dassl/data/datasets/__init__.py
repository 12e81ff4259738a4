"""Datasets: the `Datum` record, the `DatasetBase` class and the dataset registry (dassl-api.md §1.2, §4)."""

from .base_dataset import DatasetBase, Datum, group_by_label, sample_few_shot
from .build import DATASET_REGISTRY, build_dataset

__all__ = ["DATASET_REGISTRY", "build_dataset", "Datum", "DatasetBase", "sample_few_shot", "group_by_label"]
