"""Reading and writing upstream's split files (``split_zhou_<Name>.json``).

A split file is a JSON object ``{"train": [...], "val": [...], "test": [...]}`` whose items are
``[path relative to the prefix folder, label, classname]``. Reading keeps the file order exactly; every image
must exist, and all missing images are reported in one error (upstream stops at the first).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

from dassl.data.datasets import Datum
from dassl.errors import FileContentError, InputFileError
from dassl.utils.atomic import atomic_write_text

__all__ = [
    "SPLIT_KEYS",
    "SplitFileError",
    "MissingImagesError",
    "read_split",
    "write_split",
    "parse_split_items",
    "items_to_datums",
    "raise_if_missing",
    "load_json_file",
    "datums_to_items",
    "dumps_split",
]

logger = logging.getLogger(__name__)

SPLIT_KEYS = ("train", "val", "test")
_MAX_LISTED = 5


class SplitFileError(FileContentError):
    """A split/cache JSON file is malformed; the message names the file and the problem."""


class MissingImagesError(InputFileError):
    """Images named by a split (file, cache or annotation list) are missing on disk."""


Item = tuple[str, int, str]


def parse_split_items(data: Any, source: str, keys: Sequence[str] = SPLIT_KEYS) -> dict[str, list[Item]]:
    """Validate a decoded split object and return ``{key: [(relpath, label, classname), ...]}``.

    ``source`` names the file in error messages.
    """
    if not isinstance(data, dict):
        raise SplitFileError(
            f"Split file {source}: expected a JSON object with keys {list(keys)}, got {type(data).__name__}. "
            "Re-download the split file (see DATASETS.md) or delete it to let the reader generate one."
        )
    missing = [k for k in keys if k not in data]
    if missing:
        raise SplitFileError(
            f"Split file {source}: missing key(s) {missing}; found {sorted(data)}; expected {list(keys)}. "
            "Re-download the split file (see DATASETS.md)."
        )
    out: dict[str, list[Item]] = {}
    for key in keys:
        value = data[key]
        if not isinstance(value, list):
            raise SplitFileError(f"Split file {source}: {key!r} must be a list of items, got {type(value).__name__}")
        items: list[Item] = []
        for i, item in enumerate(value):
            ok = (
                isinstance(item, list | tuple)
                and len(item) == 3
                and isinstance(item[0], str)
                and isinstance(item[1], int)
                and not isinstance(item[1], bool)
                and isinstance(item[2], str)
            )
            if not ok:
                raise SplitFileError(
                    f"Split file {source}: item {i} of {key!r} is {item!r}; every item must be "
                    '[relative_image_path (str), label (int), classname (str)], e.g. ["a/img_1.jpg", 0, "a"]'
                )
            items.append((item[0], item[1], item[2]))
        out[key] = items
    return out


def raise_if_missing(paths: Sequence[str], source: str) -> None:
    """Stat every path once; raise one `MissingImagesError` listing the first few missing ones and the count."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        listed = "\n  ".join(missing[:_MAX_LISTED])
        more = f"\n  ... and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        raise MissingImagesError(
            f"{len(missing)} of {len(paths)} image(s) named by {source} are missing:\n  {listed}{more}\n"
            "Check DATASET.ROOT and that the dataset was extracted completely with the layout in DATASETS.md."
        )


def items_to_datums(items: Iterable[Item], prefix_dir: str, source: str, check: bool = True) -> list[Datum]:
    """Turn ``(relpath, label, classname)`` items into `Datum` objects with absolute paths under ``prefix_dir``.

    With ``check`` every path is tested once and all missing files are reported together, naming ``source``.
    """
    base = prefix_dir.rstrip("/" + os.sep) + os.sep if prefix_dir else ""  # plain concatenation: 1.3M items
    paths_items = [(base + rel, label, cname) for rel, label, cname in items]
    if check:
        raise_if_missing([p for p, _, _ in paths_items], source)
    return [Datum(impath=p, label=label, classname=cname, check=False) for p, label, cname in paths_items]


def datums_to_items(datums: Iterable[Datum], prefix_dir: str) -> list[Item]:
    """Inverse of `items_to_datums`: paths relative to ``prefix_dir``.

    Upstream removes the prefix string anywhere in the path; here only a leading prefix is removed, which
    gives the same result on real data. Fast path: plain string slicing (ImageNet has 1.3M items).
    """
    prefix = os.path.abspath(prefix_dir)
    head = prefix.rstrip(os.sep) + os.sep
    items = []
    for d in datums:
        path = d.impath
        if not path.startswith(head):
            path = os.path.abspath(path)
            if os.path.commonpath([prefix, path]) != prefix:
                raise ValueError(f"Image {d.impath} is outside the split prefix folder {prefix_dir}; cannot write it")
        rel = path[len(head) :] if path.startswith(head) else os.path.relpath(path, prefix)
        items.append((rel.replace(os.sep, "/") if os.sep != "/" else rel, int(d.label), d.classname))
    return items


def dumps_split(train: Sequence[Item], val: Sequence[Item], test: Sequence[Item]) -> str:
    """Upstream's exact split-file text: 4-space indent, ``,``/``: `` separators, ASCII escapes, no final newline."""
    data = {"train": [list(i) for i in train], "val": [list(i) for i in val], "test": [list(i) for i in test]}
    return json.dumps(data, indent=4, separators=(",", ": "))


def load_json_file(path: str) -> Any:
    """Load a JSON file; a syntax error becomes `SplitFileError` naming the file, line and column."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise SplitFileError(
            f"Split file {path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}). "
            "Re-download it (see DATASETS.md) or delete it to let the reader generate a split."
        ) from e


def read_split(filepath: str, path_prefix: str) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Read a split file into train/val/test `Datum` lists (upstream ``OxfordPets.read_split``).

    Order is the file's; no annotation file is read; all images must exist (one error lists the missing ones).
    """
    logger.info("Reading split from %s", filepath)
    split = parse_split_items(load_json_file(filepath), filepath)
    paths = [os.path.join(path_prefix, rel) for key in SPLIT_KEYS for rel, _, _ in split[key]]
    raise_if_missing(paths, f"split file {filepath}")
    train, val, test = (items_to_datums(split[key], path_prefix, filepath, check=False) for key in SPLIT_KEYS)
    return train, val, test


def write_split(
    train: Sequence[Datum], val: Sequence[Datum], test: Sequence[Datum], filepath: str, path_prefix: str
) -> None:
    """Write a split file in upstream's format (upstream ``OxfordPets.save_split``), atomically."""
    text = dumps_split(
        datums_to_items(train, path_prefix), datums_to_items(val, path_prefix), datums_to_items(test, path_prefix)
    )
    atomic_write_text(text, filepath)
    logger.info("Saved split to %s", filepath)
