"""Food101: folder per class; the official ``meta/`` split is unused (CoOp's 50/20/30)."""

from __future__ import annotations

import random
from typing import Any

from dassl.data.datasets import DATASET_REGISTRY

from .reader_base import BenchmarkDataset, Lists
from .split_builders import folder_listing, read_and_split_data


@DATASET_REGISTRY.register()
class Food101(BenchmarkDataset):
    """101 dishes named after their folders (``apple_pie``, ...)."""

    dataset_dir = "food-101"
    image_folder = "images"
    split_file_name = "split_zhou_Food101.json"
    raw_files = ("images",)
    layout = """\
food-101/
  split_zhou_Food101.json
  images/<class>/<id>.jpg ...
  meta/   (unused)"""

    def generate_split(self, rng: random.Random) -> Lists:
        return read_and_split_data(self.image_dir, rng=rng)

    def generation_inputs(self) -> Any:
        return folder_listing(self.image_dir)
