"""Base classes that run the reader pipeline once, so each reader only describes its layout.

`BenchmarkDataset` (the 11 datasets with a train split):

1. the full split: the split file in the dataset folder if present (its order, no annotations read), else
   the reader's own ``generate_split(rng)`` from the raw files, cached as JSON outside ``DATASET.ROOT``
   together with the RNG state it leaves, so a cache hit continues the random stream exactly as generation;
2. few-shot (``NUM_SHOTS >= 1``): an upstream ``split_fewshot/shot_K-seed_S.pkl`` if present (read safely),
   else a JSON cache entry, else ``sample_few_shot`` on the same RNG (train with K, then val with min(K, 4));
3. `finalize_dataset` (base/new subsampling and the choice of ``val``).

`TestOnlyDataset` (ImageNetV2/Sketch/A/R): ``train_x = test = items``, ``val = None``, no caches.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

from dassl.data.datasets import DatasetBase, Datum
from dassl.errors import FileContentError, InputFileError

from .cache import (
    cache_dir,
    fingerprint,
    hash_files,
    read_cached_lists,
    read_upstream_lists,
    rng_state_from_json,
    rng_state_to_json,
    write_cached_lists,
)
from .common import dataset_root, finalize_dataset, make_rng, reader_seed, require_dataset_dir
from .split_io import raise_if_missing, read_split

__all__ = ["BenchmarkDataset", "TestOnlyDataset", "read_classnames", "annotation_lines"]

logger = logging.getLogger(__name__)

Lists = tuple[list[Datum], list[Datum] | None, list[Datum]]


def annotation_lines(path: str) -> list[tuple[int, str]]:
    """Non-blank lines of an annotation file as ``(line number, stripped line)`` (CRLF endings are harmless)."""
    with open(path, encoding="utf-8") as f:
        return [(i, line.strip()) for i, line in enumerate(f, 1) if line.strip()]


def bad_annotation_line(problem: str, path: str, lineno: int) -> FileContentError:
    """The error for a malformed line of a dataset's annotation file, naming the file and line."""
    return FileContentError(
        problem, f"{path}:{lineno}", "fix the line or restore the dataset's original annotation files (see DATASETS.md)"
    )


