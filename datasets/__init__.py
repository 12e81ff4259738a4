"""The 15 benchmark readers (upstream's names in ``DATASET_REGISTRY``) and ``Folder`` (your own images).

Importing this package registers every reader and the dataset config keys ``DATASET.SUBSAMPLE_CLASSES``
(``all``/``base``/``new``) and ``DATASET.VAL_SOURCE`` (``test`` = upstream, ``val`` = the real val split).
"""

from yacs.config import CfgNode

from dassl.config import register_cfg_defaults

from .caltech101 import Caltech101
from .dtd import DTD, DescribableTextures
from .eurosat import EuroSAT
from .fgvc_aircraft import FGVCAircraft
from .folder import Folder
from .food101 import Food101
from .imagenet import ImageNet
from .imagenet_a import ImageNetA
from .imagenet_r import ImageNetR
from .imagenet_sketch import ImageNetSketch
from .imagenetv2 import ImageNetV2
from .oxford_flowers import OxfordFlowers
from .oxford_pets import OxfordPets
from .stanford_cars import StanfordCars
from .sun397 import SUN397
from .ucf101 import UCF101

__all__ = [
    "ImageNet",
    "Caltech101",
    "OxfordPets",
    "StanfordCars",
    "OxfordFlowers",
    "Food101",
    "FGVCAircraft",
    "SUN397",
    "DescribableTextures",
    "DTD",
    "EuroSAT",
    "UCF101",
    "ImageNetV2",
    "ImageNetSketch",
    "ImageNetA",
    "ImageNetR",
    "Folder",
]


@register_cfg_defaults
def add_dataset_cfg_defaults(cfg: CfgNode) -> None:
    """``DATASET.SUBSAMPLE_CLASSES`` (all/base/new: the base/new protocol) and ``DATASET.VAL_SOURCE`` (test/val)."""
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    cfg.DATASET.VAL_SOURCE = "test"
