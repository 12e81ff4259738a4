"""What upstream copies into every reader, in one place (docs/design.md "Data").

- `finalize_dataset`: the assembly of ``train_x`` / ``val`` / ``test`` after few-shot sampling, shared by every
  reader, with the base/new class split `subsample_classes` (defined in ``dassl.data.datasets.class_split`` so
  that trainers reach it through the engine's data layer);
- small reader helpers: `dataset_root`, `reader_seed`, `make_rng`, `require_dataset_dir`.

Split files live in `split_io` / `split_builders`, the reader cache in `cache`.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from typing import Any

from dassl.data.datasets import SUBSAMPLE_CHOICES, Datum, subsample_classes
from dassl.errors import ConfigError, InputFileError

from .split_builders import list_visible

__all__ = [
    "SUBSAMPLE_CHOICES",
    "VAL_SOURCE_CHOICES",
    "DATASETS_DOC",
    "subsample_classes",
    "finalize_dataset",
    "dataset_root",
    "reader_seed",
    "make_rng",
    "require_dataset_dir",
]

VAL_SOURCE_CHOICES = ("test", "val")
DATASETS_DOC = "DATASETS.md"


def _cfg_choice(cfg: Any, key: str, default: str, choices: Sequence[str]) -> str:
    value = str(getattr(cfg.DATASET, key, default))
    if value not in choices:
        raise ConfigError(f"DATASET.{key} must be one of {list(choices)}, got {value!r}")
    return value


def finalize_dataset(
    cfg: Any, train: list[Datum], val: list[Datum] | None, test: list[Datum]
) -> tuple[list[Datum], list[Datum] | None, list[Datum]]:
    """Assemble ``(train_x, val, test)`` after few-shot sampling, as upstream's readers do outside PromptKD.

    ``train_x`` = train subsampled by ``DATASET.SUBSAMPLE_CLASSES``, ``test`` = test subsampled the same way,
    and ``val`` = that subsampled test list when ``DATASET.VAL_SOURCE == "test"`` (upstream: model selection on
    test data) or the real, subsampled val split when ``"val"``. PromptKD builds its own base/novel sets from
    ``test`` with `subsample_classes`: readers do not know trainers.
    """
    subsample = _cfg_choice(cfg, "SUBSAMPLE_CLASSES", "all", SUBSAMPLE_CHOICES)
    val_source = _cfg_choice(cfg, "VAL_SOURCE", "test", VAL_SOURCE_CHOICES)
    if val_source == "test":
        train_x, test_out = subsample_classes(train, test, subsample=subsample)
        return train_x, test_out, test_out
    if val is None:
        raise ConfigError(
            f"DATASET.VAL_SOURCE is 'val' but {cfg.DATASET.NAME or 'this dataset'} has no validation split "
            "(ImageNet uses its official val images as the test set); use DATASET.VAL_SOURCE test"
        )
    train_x, val_out, test_out = subsample_classes(train, val, test, subsample=subsample)
    return train_x, val_out, test_out


def dataset_root(cfg: Any) -> str:
    """``DATASET.ROOT`` expanded (``~``) and made absolute; every image path a reader produces is absolute."""
    root = str(cfg.DATASET.ROOT or "")
    if not root:
        raise ConfigError(
            "DATASET.ROOT is empty: set it (--root or DATASET.ROOT) to the folder holding the dataset folders "
            f"(e.g. ROOT/oxford_pets); see {DATASETS_DOC}"
        )
    return os.path.abspath(os.path.expanduser(root))


def reader_seed(cfg: Any) -> int | None:
    """``SEED`` if it is >= 0, else None (a negative seed means unseeded: nothing is cached)."""
    seed = int(cfg.SEED)
    return seed if seed >= 0 else None


def make_rng(seed: int | None) -> random.Random:
    """The reader's private RNG: ``Random(seed)``, or OS-seeded when unseeded.

    Split generation then few-shot sampling draw from it in upstream's call order, so the samples equal
    upstream's (which draws from the global `random`) without depending on whatever consumed `random` before."""
    return random.Random(seed) if seed is not None else random.Random()


def require_dataset_dir(root: str, folder: str, name: str, layout: str) -> str:
    """``root/folder`` if it is a directory, else `FileNotFoundError` showing the expected layout."""
    path = os.path.join(root, folder)
    if not os.path.isdir(path):
        found = ", ".join(list_visible(root)[:20]) if os.path.isdir(root) else "(DATASET.ROOT does not exist)"
        raise InputFileError(
            f"{name}: dataset folder {path} not found (DATASET.ROOT={root}; entries there: {found}).\n"
            f"Expected layout under DATASET.ROOT:\n{layout.rstrip()}\n"
            f"See {DATASETS_DOC} (section {name}) for how to download and lay it out."
        )
    return path
