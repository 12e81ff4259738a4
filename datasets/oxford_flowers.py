"""Oxford Flowers-102: labels from ``imagelabels.mat``, CoOp's own 50/20/30 split."""

from __future__ import annotations

import json
import os
import random

from dassl.data.datasets import DATASET_REGISTRY
from dassl.errors import FileContentError

from .reader_base import BenchmarkDataset, Lists
from .split_builders import split_label_groups


@DATASET_REGISTRY.register()
class OxfordFlowers(BenchmarkDataset):
    """102 flowers; the official ``setid.mat`` split is not used. Groups follow first appearance in the labels."""

    dataset_dir = "oxford_flowers"
    image_folder = "jpg"
    split_file_name = "split_zhou_OxfordFlowers.json"
    raw_files = ("jpg", "imagelabels.mat", "cat_to_name.json")
    layout = """\
oxford_flowers/
  split_zhou_OxfordFlowers.json
  jpg/image_00001.jpg ... image_08189.jpg
  imagelabels.mat, cat_to_name.json   (only needed without the split file)"""

    def generate_split(self, rng: random.Random) -> Lists:
        from scipy.io import loadmat  # heavy import, only needed when generating the split

        with open(os.path.join(self.dataset_dir, "cat_to_name.json"), encoding="utf-8") as f:
            cat_to_name = json.load(f)
        labels = loadmat(os.path.join(self.dataset_dir, "imagelabels.mat"))["labels"][0]
        groups: dict[int, list[str]] = {}
        for i, value in enumerate(labels):
            groups.setdefault(int(value), []).append(os.path.join(self.image_dir, f"image_{i + 1:05d}.jpg"))
        missing = [v for v in groups if str(v) not in cat_to_name]
        if missing:
            raise FileContentError(
                f"no class name for label value(s) {missing[:10]} of imagelabels.mat",
                f"{self.dataset_dir}/cat_to_name.json",
                "restore the cat_to_name.json of DATASETS.md",
            )
        return split_label_groups(
            ((value - 1, cat_to_name[str(value)], paths) for value, paths in groups.items()), 0.5, 0.2, rng
        )
