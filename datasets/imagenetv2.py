"""ImageNetV2 matched-frequency: folders ``0``..``999`` named by class index; test only."""

from __future__ import annotations

import os

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.errors import FileContentError, InputFileError

from .reader_base import TestOnlyDataset, read_classnames
from .split_builders import list_visible

NUM_CLASSES = 1000


@DATASET_REGISTRY.register()
class ImageNetV2(TestOnlyDataset):
    """Class name = the label-th line of ``classnames.txt`` (file position, not a wnid lookup)."""

    dataset_dir = "imagenetv2"
    image_folder = "imagenetv2-matched-frequency-format-val"
    layout = """\
imagenetv2/
  classnames.txt          (copy of imagenet/classnames.txt)
  imagenetv2-matched-frequency-format-val/0/ ... /999/<file>.jpeg"""

    def read_items(self) -> list[Datum]:
        classnames = list(read_classnames(self.require("classnames.txt")).values())
        if len(classnames) < NUM_CLASSES:
            raise FileContentError(
                f"classnames.txt has {len(classnames)} classes; ImageNetV2 needs all {NUM_CLASSES} ImageNet lines "
                "in order",
                f"{self.dataset_dir}/classnames.txt",
                "copy imagenet/classnames.txt there",
            )
        image_dir = self.require(self.image_folder)
        missing = [str(y) for y in range(NUM_CLASSES) if not os.path.isdir(os.path.join(image_dir, str(y)))]
        if missing:
            raise InputFileError(
                f"ImageNetV2: {len(missing)} class folder(s) missing in {image_dir} (first: {missing[:5]}); the "
                "matched-frequency release has folders 0..999"
            )
        items = []
        for label in range(NUM_CLASSES):
            class_dir = os.path.join(image_dir, str(label))
            for name in list_visible(class_dir):
                impath = os.path.join(class_dir, name)
                items.append(Datum(impath, label=label, classname=classnames[label], check=False))
        return items
