"""Describable Textures: folder per category; the official ``labels/`` splits are unused."""

from __future__ import annotations

import random
from typing import Any

from dassl.data.datasets import DATASET_REGISTRY

from .reader_base import BenchmarkDataset, Lists
from .split_builders import folder_listing, read_and_split_data

__all__ = ["DescribableTextures", "DTD"]


@DATASET_REGISTRY.register()
class DescribableTextures(BenchmarkDataset):
    """47 texture classes named after their folders."""

    dataset_dir = "dtd"
    image_folder = "images"
    split_file_name = "split_zhou_DescribableTextures.json"
    raw_files = ("images",)
    layout = """\
dtd/
  split_zhou_DescribableTextures.json
  images/<category>/<category>_0001.jpg ...
  imdb/, labels/   (unused)"""

    # Upstream calls this as DTD.read_and_split_data(image_dir, p_trn, p_val, ignored, new_cnames).
    read_and_split_data = staticmethod(read_and_split_data)

    def generate_split(self, rng: random.Random) -> Lists:
        return read_and_split_data(self.image_dir, rng=rng)

    def generation_inputs(self) -> Any:
        return folder_listing(self.image_dir)


DTD = DescribableTextures  # upstream readers import it as `from .dtd import DescribableTextures as DTD`
