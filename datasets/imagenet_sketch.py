"""ImageNet-Sketch: 1,000 wnid folders under ``images/``; test only."""

from __future__ import annotations

from dassl.data.datasets import DATASET_REGISTRY

from .imagenet_variants import WnidFolderDataset


@DATASET_REGISTRY.register()
class ImageNetSketch(WnidFolderDataset):
    dataset_dir = "imagenet-sketch"
    image_folder = "images"
    layout = """\
imagenet-sketch/
  classnames.txt          (copy of imagenet/classnames.txt)
  images/<wnid>/<file>.JPEG ...   (the release's sketch/ folder, renamed images/)"""