def read_classnames(text_file: str) -> dict[str, str]:
    """ImageNet ``classnames.txt``: ``<wnid> <name with spaces>`` per line, in file order."""
    classnames: dict[str, str] = {}
    with open(text_file, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.strip().split(" ")
            if not parts[0]:
                continue
            if len(parts) < 2:
                raise FileContentError(
                    f"expected '<wnid> <class name>', got {line.strip()!r}",
                    f"{text_file}:{lineno}",
                    "fix the line (one wnid and its class name per line)",
                )
            classnames[parts[0]] = " ".join(parts[1:])
    return classnames


class BenchmarkDataset(DatasetBase):
    """A reader with train/val/test. Subclasses set the class attributes and hooks.

    Class attributes: ``dataset_dir`` (folder under ROOT), ``image_folder`` (prefix folder of split-file paths,
    "" = the dataset folder), ``split_file_name`` (None: official split, nothing generated or cached),
    ``raw_files`` (files/folders under the dataset folder needed to generate the split), ``layout`` (shown in
    errors).
    """

    dataset_dir = ""
    image_folder = ""
    split_file_name: str | None = None
    raw_files: tuple[str, ...] = ()
    layout = ""

    def __init__(self, cfg: Any) -> None:
        name = type(self).__name__
        self.dataset_dir = require_dataset_dir(dataset_root(cfg), type(self).dataset_dir, name, self.layout)
        self.image_dir = os.path.join(self.dataset_dir, self.image_folder) if self.image_folder else self.dataset_dir
        self.split_path = os.path.join(self.dataset_dir, self.split_file_name) if self.split_file_name else None
        self.seed = reader_seed(cfg)
        self.cache_root = os.path.join(cache_dir(cfg), name)
        rng = make_rng(self.seed)

        train, val, test, inputs_key = self.load_full_split(rng)
        train, val = self.apply_few_shot(int(cfg.DATASET.NUM_SHOTS), train, val, rng, inputs_key)
        train_x, val, test = finalize_dataset(cfg, train, val, test)
        super().__init__(train_x=train_x, val=val, test=test)

    # ---------------------------------------------------------------------------------------------------- hooks
    def generate_split(self, rng: random.Random) -> Lists:
        """Build train/val/test from the raw files (only called when the split file is missing)."""
        raise NotImplementedError

    def generation_inputs(self) -> Any:
        """What the generated split depends on (JSON-able); default: the bytes of ``raw_files``."""
        return hash_files(os.path.join(self.dataset_dir, f) for f in self.raw_files)

    # ------------------------------------------------------------------------------------------------- pipeline
    def load_full_split(self, rng: random.Random) -> tuple[list[Datum], list[Datum] | None, list[Datum], str]:
        """(train, val, test, key of the inputs) from the split file, the cache, or the raw files."""
        if self.split_path and os.path.isfile(self.split_path):
            train, val, test = read_split(self.split_path, self.image_dir)
            return train, val, test, "file:" + hash_files([self.split_path])
        self._require_raw_files()
        inputs = self.generation_inputs()
        key = fingerprint(type(self).__name__, self.split_file_name, inputs)
        if self.split_file_name is None:  # official split: deterministic, nothing to cache
            return (*self.generate_split(rng), "official:" + key)
        cache_path = os.path.join(self.cache_root, f"split-seed_{self.seed}-{key}.json")
        keys = ("train", "val", "test")
        hit = (
            read_cached_lists(cache_path, keys, self.image_dir, with_rng_state=True) if self.seed is not None else None
        )
        if hit is not None:
            logger.info("Reading generated split from cache %s", cache_path)
            lists, entry = hit
            rng.setstate(rng_state_from_json(entry["rng_state"]))
            return lists["train"], lists["val"], lists["test"], "generated:" + key
        train, val, test = self.generate_split(rng)
        raise_if_missing([d.impath for d in (*train, *val, *test)], f"the annotation files of {self.dataset_dir}")
        if self.seed is not None:
            write_cached_lists(
                cache_path,
                dict(zip(keys, (train, val, test), strict=True)),
                self.image_dir,
                dataset=type(self).__name__,
                seed=self.seed,
                inputs=key,
                rng_state=rng_state_to_json(rng.getstate()),
            )
        return train, val, test, "generated:" + key

    def _require_raw_files(self) -> None:
        missing = [f for f in self.raw_files if not os.path.exists(os.path.join(self.dataset_dir, f))]
        if missing:
            split = f"the split file {self.split_path} nor " if self.split_path else ""
            raise InputFileError(
                f"{type(self).__name__}: found neither {split}the raw file(s) {missing} in {self.dataset_dir}.\n"
                f"Expected layout under DATASET.ROOT:\n{self.layout.rstrip()}\n"
                "See DATASETS.md: download the split file, or the dataset's annotation files to generate one."
            )

    def apply_few_shot(
        self, num_shots: int, train: list[Datum], val: list[Datum] | None, rng: random.Random, inputs_key: str
    ) -> tuple[list[Datum], list[Datum] | None]:
        """Few-shot train (K) and val (min(K, 4)) with upstream's cache precedence."""
        if num_shots < 1:
            return train, val
        name = type(self).__name__
        if self.seed is not None:
            pickle_path = os.path.join(self.dataset_dir, "split_fewshot", f"shot_{num_shots}-seed_{self.seed}.pkl")
            if os.path.isfile(pickle_path):
                return self._read_upstream_few_shot(pickle_path, val)
        key = fingerprint(name, num_shots, self.seed, inputs_key)
        cache_path = os.path.join(self.cache_root, f"fewshot-shot_{num_shots}-seed_{self.seed}-{key}.json")
        keys = ("train", "val") if val is not None else ("train",)
        hit = None if self.seed is None else read_cached_lists(cache_path, keys, self.dataset_dir)
        if hit is not None:
            logger.info("Loading few-shot data from cache %s", cache_path)
            lists = hit[0]
            return lists["train"], lists.get("val", val)
        train = self.generate_fewshot_dataset(train, num_shots=num_shots, rng=rng)
        if val is not None:
            val = self.generate_fewshot_dataset(val, num_shots=min(num_shots, 4), rng=rng)
        if self.seed is not None:
            lists = {"train": train} if val is None else {"train": train, "val": val}
            write_cached_lists(
                cache_path, lists, self.dataset_dir, dataset=name, num_shots=num_shots, seed=self.seed, inputs=key
            )
        return train, val

    def _read_upstream_few_shot(
        self, pickle_path: str, val: list[Datum] | None
    ) -> tuple[list[Datum], list[Datum] | None]:
        logger.info("Loading preprocessed few-shot data from %s", pickle_path)
        lists = read_upstream_lists(pickle_path, self.dataset_dir)
        if "train" not in lists:
            raise FileContentError(
                f"upstream few-shot cache has no 'train' list (keys: {sorted(lists)})",
                pickle_path,
                "delete the file to let the reader sample the shots again",
            )
        return lists["train"], lists.get("val", val)


class TestOnlyDataset(DatasetBase):
    """A test-only ImageNet variant: ``train_x = test = read_items()``, ``val = None``.

    NUM_SHOTS, SUBSAMPLE_CLASSES and VAL_SOURCE are ignored; nothing is written anywhere.
    """

    dataset_dir = ""
    layout = ""

    def __init__(self, cfg: Any) -> None:
        name = type(self).__name__
        self.dataset_dir = require_dataset_dir(dataset_root(cfg), type(self).dataset_dir, name, self.layout)
        items = self.read_items()
        if not items:
            raise InputFileError(f"{name}: no images found in {self.dataset_dir}; expected:\n{self.layout}")
        super().__init__(train_x=items, val=None, test=items)

    def read_items(self) -> list[Datum]:
        raise NotImplementedError

    def require(self, relative: str) -> str:
        """Absolute path of a required file/folder inside the dataset folder, or an error showing the layout."""
        path = os.path.join(self.dataset_dir, relative)
        if not os.path.exists(path):
            raise InputFileError(
                f"{type(self).__name__}: {path} not found.\nExpected layout under DATASET.ROOT:\n"
                f"{self.layout.rstrip()}\nSee DATASETS.md (section {type(self).__name__})."
            )
        return path
