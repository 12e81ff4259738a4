"""DatasetWrapper, samplers, build_data_loader and DataManager."""

import random

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from dassl.config import get_cfg_default
from dassl.data import DataManager, DatasetWrapper
from dassl.data import data_manager as dm_module
from dassl.data.data_manager import ImageReadError, build_data_loader, set_loader_epoch
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
from dassl.data.samplers import (
    RandomClassSampler,
    RandomDomainSampler,
    SeqDomainSampler,
    ShardedSequentialSampler,
    build_sampler,
)
from dassl.data.transforms import build_transform


def _write_images(root, n, start=0, fmt="png", num_classes=5, domains=1):
    items = []
    for i in range(start, start + n):
        rs = np.random.RandomState(i)
        w, h = (32, 32) if i % 2 else (40, 30)
        path = root / f"img{i:03d}.{fmt}"
        Image.fromarray(rs.randint(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        label = i % num_classes
        items.append(Datum(str(path), label, i % domains, f"class_{label}"))
    return items


class TinyLoaderDataset(DatasetBase):
    """10 train (PNG), 4 val (JPEG), 5 test (PNG) images under cfg.DATASET.ROOT; 5 classes."""

    def __init__(self, cfg):
        from pathlib import Path

        root = Path(cfg.DATASET.ROOT)
        train = _write_images(root, 10)
        val = _write_images(root, 4, start=10, fmt="jpg")
        test = _write_images(root, 5, start=20)
        super().__init__(train_x=train, val=val, test=test)


DATASET_REGISTRY.register(TinyLoaderDataset, force=True)


def _cfg(root, workers=0):
    cfg = get_cfg_default()
    cfg.DATASET.NAME = "TinyLoaderDataset"
    cfg.DATASET.ROOT = str(root)
    cfg.INPUT.SIZE = (32, 32)
    cfg.INPUT.TRANSFORMS = ["random_resized_crop", "random_flip", "normalize"]
    cfg.DATALOADER.NUM_WORKERS = workers
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 4
    cfg.DATALOADER.TEST.BATCH_SIZE = 3
    cfg.SEED = 1
    return cfg


def test_data_manager_loaders_and_summary(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    dm = DataManager(cfg)
    out = capsys.readouterr().out
    assert out.index("Loading dataset: TinyLoaderDataset") < out.index("Building transform_train")
    assert out.index("Building transform_train") < out.index("Building transform_test")
    assert out.endswith(
        "---------  -----------------\n"
        "Dataset    TinyLoaderDataset\n"
        "# classes  5\n"
        "# train_x  10\n"
        "# val      4\n"
        "# test     5\n"
        "---------  -----------------\n"
    )
    assert (dm.num_classes, dm.num_source_domains, dm.lab2cname[3]) == (5, 0, "class_3")
    assert dm.train_loader_u is None
    assert (len(dm.train_loader_x), len(dm.val_loader), len(dm.test_loader)) == (2, 2, 2)  # drop_last in train only
    assert dm.train_loader_x.batch_size == 4 and dm.test_loader.batch_size == 3
    assert dm.train_loader_x.pin_memory is False or torch.cuda.is_available()
    batch = next(iter(dm.train_loader_x))
    assert set(batch) == {"label", "domain", "impath", "index", "img"}
    assert batch["img"].shape == (4, 3, 32, 32) and batch["label"].dtype == torch.int64
    test_batches = list(dm.test_loader)
    assert [b["index"].tolist() for b in test_batches] == [[0, 1, 2], [3, 4]]  # sequential, no drop_last
    assert test_batches[0]["img"].shape == (3, 3, 32, 32)


def test_data_manager_custom_transforms_and_thousands_separator(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    tfm = build_transform(cfg, is_train=False)
    capsys.readouterr()
    DataManager(cfg, custom_tfm_train=tfm, custom_tfm_test=tfm)
    out = capsys.readouterr().out
    assert "* Using custom transform for training\n* Using custom transform for testing\n" in out
    assert "Building transform" not in out
    assert dm_module._format_table([["# train_x", f"{2944:,}"], ["Dataset", "OxfordPets"]]).splitlines() == [
        "---------  ----------",
        "# train_x  2,944",
        "Dataset    OxfordPets",
        "---------  ----------",
    ]


def test_single_process_shuffle_matches_plain_torch_loader(tmp_path):
    """Same torch draws as upstream's DataLoader(RandomSampler) and no RNG use at construction."""
    cfg = _cfg(tmp_path)
    items = _write_images(tmp_path, 10)
    tfm = build_transform(cfg, is_train=False)
    torch.manual_seed(5)
    random.seed(5)
    states = (torch.get_rng_state(), random.getstate())
    loader = build_data_loader(cfg, "RandomSampler", items, batch_size=4, tfm=tfm, is_train=True)
    assert torch.equal(torch.get_rng_state(), states[0]) and random.getstate() == states[1]
    ours = [b["index"].tolist() for epoch in range(2) for b in loader]
    torch.manual_seed(5)
    ref = DataLoader(list(range(10)), batch_size=4, sampler=RandomSampler(list(range(10))), drop_last=True)
    theirs = [b.tolist() for epoch in range(2) for b in ref]
    assert ours == theirs


def test_dataset_wrapper_keys_k_transforms_and_img0(tmp_path):
    cfg = _cfg(tmp_path)
    items = _write_images(tmp_path, 2)
    cfg.DATALOADER.K_TRANSFORMS = 2
    cfg.DATALOADER.RETURN_IMG0 = True
    tfm = build_transform(cfg, is_train=False)
    item = DatasetWrapper(cfg, items, transform=[tfm, tfm], is_train=True)[0]
    assert set(item) == {"label", "domain", "impath", "index", "img", "img2", "img0"}
    assert isinstance(item["img"], list) and len(item["img"]) == 2
    assert item["img0"].shape == (3, 32, 32)  # resized to exactly INPUT.SIZE from 40x30
    assert (item["label"], item["domain"], item["impath"], item["index"]) == (0, 0, items[0].impath, 0)
    item = DatasetWrapper(cfg, items, transform=tfm, is_train=False)[1]  # K only applies in training
    assert isinstance(item["img"], torch.Tensor)
    assert isinstance(DatasetWrapper(cfg, items, transform=None, is_train=False)[0]["img"], Image.Image)
    with pytest.raises(ValueError, match="2 times because transform is None"):
        DatasetWrapper(cfg, items, transform=None, is_train=True)
    with pytest.raises(ValueError, match="default collate cannot batch PIL images"):
        build_data_loader(cfg, "SequentialSampler", items, batch_size=2, tfm=None, is_train=False)


def test_dataset_wrapper_names_corrupt_and_missing_files(tmp_path):
    cfg = _cfg(tmp_path)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    items = [Datum(str(bad), 0), Datum(str(tmp_path / "gone.png"), 1, check=False)]
    wrapper = DatasetWrapper(cfg, items, transform=build_transform(cfg, is_train=False))
    with pytest.raises(ImageReadError, match="broken.jpg"):
        wrapper[0]
    with pytest.raises(FileNotFoundError, match="gone.png"):
        wrapper[1]


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_sharded_sampler_covers_every_index_once(world_size):
    data = list(range(10))
    shards = [list(ShardedSequentialSampler(data, rank=r, world_size=world_size)) for r in range(world_size)]
    assert sorted(i for s in shards for i in s) == data
    assert [len(ShardedSequentialSampler(data, r, world_size)) for r in range(world_size)] == [len(s) for s in shards]
    with pytest.raises(ValueError, match="rank"):
        ShardedSequentialSampler(data, rank=world_size, world_size=world_size)


def test_distributed_loaders(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)
    items = _write_images(tmp_path, 11)
    tfm = build_transform(cfg, is_train=False)
    seen = []
    for rank in range(2):
        monkeypatch.setattr(dm_module, "_distributed_world", lambda rank=rank: (rank, 2))
        train = build_data_loader(cfg, "RandomSampler", items, batch_size=4, tfm=tfm, is_train=True)
        assert isinstance(train.sampler, DistributedSampler) and train.sampler.seed == 1 and train.sampler.shuffle
        assert train.batch_size == 2  # per-process batch = configured // world size
        set_loader_epoch(train, 0)
        order0 = list(train.sampler)
        set_loader_epoch(train, 1)
        assert list(train.sampler) != order0
        test = build_data_loader(cfg, "SequentialSampler", items, batch_size=4, tfm=tfm, is_train=False)
        seen += [i for b in test for i in b["index"].tolist()]
        with pytest.raises(ValueError, match="not supported with torch.distributed"):
            build_data_loader(cfg, "RandomClassSampler", items, batch_size=4, tfm=tfm, is_train=True)
    assert sorted(seen) == list(range(11))


def test_persistent_workers_only_on_request(tmp_path):
    """Upstream re-creates workers every epoch (seeded from the torch RNG); keeping them alive is opt-in."""
    cfg = _cfg(tmp_path, workers=1)
    items = _write_images(tmp_path, 4)
    tfm = build_transform(cfg, False)
    loader = build_data_loader(cfg, "SequentialSampler", items, batch_size=2, tfm=tfm, is_train=False)
    assert not loader.persistent_workers and loader.num_workers == 1
    cfg.DATALOADER.PERSISTENT_WORKERS = True
    loader = build_data_loader(cfg, "SequentialSampler", items, batch_size=2, tfm=tfm, is_train=False)
    assert loader.persistent_workers


def test_domain_and_class_samplers_do_not_draw_at_construction():
    items = [Datum(f"{i}", label=i % 4, domain=i % 3, check=False) for i in range(24)]
    random.seed(0)
    np.random.seed(0)
    state = (random.getstate(), np.random.get_state()[1].copy())
    samplers = [RandomDomainSampler(items, 6, 2), SeqDomainSampler(items, 6), RandomClassSampler(items, 4, 2)]
    assert random.getstate() == state[0] and np.array_equal(np.random.get_state()[1], state[1])
    assert len(samplers[1]) == 24  # all domains per batch: 8 images per domain / 2 per batch = 4 batches of 6
    for sampler in samplers:
        idxs = list(sampler)
        assert len(idxs) == len(sampler) and len(set(idxs)) == len(idxs)
    seq = list(samplers[1])
    assert [items[i].domain for i in seq[:6]] == [0, 0, 1, 1, 2, 2]  # sorted domains, 2 each
    cls = list(samplers[2])
    assert all(items[a].label == items[b].label for a, b in zip(cls[::2], cls[1::2], strict=True))
    with pytest.raises(ValueError, match="Unknown sampler type: Foo"):
        build_sampler("Foo", data_source=items)
