"""Shared reading of the test-only ImageNet variants whose class folders are named by wnid."""

from __future__ import annotations

import os

from dassl.data.datasets import Datum
from dassl.errors import FileContentError

from .reader_base import TestOnlyDataset, read_classnames
from .split_builders import list_visible

__all__ = ["WnidFolderDataset"]


class WnidFolderDataset(TestOnlyDataset):
    """``<dataset>/<image_folder>/<wnid>/<files>`` + ``<dataset>/classnames.txt``; labels follow sorted wnids.

    ``ignored_entries`` are names in the image folder that are not classes (the releases' ``README.txt``).
    """

    image_folder = ""
    ignored_entries: tuple[str, ...] = ()

    def read_items(self) -> list[Datum]:
        classnames = read_classnames(self.require("classnames.txt"))
        image_dir = self.require(self.image_folder)
        folders = [f for f in list_visible(image_dir) if f not in self.ignored_entries]
        unknown = [f for f in folders if f not in classnames]
        if unknown:
            raise FileContentError(
                f"{type(self).__name__}: folder(s) {unknown[:5]} are not wnids listed in "
                f"{self.dataset_dir}/classnames.txt",
                image_dir,
                "copy ImageNet's classnames.txt there (see DATASETS.md)",
            )
        items = []
        for label, wnid in enumerate(folders):
            class_dir = os.path.join(image_dir, wnid)
            for name in list_visible(class_dir):
                items.append(Datum(os.path.join(class_dir, name), label=label, classname=classnames[wnid], check=False))
        return items
