"""SUN397: partition 01 of the official lists; class names read right to left."""

from __future__ import annotations

import os
import random

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.errors import FileContentError

from .reader_base import BenchmarkDataset, Lists, annotation_lines
from .split_builders import split_trainval


def sun_classname(key: str) -> str:
    """``a/apartment_building/outdoor`` -> ``outdoor apartment_building`` (drop the letter, reverse, join)."""
    return " ".join(key.split("/")[1:][::-1])


@DATASET_REGISTRY.register()
class SUN397(BenchmarkDataset):
    """397 scenes; train/val = 80/20 of ``Training_01.txt`` per class, test = ``Testing_01.txt``."""

    dataset_dir = "sun397"
    image_folder = "SUN397"
    split_file_name = "split_zhou_SUN397.json"
    raw_files = ("ClassName.txt", "Training_01.txt", "Testing_01.txt")
    layout = """\
sun397/
  split_zhou_SUN397.json
  SUN397/<letter>/<category>[/<sub-category>]/<file>.jpg ...
  ClassName.txt, Training_01.txt, Testing_01.txt   (only needed without the split file)"""

    def generate_split(self, rng: random.Random) -> Lists:
        class_file = os.path.join(self.dataset_dir, "ClassName.txt")
        cname2lab = {line[1:]: i for i, (_, line) in enumerate(annotation_lines(class_file))}
        trainval = self.read_data(cname2lab, "Training_01.txt")
        test = self.read_data(cname2lab, "Testing_01.txt")
        train, val = split_trainval(trainval, p_val=0.2, rng=rng)
        return train, val, test

    def read_data(self, cname2lab: dict[str, int], text_file: str) -> list[Datum]:
        """Lines ``/a/abbey/sun_x.jpg``; the directory part is the class key."""
        path = os.path.join(self.dataset_dir, text_file)
        items = []
        for lineno, line in annotation_lines(path):
            imname = line[1:]
            key = os.path.dirname(imname)
            if key not in cname2lab:
                raise FileContentError(
                    f"class {key!r} of {line!r} is not listed in ClassName.txt",
                    f"{path}:{lineno}",
                    "fix the line or restore the dataset's original ClassName.txt (see DATASETS.md)",
                )
            impath = os.path.join(self.image_dir, imname)
            items.append(Datum(impath=impath, label=cname2lab[key], classname=sun_classname(key), check=False))
        return items
