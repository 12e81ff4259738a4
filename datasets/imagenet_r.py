"""ImageNet-R: 200 wnid folders, labels 0..199 in sorted wnid order; test only."""

from __future__ import annotations

from dassl.data.datasets import DATASET_REGISTRY

from .imagenet_variants import WnidFolderDataset


@DATASET_REGISTRY.register()
class ImageNetR(WnidFolderDataset):
    dataset_dir = "imagenet-rendition"
    image_folder = "imagenet-r"
    ignored_entries = ("README.txt",)
    layout = """\
imagenet-rendition/
  classnames.txt          (copy of imagenet/classnames.txt, all 1,000 lines)
  imagenet-r/<wnid>/<file>.jpg ...   (200 folders) + imagenet-r/README.txt"""
