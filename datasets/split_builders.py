"""Split builders used when a dataset's split file is missing.

They make exactly upstream's random calls in upstream's order, on the ``rng`` they are given (a private
``random.Random(SEED)`` in the readers; the global `random` module when ``rng`` is None, as upstream), so the
same seed and the same inputs give upstream's split. Directory listings are sorted.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dassl.data.datasets import Datum
from dassl.errors import FileContentError

logger = logging.getLogger(__name__)

__all__ = ["list_visible", "split_trainval", "read_and_split_data", "split_label_groups", "folder_listing"]


def list_visible(path: str) -> list[str]:
    """Non-hidden entries of ``path`` (no leading ``.``), sorted by code point."""
    return sorted(name for name in os.listdir(path) if not name.startswith("."))


def _rng(rng: Any) -> Any:
    return random if rng is None else rng


def split_trainval(
    trainval: Sequence[Datum], p_val: float = 0.2, rng: random.Random | None = None
) -> tuple[list[Datum], list[Datum]]:
    """Split an official trainval list into train/val per label (upstream ``OxfordPets.split_trainval``).

    Labels are visited in first-appearance order; per label ``n_val = round(n * p_val)`` (must be > 0, so a
    label needs at least 3 items), one ``shuffle`` of the label's indices, the first ``n_val`` go to val.
    """
    rng = _rng(rng)
    groups: dict[int, list[int]] = {}
    for idx, item in enumerate(trainval):
        groups.setdefault(item.label, []).append(idx)
    train: list[Datum] = []
    val: list[Datum] = []
    for label, idxs in groups.items():
        n_val = round(len(idxs) * p_val)
        if n_val <= 0:
            raise FileContentError(
                f"class {trainval[idxs[0]].classname!r} has {len(idxs)} trainval image(s), so "
                f"round({len(idxs)} * {p_val}) = 0 validation items",
                f"label {label}",
                "every class needs at least 3 trainval images",
            )
        rng.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


def split_label_groups(
    groups: Iterable[tuple[int, str, list[str]]],
    p_trn: float = 0.5,
    p_val: float = 0.2,
    rng: random.Random | None = None,
) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Shuffle each ``(label, classname, image paths)`` group once and cut it 50/20/30.

    Groups are processed in the given order; ``n_train = round(n * p_trn)``, ``n_val = round(n * p_val)``,
    the rest is test; all three must be positive (a class needs at least 4 images).
    """
    rng = _rng(rng)
    train: list[Datum] = []
    val: list[Datum] = []
    test: list[Datum] = []
    for label, classname, paths in groups:
        images = list(paths)
        rng.shuffle(images)
        n = len(images)
        n_train, n_val = round(n * p_trn), round(n * p_val)
        n_test = n - n_train - n_val
        if n_train <= 0 or n_val <= 0 or n_test <= 0:
            raise FileContentError(
                f"class {classname!r} has {n} image(s): split {n_train}/{n_val}/{n_test} (train/val/test) leaves "
                "an empty part",
                f"label {label}",
                "every class needs at least 4 images",
            )

        parts = (images[:n_train], images[n_train : n_train + n_val], images[n_train + n_val :])
        for out, part in zip((train, val, test), parts, strict=True):
            out += [Datum(impath=p, label=label, classname=classname, check=False) for p in part]
    return train, val, test


def read_and_split_data(
    image_dir: str,
    p_trn: float = 0.5,
    p_val: float = 0.2,
    ignored: Sequence[str] = (),
    new_cnames: Mapping[str, str] | None = None,
    rng: random.Random | None = None,
) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Build train/val/test from a folder-per-class tree (upstream ``DTD.read_and_split_data``).

    Categories = sorted non-hidden folders minus ``ignored``; label = index in that list (before renaming);
    class name = ``new_cnames[folder]`` if given, else the folder name; images sorted, then one shuffle per
    category in label order.
    """
    categories = [c for c in list_visible(image_dir) if c not in set(ignored)]
    stray = [c for c in categories if not os.path.isdir(os.path.join(image_dir, c))]
    if stray:  # upstream would crash listing them; they cannot be classes
        logger.warning("Ignoring non-folder entries in %s: %s", image_dir, stray)
        categories = [c for c in categories if c not in stray]
    new_cnames = new_cnames or {}

    def groups() -> Iterable[tuple[int, str, list[str]]]:
        for label, category in enumerate(categories):
            category_dir = os.path.join(image_dir, category)
            paths = [os.path.join(category_dir, name) for name in list_visible(category_dir)]
            yield label, new_cnames.get(category, category), paths

    return split_label_groups(groups(), p_trn, p_val, rng)


def folder_listing(image_dir: str) -> dict[str, list[str]]:
    """Sorted non-hidden files of every sorted non-hidden category folder: the split input, for cache keys."""
    return {
        category: list_visible(os.path.join(image_dir, category))
        for category in list_visible(image_dir)
        if os.path.isdir(os.path.join(image_dir, category))
    }
