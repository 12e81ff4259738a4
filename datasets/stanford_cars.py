"""Stanford Cars: MATLAB annotations; the model year moves to the front of the class name."""

from __future__ import annotations

import os
import random

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .reader_base import BenchmarkDataset, Lists
from .split_builders import split_trainval


def move_year_first(name: str) -> str:
    """``AM General Hummer SUV 2000`` -> ``2000 AM General Hummer SUV`` (last space-separated token first)."""
    words = name.split(" ")
    return " ".join([words[-1], *words[:-1]])


@DATASET_REGISTRY.register()
class StanfordCars(BenchmarkDataset):
    """196 car models; split-file paths are relative to the dataset folder (``cars_train/00001.jpg``)."""

    dataset_dir = "stanford_cars"
    image_folder = ""
    split_file_name = "split_zhou_StanfordCars.json"
    raw_files = ("devkit/cars_train_annos.mat", "devkit/cars_meta.mat", "cars_test_annos_withlabels.mat")
    layout = """\
stanford_cars/
  split_zhou_StanfordCars.json
  cars_train/00001.jpg ...   cars_test/00001.jpg ...
  devkit/cars_train_annos.mat, devkit/cars_meta.mat, cars_test_annos_withlabels.mat   (without the split file)"""

    def generate_split(self, rng: random.Random) -> Lists:
        meta = os.path.join(self.dataset_dir, "devkit", "cars_meta.mat")
        trainval = self.read_data("cars_train", os.path.join(self.dataset_dir, "devkit", "cars_train_annos.mat"), meta)
        test = self.read_data("cars_test", os.path.join(self.dataset_dir, "cars_test_annos_withlabels.mat"), meta)
        train, val = split_trainval(trainval, p_val=0.2, rng=rng)
        return train, val, test

    def read_data(self, image_folder: str, anno_file: str, meta_file: str) -> list[Datum]:
        """``annotations`` (1 x N struct: ``fname``, 1-based ``class``) + ``class_names`` (1 x 196 cell)."""
        from scipy.io import loadmat  # heavy import, only needed when generating the split

        annotations = loadmat(anno_file)["annotations"][0]
        class_names = loadmat(meta_file)["class_names"][0]
        items = []
        for entry in annotations:
            label = int(entry["class"][0, 0]) - 1
            impath = os.path.join(self.dataset_dir, image_folder, str(entry["fname"][0]))
            classname = move_year_first(str(class_names[label][0]))
            items.append(Datum(impath=impath, label=label, classname=classname, check=False))
        return items
