"""Oxford-IIIT Pets and the upstream helper names other readers call on this class."""

from __future__ import annotations

import os
import random

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .common import subsample_classes
from .reader_base import BenchmarkDataset, Lists, annotation_lines, bad_annotation_line
from .split_builders import split_trainval
from .split_io import read_split, write_split


@DATASET_REGISTRY.register()
class OxfordPets(BenchmarkDataset):
    """37 breeds; train/val = 80/20 of the official trainval list per class, test = the official test list."""

    dataset_dir = "oxford_pets"
    image_folder = "images"
    split_file_name = "split_zhou_OxfordPets.json"
    raw_files = ("annotations/trainval.txt", "annotations/test.txt")
    layout = """\
oxford_pets/
  split_zhou_OxfordPets.json
  images/<Breed>_<n>.jpg ...
  annotations/trainval.txt, annotations/test.txt   (only needed without the split file)"""

    # Upstream code calls these shared helpers as OxfordPets.<name>(...).
    read_split = staticmethod(read_split)
    save_split = staticmethod(write_split)
    split_trainval = staticmethod(split_trainval)
    subsample_classes = staticmethod(subsample_classes)

    def generate_split(self, rng: random.Random) -> Lists:
        trainval = self.read_data("trainval.txt")
        test = self.read_data("test.txt")
        train, val = split_trainval(trainval, p_val=0.2, rng=rng)
        return train, val, test

    def read_data(self, split_file: str) -> list[Datum]:
        """Lines ``<stem> <class id 1..37> <species> <breed id>``; class name = stem minus its last ``_`` piece."""
        path = os.path.join(self.dataset_dir, "annotations", split_file)
        items = []
        for lineno, line in annotation_lines(path):
            fields = line.split(" ")
            if len(fields) != 4 or not fields[1].isdigit():
                raise bad_annotation_line(
                    f"expected '<image> <class id> <species> <breed id>', got {line!r}",
                    path,
                    lineno,
                )
            stem, class_id = fields[0], int(fields[1])
            breed = "_".join(stem.split("_")[:-1]).lower()
            impath = os.path.join(self.image_dir, stem + ".jpg")
            items.append(Datum(impath=impath, label=class_id - 1, classname=breed, check=False))
        return items
