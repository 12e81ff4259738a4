"""The base-to-novel class split, in the data layer so that readers and trainers share one rule.

Base-to-novel benchmarks train on the first half of the classes and test on both halves: the distinct labels
sorted, base = the first ``ceil(n / 2)``, new = the rest (CoOp/CoCoOp's protocol, used by every method since).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

from .base_dataset import Datum

__all__ = ["SUBSAMPLE_CHOICES", "base_new_labels", "subsample_classes"]

logger = logging.getLogger(__name__)

SUBSAMPLE_CHOICES = ("all", "base", "new")


def base_new_labels(labels: Iterable[int]) -> tuple[list[int], list[int]]:
    """The base-to-novel class split: the distinct labels sorted, base = the first ``ceil(n / 2)``, new = the rest."""
    ordered = sorted(set(labels))
    m = math.ceil(len(ordered) / 2)
    return ordered[:m], ordered[m:]


def subsample_classes(*args: Sequence[Datum], subsample: str = "all") -> Any:
    """Keep the base or the new half of the classes and relabel them from 0.

    The class set comes from the FIRST list only (:func:`base_new_labels` of its labels); every list is filtered
    (order kept) and relabelled ``y -> index of y in the selection``. ``all`` returns the arguments themselves (a
    tuple, as upstream's ``OxfordPets.subsample_classes``); otherwise a list with one filtered list per argument.
    """
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(
            f"subsample must be one of {list(SUBSAMPLE_CHOICES)} (DATASET.SUBSAMPLE_CLASSES), got {subsample!r}"
        )
    if subsample == "all":
        return args
    if not args:
        raise ValueError("subsample_classes needs at least one list (the first one defines the classes)")
    base, new = base_new_labels({item.label for item in args[0]})
    selected = base if subsample == "base" else new
    relabel = {y: i for i, y in enumerate(selected)}
    logger.info("Subsample %s classes: %d of %d", subsample, len(selected), len(base) + len(new))
    return [
        [
            Datum(impath=it.impath, label=relabel[it.label], domain=it.domain, classname=it.classname, check=False)
            for it in items
            if it.label in relabel
        ]
        for items in args
    ]
