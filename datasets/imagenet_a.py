"""ImageNet-A: 200 wnid folders, labels 0..199 in sorted wnid order; test only."""

from __future__ import annotations

from dassl.data.datasets import DATASET_REGISTRY

from .imagenet_variants import WnidFolderDataset


@DATASET_REGISTRY.register()
class ImageNetA(WnidFolderDataset):
    dataset_dir = "imagenet-adversarial"
    image_folder = "imagenet-a"
    ignored_entries = ("README.txt",)
    layout = """\
imagenet-adversarial/
  classnames.txt          (copy of imagenet/classnames.txt, all 1,000 lines)
  imagenet-a/<wnid>/<file>.jpg ...   (200 folders) + imagenet-a/README.txt"""
