"""What upstream copies into every reader, in one place (datasets.md §2-§7, docs/design.md "Data").

- split files: `read_split` / `write_split` (`split_io`), builders `split_trainval` / `read_and_split_data`
  (`split_builders`), the cache directory `cache_dir` (`cache`);
- the one base/new class split, `subsample_classes` (§5), also used by the PromptKD trainer (decision 3);
- `finalize_dataset`, the §6 assembly of ``train_x`` / ``val`` / ``test`` shared by every reader;
- small reader helpers: `dataset_root`, `reader_seed`, `make_rng`, `require_dataset_dir`.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Iterable, Sequence
from typing import Any

from dassl.data.datasets import Datum

from .cache import cache_dir, load_upstream_pickle
from .split_builders import list_visible, read_and_split_data, split_trainval
from .split_io import MissingImagesError, SplitFileError, read_split, write_split

__all__ = [
    "SUBSAMPLE_CHOICES",
    "VAL_SOURCE_CHOICES",
    "DATASETS_DOC",
    "base_new_labels",
    "subsample_classes",
    "finalize_dataset",
    "dataset_root",
    "reader_seed",
    "make_rng",
    "require_dataset_dir",
    "cache_dir",
    "read_split",
    "write_split",
    "split_trainval",
    "read_and_split_data",
    "list_visible",
    "load_upstream_pickle",
    "MissingImagesError",
    "SplitFileError",
]

logger = logging.getLogger(__name__)

SUBSAMPLE_CHOICES = ("all", "base", "new")
VAL_SOURCE_CHOICES = ("test", "val")
DATASETS_DOC = "DATASETS.md"


def base_new_labels(labels: Iterable[int]) -> tuple[list[int], list[int]]:
    """The base-to-novel class split: the distinct labels sorted, base = the first ``ceil(n / 2)``, new = the rest."""
    ordered = sorted(set(labels))
    m = math.ceil(len(ordered) / 2)
    return ordered[:m], ordered[m:]


def subsample_classes(*args: Sequence[Datum], subsample: str = "all") -> Any:
    """Keep the base or the new half of the classes and relabel them from 0 (datasets.md §5).

    The class set comes from the FIRST list only: its distinct labels sorted, ``m = ceil(n / 2)``; ``base``
    keeps ``labels[:m]``, ``new`` keeps ``labels[m:]``; every list is filtered (order kept) and relabelled
    ``y -> index of y in the selection``. ``all`` returns the arguments themselves (a tuple, upstream).
    Returns a list with one filtered list per argument otherwise (upstream ``OxfordPets.subsample_classes``).
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


def _cfg_choice(cfg: Any, key: str, default: str, choices: Sequence[str]) -> str:
    value = str(getattr(cfg.DATASET, key, default))
    if value not in choices:
        raise ValueError(f"DATASET.{key} must be one of {list(choices)}, got {value!r}")
    return value


def finalize_dataset(
    cfg: Any, train: list[Datum], val: list[Datum] | None, test: list[Datum]
) -> tuple[list[Datum], list[Datum] | None, list[Datum]]:
    """Assemble ``(train_x, val, test)`` after few-shot sampling (datasets.md §6, non-PromptKD branch).

    ``train_x`` = train subsampled by ``DATASET.SUBSAMPLE_CLASSES``, ``test`` = test subsampled the same way,
    and ``val`` = that subsampled test list when ``DATASET.VAL_SOURCE == "test"`` (upstream: model selection on
    test data) or the real, subsampled val split when ``"val"``. PromptKD builds its own base/novel sets from
    ``test`` with `subsample_classes` (decision 3).
    """
    subsample = _cfg_choice(cfg, "SUBSAMPLE_CLASSES", "all", SUBSAMPLE_CHOICES)
    val_source = _cfg_choice(cfg, "VAL_SOURCE", "test", VAL_SOURCE_CHOICES)
    if val_source == "test":
        train_x, test_out = subsample_classes(train, test, subsample=subsample)
        return train_x, test_out, test_out
    if val is None:
        raise ValueError(
            f"DATASET.VAL_SOURCE is 'val' but {cfg.DATASET.NAME or 'this dataset'} has no validation split "
            "(ImageNet uses its official val images as the test set); use DATASET.VAL_SOURCE test"
        )
    train_x, val_out, test_out = subsample_classes(train, val, test, subsample=subsample)
    return train_x, val_out, test_out


def dataset_root(cfg: Any) -> str:
    """``DATASET.ROOT`` expanded (``~``) and made absolute (datasets.md §0)."""
    root = str(cfg.DATASET.ROOT or "")
    if not root:
        raise ValueError(
            "DATASET.ROOT is empty: set it (--root or DATASET.ROOT) to the folder holding the dataset folders "
            f"(e.g. ROOT/oxford_pets); see {DATASETS_DOC}"
        )
    return os.path.abspath(os.path.expanduser(root))


def reader_seed(cfg: Any) -> int | None:
    """``SEED`` if it is >= 0, else None (unseeded: nothing cached, decision 8)."""
    seed = int(cfg.SEED)
    return seed if seed >= 0 else None


def make_rng(seed: int | None) -> random.Random:
    """The reader's private RNG (datasets.md §7, §11): ``Random(seed)``, or OS-seeded when unseeded."""
    return random.Random(seed) if seed is not None else random.Random()


def require_dataset_dir(root: str, folder: str, name: str, layout: str) -> str:
    """``root/folder`` if it is a directory, else `FileNotFoundError` showing the expected layout."""
    path = os.path.join(root, folder)
    if not os.path.isdir(path):
        found = ", ".join(list_visible(root)[:20]) if os.path.isdir(root) else "(DATASET.ROOT does not exist)"
        raise FileNotFoundError(
            f"{name}: dataset folder {path} not found (DATASET.ROOT={root}; entries there: {found}).\n"
            f"Expected layout under DATASET.ROOT:\n{layout.rstrip()}\n"
            f"See {DATASETS_DOC} (section {name}) for how to download and lay it out."
        )
    return path
