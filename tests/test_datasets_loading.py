"""End to end: a fixture dataset through `dassl.data.DataManager` (decodable images, class-coloured pixels)."""

from __future__ import annotations

import torch

from dassl.data import DataManager
from tests.helpers.dataset_fixtures import make_caltech101, make_dataset_cfg


def test_data_manager_loads_fixture_images_with_reader_labels(tmp_path) -> None:
    make_caltech101(tmp_path / "data", num_classes=3, per_class=6, size=32)
    cfg = make_dataset_cfg(tmp_path / "data", "Caltech101", tmp_path / "cache", num_shots=2, seed=1)
    cfg.INPUT.SIZE = (32, 32)
    cfg.INPUT.TRANSFORMS = ("normalize",)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 6
    cfg.DATALOADER.TEST.BATCH_SIZE = 6
    cfg.USE_CUDA = False
    cfg.VERBOSE = False
    dm = DataManager(cfg)
    assert dm.num_classes == 3 and dm.lab2cname == {0: "face", 1: "leopard", 2: "motorbike"}
    batch = next(iter(dm.test_loader))
    assert batch["img"].shape == (6, 3, 32, 32)
    assert batch["label"].tolist() == [d.label for d in dm.dataset.test]
    # Images of one class share a colour, different classes differ: tiny models can learn them.
    means = torch.stack([batch["img"][batch["label"] == y].mean(dim=(0, 2, 3)) for y in range(3)])
    assert torch.cdist(means, means).masked_select(~torch.eye(3, dtype=torch.bool)).min() > 0.5
