"""ImageNet (listing, caches, train-only few-shot) and the four test-only variants."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import pytest

import datasets
from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.errors import FileContentError
from tests.helpers import dataset_fixtures as fx


def build(root: Path, name: str, cache: Path, **kw):
    return DATASET_REGISTRY.get(name)(fx.make_dataset_cfg(root, name, cache, **kw))


def rel(items: list[Datum], base: Path) -> list[tuple[str, int, str]]:
    return [(os.path.relpath(d.impath, base).replace(os.sep, "/"), d.label, d.classname) for d in items]


def test_imagenet_lists_sorted_wnids_with_classnames_and_no_val(tmp_path) -> None:
    fixture = fx.make_imagenet(tmp_path / "data", num_classes=3)
    ds = build(tmp_path / "data", "ImageNet", tmp_path / "cache")
    assert ds.classnames == ["tench", "goldfish", "great white shark"] and ds.num_classes == 3
    train = rel(ds.train_x, fixture.dataset_dir)
    assert train[:4] == [(f"images/train/n01440764/n01440764_{i:04d}.JPEG", 0, "tench") for i in range(4)]
    assert len(train) == 12 and len(ds.test) == 6 and ds.val is ds.test
    assert not any(".DS_Store" in d.impath for d in ds.train_x)
    with pytest.raises(ValueError, match="has no validation split"):
        build(tmp_path / "data", "ImageNet", tmp_path / "cache", val_source="val")
    base = build(tmp_path / "data", "ImageNet", tmp_path / "cache", subsample="base")
    assert base.classnames == ["tench", "goldfish"]


def test_imagenet_listing_cache_is_reused_and_invalidated_by_new_images(tmp_path, monkeypatch) -> None:
    fixture = fx.make_imagenet(tmp_path / "data", num_classes=3)
    first = build(tmp_path / "data", "ImageNet", tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "ImageNet").glob("listing-*.json"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("the listing cache should have been used")

    monkeypatch.setattr(datasets.ImageNet, "read_data", fail)
    again = build(tmp_path / "data", "ImageNet", tmp_path / "cache")
    assert (again.train_x, again.test) == (first.train_x, first.test)
    monkeypatch.undo()
    fx.write_image(fixture.dataset_dir / "images" / "train" / "n01443537" / "extra.JPEG")
    third = build(tmp_path / "data", "ImageNet", tmp_path / "cache")
    assert len(third.train_x) == len(first.train_x) + 1


def test_imagenet_few_shot_is_train_only_and_follows_the_rule(tmp_path) -> None:
    fx.make_imagenet(tmp_path / "data", num_classes=3, train_per_class=5)
    full = build(tmp_path / "data", "ImageNet", tmp_path / "cache")
    for seed in (1, 2, 3):
        ds = build(tmp_path / "data", "ImageNet", tmp_path / "cache", num_shots=2, seed=seed)
        rng = random.Random(seed)
        groups: dict[int, list[Datum]] = {}
        for d in full.train_x:
            groups.setdefault(d.label, []).append(d)
        assert ds.train_x == [d for g in groups.values() for d in rng.sample(g, 2)]
        assert ds.test == full.test
    assert len(list((tmp_path / "cache" / "ImageNet").glob("fewshot-shot_2-seed_*.json"))) == 3


def test_imagenet_upstream_preprocessed_pickle_is_used(tmp_path) -> None:
    fixture = fx.make_imagenet(tmp_path / "data", num_classes=2)
    base = "/mnt/old/imagenet/images"
    train = [Datum(f"{base}/train/n01443537/n01443537_0001.JPEG", label=0, classname="goldfish", check=False)]
    test = [Datum(f"{base}/val/n01440764/ILSVRC2012_val_00001.JPEG", label=1, classname="tench", check=False)]
    (fixture.dataset_dir / "preprocessed.pkl").write_bytes(pickle.dumps({"train": train, "test": test}))
    ds = build(tmp_path / "data", "ImageNet", tmp_path / "cache")
    assert rel(ds.train_x, fixture.dataset_dir) == [("images/train/n01443537/n01443537_0001.JPEG", 0, "goldfish")]
    assert rel(ds.test, fixture.dataset_dir) == [("images/val/n01440764/ILSVRC2012_val_00001.JPEG", 1, "tench")]


def test_imagenet_unknown_wnid_folder_is_explained(tmp_path) -> None:
    fixture = fx.make_imagenet(tmp_path / "data", num_classes=2)
    for split in ("train", "val"):
        fx.write_image(fixture.dataset_dir / "images" / split / "ILSVRC2012_val_00000001" / "x.JPEG")
    with pytest.raises(FileContentError, match="ILSVRC2012_val_00000001.*classnames.txt"):
        build(tmp_path / "data", "ImageNet", tmp_path / "cache")


def test_imagenetv2_labels_are_folder_numbers_and_names_are_line_positions(tmp_path) -> None:
    fixture = fx.make_imagenetv2(tmp_path, labels=(0, 5, 999))
    ds = build(tmp_path, "ImageNetV2", tmp_path / "cache", num_shots=1, subsample="base")  # both ignored
    assert [d.label for d in ds.test] == [0, 0, 5, 5, 999, 999]
    assert ds.num_classes == 1000 and ds.classnames == fixture.classnames
    assert ds.lab2cname[5] == "electric ray" and ds.val is None and ds.train_x is ds.test
    (fixture.dataset_dir / "imagenetv2-matched-frequency-format-val" / "500").rmdir()
    with pytest.raises(FileNotFoundError, match=r"1 class folder\(s\) missing.*\['500'\]"):
        build(tmp_path, "ImageNetV2", tmp_path / "cache")


@pytest.mark.parametrize(
    "name, maker, image_folder",
    [
        ("ImageNetSketch", fx.make_imagenet_sketch, "images"),
        ("ImageNetA", fx.make_imagenet_a, "imagenet-a"),
        ("ImageNetR", fx.make_imagenet_r, "imagenet-r"),
    ],
)
def test_wnid_variants_label_sorted_wnids_and_skip_readme(tmp_path, name: str, maker, image_folder: str) -> None:
    fixture = maker(tmp_path / "data")
    before = sorted(p.name for p in (tmp_path / "data").rglob("*"))
    ds = build(tmp_path / "data", name, tmp_path / "cache", num_shots=1, subsample="new")  # both ignored
    wnids = sorted(p.name for p in (fixture.dataset_dir / image_folder).iterdir() if p.is_dir())
    assert [d.label for d in ds.test] == [0, 0, 1, 1, 2, 2]
    assert [os.path.basename(os.path.dirname(d.impath)) for d in ds.test[::2]] == wnids
    assert ds.classnames == fixture.classnames and ds.val is None and ds.train_x is ds.test
    assert before == sorted(p.name for p in (tmp_path / "data").rglob("*")) and not (tmp_path / "cache").exists()


def test_variant_without_classnames_file_points_to_layout(tmp_path) -> None:
    fixture = fx.make_imagenet_a(tmp_path)
    (fixture.dataset_dir / "classnames.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"classnames.txt not found(.|\n)*imagenet-a/README.txt"):
        build(tmp_path, "ImageNetA", tmp_path / "cache")


def test_imagenet_flat_val_folder_is_explained(tmp_path) -> None:
    fixture = fx.make_imagenet(tmp_path / "data", num_classes=2)
    val = fixture.dataset_dir / "images" / "val"
    for class_dir in list(val.iterdir()):
        for image in class_dir.iterdir():
            image.rename(val / image.name)
        class_dir.rmdir()
    with pytest.raises(FileNotFoundError, match=r"same wnid folders(.|\n)*flat folder(.|\n)*DATASETS.md"):
        build(tmp_path / "data", "ImageNet", tmp_path / "cache")


def test_imagenet_upstream_few_shot_pickle_holds_train_only(tmp_path) -> None:
    fixture = fx.make_imagenet(tmp_path / "data", num_classes=2)
    chosen = [Datum("/x/imagenet/images/train/n01440764/n01440764_0002.JPEG", label=0, classname="tench", check=False)]
    pkl = fixture.dataset_dir / "split_fewshot" / "shot_1-seed_1.pkl"
    pkl.parent.mkdir()
    pkl.write_bytes(pickle.dumps({"train": chosen}))
    ds = build(tmp_path / "data", "ImageNet", tmp_path / "cache", num_shots=1, seed=1)
    assert rel(ds.train_x, fixture.dataset_dir) == [("images/train/n01440764/n01440764_0002.JPEG", 0, "tench")]
    assert len(ds.test) == 4
    (pkl.parent / "shot_1-seed_-1.pkl").write_bytes(pkl.read_bytes())
    unseeded = build(tmp_path / "data", "ImageNet", tmp_path / "cache", num_shots=1, seed=-1)
    assert len(unseeded.train_x) == 2  # upstream's seed_-1 pickle is ignored: unseeded runs sample afresh
