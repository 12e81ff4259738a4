"""FGVC-Aircraft: the official train/val/test lists; no split file, no randomness."""

from __future__ import annotations

import os
import random

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .reader_base import BenchmarkDataset, Lists, annotation_lines, bad_annotation_line


@DATASET_REGISTRY.register()
class FGVCAircraft(BenchmarkDataset):
    """100 variants, labelled by their line in ``variants.txt``; names kept verbatim (``F/A-18``)."""

    dataset_dir = "fgvc_aircraft"
    image_folder = "images"
    split_file_name = None
    raw_files = ("variants.txt", "images_variant_train.txt", "images_variant_val.txt", "images_variant_test.txt")
    layout = """\
fgvc_aircraft/   (the archive's data/ folder, renamed)
  images/<7-digit id>.jpg ...
  variants.txt, images_variant_train.txt, images_variant_val.txt, images_variant_test.txt"""

    def generate_split(self, rng: random.Random) -> Lists:
        variants_file = os.path.join(self.dataset_dir, "variants.txt")
        cname2lab = {name: i for i, (_, name) in enumerate(annotation_lines(variants_file))}
        train, val, test = (self.read_data(cname2lab, f"images_variant_{s}.txt") for s in ("train", "val", "test"))
        return train, val, test

    def read_data(self, cname2lab: dict[str, int], split_file: str) -> list[Datum]:
        """Lines ``<image id> <variant name with spaces>``."""
        path = os.path.join(self.dataset_dir, split_file)
        items = []
        for lineno, line in annotation_lines(path):
            fields = line.split(" ")
            classname = " ".join(fields[1:])
            if classname not in cname2lab:
                raise bad_annotation_line(
                    f"variant {classname!r} is not listed in variants.txt",
                    path,
                    lineno,
                )
            impath = os.path.join(self.image_dir, fields[0] + ".jpg")
            items.append(Datum(impath=impath, label=cname2lab[classname], classname=classname, check=False))
        return items
