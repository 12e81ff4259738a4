"""EuroSAT RGB: folder per class, renamed to the descriptive names CoOp's prompts use."""

from __future__ import annotations

import random
from typing import Any

from dassl.data.datasets import DATASET_REGISTRY

from .reader_base import BenchmarkDataset, Lists
from .split_builders import folder_listing, read_and_split_data

NEW_CLASSNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(BenchmarkDataset):
    """10 land-cover classes; labels follow the sorted folder names (the table order above)."""

    dataset_dir = "eurosat"
    image_folder = "2750"
    split_file_name = "split_zhou_EuroSAT.json"
    raw_files = ("2750",)
    layout = """\
eurosat/
  split_zhou_EuroSAT.json
  2750/<ClassFolder>/<ClassFolder>_1.jpg ...   (AnnualCrop, Forest, ..., SeaLake)"""

    def generate_split(self, rng: random.Random) -> Lists:
        return read_and_split_data(self.image_dir, new_cnames=NEW_CLASSNAMES, rng=rng)

    def generation_inputs(self) -> Any:
        return folder_listing(self.image_dir)
