"""Caltech101: folder per category, 100 classes after dropping two folders."""

from __future__ import annotations

import random
from typing import Any

from dassl.data.datasets import DATASET_REGISTRY

from .reader_base import BenchmarkDataset, Lists
from .split_builders import folder_listing, read_and_split_data

IGNORED_CATEGORIES = ("BACKGROUND_Google", "Faces_easy")
NEW_CLASSNAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


@DATASET_REGISTRY.register()
class Caltech101(BenchmarkDataset):
    """Labels follow the sorted folder names, so the capitalised ``Faces``/``Leopards``/``Motorbikes`` come first."""

    dataset_dir = "caltech-101"
    image_folder = "101_ObjectCategories"
    split_file_name = "split_zhou_Caltech101.json"
    raw_files = ("101_ObjectCategories",)
    layout = """\
caltech-101/
  split_zhou_Caltech101.json
  101_ObjectCategories/<category>/image_0001.jpg ...   (incl. BACKGROUND_Google/, Faces_easy/: ignored)"""

    def generate_split(self, rng: random.Random) -> Lists:
        return read_and_split_data(self.image_dir, ignored=IGNORED_CATEGORIES, new_cnames=NEW_CLASSNAMES, rng=rng)

    def generation_inputs(self) -> Any:
        return folder_listing(self.image_dir)
