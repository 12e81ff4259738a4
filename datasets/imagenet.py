"""ImageNet: class folders named by wnid, names from ``classnames.txt``, no val split.

Listing 1.28M files is slow, so the listing is cached: upstream's ``preprocessed.pkl`` in the dataset folder if
present (read safely, paths rebased), else a JSON entry in the cache directory keyed by the dataset folder,
``classnames.txt`` and the modification times of the class folders (adding or removing an image changes them).
"""

from __future__ import annotations

import os
import random

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.errors import FileContentError, InputFileError

from .cache import fingerprint, hash_files, read_cached_lists, read_upstream_lists, write_cached_lists
from .reader_base import BenchmarkDataset, read_classnames
from .split_builders import list_visible


@DATASET_REGISTRY.register()
class ImageNet(BenchmarkDataset):
    """1,000 classes; ``test`` = the official val images (sorted into wnid folders); few-shot on train only."""

    dataset_dir = "imagenet"
    image_folder = "images"
    split_file_name = None
    raw_files = ("classnames.txt", "images/train", "images/val")
    layout = """\
imagenet/
  classnames.txt                        (<wnid> <class name> per line)
  images/train/<wnid>/<file>.JPEG ...
  images/val/<wnid>/<file>.JPEG ...     (val images sorted into the same 1,000 wnid folders)"""

    read_classnames = staticmethod(read_classnames)

    def load_full_split(self, rng: random.Random) -> tuple[list[Datum], None, list[Datum], str]:
        pickle_path = os.path.join(self.dataset_dir, "preprocessed.pkl")
        if os.path.isfile(pickle_path):
            lists = read_upstream_lists(pickle_path, self.dataset_dir)
            for key in ("train", "test"):
                if key not in lists:
                    raise FileContentError(
                        f"upstream cache has no {key!r} list (keys: {sorted(lists)})",
                        pickle_path,
                        "delete the file to let the reader build the split from the image folders",
                    )
            return lists["train"], None, lists["test"], "pickle:" + hash_files([pickle_path])

        self._require_raw_files()
        split_dirs = {"train": os.path.join(self.image_dir, "train"), "test": os.path.join(self.image_dir, "val")}
        folder_state = {
            key: [(f, os.stat(os.path.join(d, f)).st_mtime_ns) for f in self._class_folders(d)]
            for key, d in split_dirs.items()
        }
        self._check_folders_match(split_dirs, folder_state)
        classnames_file = os.path.join(self.dataset_dir, "classnames.txt")
        key = fingerprint("ImageNet", self.dataset_dir, hash_files([classnames_file]), folder_state)
        cache_path = os.path.join(self.cache_root, f"listing-{key}.json")
        # Trusted when present: keyed on the folder state, so the 1.28M files are not stat-ed again.
        hit = read_cached_lists(cache_path, ("train", "test"), self.image_dir, check=False)
        if hit is not None:
            lists = hit[0]
            return lists["train"], None, lists["test"], "listing:" + key

        classnames = read_classnames(classnames_file)
        train, test = (self.read_data(classnames, split_dirs[k]) for k in ("train", "test"))
        write_cached_lists(cache_path, {"train": train, "test": test}, self.image_dir, dataset="ImageNet", inputs=key)
        return train, None, test, "listing:" + key

    @staticmethod
    def _check_folders_match(split_dirs: dict[str, str], folder_state: dict[str, list[tuple[str, int]]]) -> None:
        """Labels are folder indices in each split, so train and val must hold the same wnid folders."""
        train = [f for f, _ in folder_state["train"]]
        val = [f for f, _ in folder_state["test"]]
        if train != val:
            only_train, only_val = sorted(set(train) - set(val)), sorted(set(val) - set(train))
            raise InputFileError(
                f"ImageNet: {split_dirs['test']} must contain the same wnid folders as {split_dirs['train']} "
                f"({len(val)} vs {len(train)} folders; only in train: {only_train[:5]}, only in val: {only_val[:5]}). "
                "The official validation images come as one flat folder; sort them into <wnid>/ sub-folders "
                "first (see DATASETS.md, 'ImageNet validation folder')."
            )

    @staticmethod
    def _class_folders(split_dir: str) -> list[str]:
        """Sorted sub-directories (symlinks followed, hidden ones included, as upstream)."""
        return sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir())

    def read_data(self, classnames: dict[str, str], split_dir: str) -> list[Datum]:
        """Label = index of the wnid folder in sorted order; images sorted.

        Upstream uses the unsorted directory listing, whose order depends on the filesystem.
        """
        items = []
        for label, folder in enumerate(self._class_folders(split_dir)):
            if folder not in classnames:
                raise FileContentError(
                    f"wnid {folder!r} of {split_dir}/{folder} is not in classnames.txt",
                    f"{self.dataset_dir}/classnames.txt",
                    "the image folders must be exactly the wnids listed there (see DATASETS.md, ImageNet val layout)",
                )
            class_dir = os.path.join(split_dir, folder)
            for name in list_visible(class_dir):
                impath = os.path.join(class_dir, name)
                items.append(Datum(impath, label=label, classname=classnames[folder], check=False))
        return items
