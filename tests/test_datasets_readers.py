"""The 11 readers with a train split, on real raw layouts: split file path, generated
split path, few-shot rule, base/new, caches outside a read-only root, upstream pickles, actionable errors."""

from __future__ import annotations

import json
import os
import pickle
import random
import stat
from pathlib import Path

import pytest
import yaml

import datasets
from dassl.data.datasets import DATASET_REGISTRY, Datum
from datasets.reader_base import BenchmarkDataset
from datasets.split_builders import read_and_split_data, split_label_groups, split_trainval
from datasets.split_io import MissingImagesError
from tests.helpers import dataset_fixtures as fx

REPO = Path(__file__).resolve().parents[1]

# name -> (fixture builder, builder kwargs when generating, kwargs for "split file only")
SPLIT_READERS = {
    "Caltech101": (fx.make_caltech101, {"with_split_file": False}, {"with_split_file": True}),
    "OxfordPets": (fx.make_oxford_pets, {}, {"with_split_file": True, "with_annotations": False}),
    "StanfordCars": (fx.make_stanford_cars, {}, {"with_split_file": True, "with_annotations": False}),
    "OxfordFlowers": (fx.make_oxford_flowers, {}, {"with_split_file": True, "with_annotations": False}),
    "Food101": (fx.make_food101, {}, {"with_split_file": True}),
    "SUN397": (fx.make_sun397, {}, {"with_split_file": True, "with_annotations": False}),
    "DescribableTextures": (fx.make_dtd, {}, {"with_split_file": True}),
    "EuroSAT": (fx.make_eurosat, {}, {"with_split_file": True}),
    "UCF101": (fx.make_ucf101, {}, {"with_split_file": True, "with_annotations": False}),
}
FOLDER_TREE = {  # reader -> (ignored folders, renames) of the folder-per-class split
    "Caltech101": (("BACKGROUND_Google", "Faces_easy"), fx.CALTECH_RENAMES),
    "Food101": ((), {}),
    "DescribableTextures": ((), {}),
    "EuroSAT": ((), fx.EUROSAT_RENAMES),
}


def build(root: Path, name: str, cache: Path, **kw) -> BenchmarkDataset:
    return DATASET_REGISTRY.get(name)(fx.make_dataset_cfg(root, name, cache, **kw))


def rel(items: list[Datum], base: Path) -> list[tuple[str, int, str]]:
    return [(os.path.relpath(d.impath, base).replace(os.sep, "/"), d.label, d.classname) for d in items]


def to_datums(items: list[tuple[str, int, str]], base: Path) -> list[Datum]:
    return [Datum(str(base / p), label=y, classname=c, check=False) for p, y, c in items]


def few_shot_rule(items: list[Datum], k: int, rng: random.Random) -> list[Datum]:
    """Upstream few-shot sampling written out: per label (first appearance) rng.sample(group, k), or the whole group."""
    groups: dict[int, list[Datum]] = {}
    for item in items:
        groups.setdefault(item.label, []).append(item)
    out: list[Datum] = []
    for group in groups.values():
        out += rng.sample(group, k) if len(group) >= k else group
    return out


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def test_every_reader_is_registered_with_its_upstream_config_file() -> None:
    expected = {
        "imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
        "stanford_cars": "StanfordCars", "oxford_flowers": "OxfordFlowers", "food101": "Food101",
        "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DescribableTextures", "eurosat": "EuroSAT",
        "ucf101": "UCF101", "imagenetv2": "ImageNetV2", "imagenet_sketch": "ImageNetSketch",
        "imagenet_a": "ImageNetA", "imagenet_r": "ImageNetR",
    }  # fmt: skip
    for stem, name in expected.items():
        text = (REPO / "configs" / "datasets" / f"{stem}.yaml").read_text()
        assert yaml.safe_load(text) == {"DATASET": {"NAME": name}}
        assert name in DATASET_REGISTRY
    assert datasets.DTD is datasets.DescribableTextures


@pytest.mark.parametrize("name", sorted(SPLIT_READERS))
def test_split_file_is_read_in_file_order_without_annotations(tmp_path, name: str) -> None:
    maker, _, kwargs = SPLIT_READERS[name]
    fixture = maker(tmp_path / "data", **kwargs)
    ds = build(tmp_path / "data", name, tmp_path / "cache", val_source="val")
    assert rel(ds.train_x, fixture.dataset_dir) == fixture.split["train"]
    assert rel(ds.val, fixture.dataset_dir) == fixture.split["val"]
    assert rel(ds.test, fixture.dataset_dir) == fixture.split["test"]
    assert ds.classnames == fixture.classnames
    assert ds.lab2cname == dict(enumerate(fixture.classnames)) and ds.num_classes == fixture.num_classes
    assert not (tmp_path / "cache").exists()  # nothing generated, no few-shot: nothing cached


@pytest.mark.parametrize("name", sorted(SPLIT_READERS))
def test_generated_split_follows_the_builders_with_the_seeded_rng(tmp_path, name: str) -> None:
    maker, kwargs, _ = SPLIT_READERS[name]
    fixture = maker(tmp_path / "data", **kwargs)
    before = files_under(tmp_path / "data")
    ds = build(tmp_path / "data", name, tmp_path / "cache", seed=3, val_source="val")
    rng = random.Random(3)
    if name in FOLDER_TREE:
        ignored, renames = FOLDER_TREE[name]
        expected = read_and_split_data(str(ds.image_dir), ignored=ignored, new_cnames=renames, rng=rng)
    elif name == "OxfordFlowers":
        groups: dict[int, tuple[str, list[str]]] = {}
        for p, y, c in fixture.raw["groups"]:
            groups.setdefault(y, (c, []))[1].append(str(fixture.dataset_dir / p))
        expected = split_label_groups(((y, c, paths) for y, (c, paths) in groups.items()), rng=rng)
        assert list(dict.fromkeys(d.label for d in ds.train_x)) == [2, 0, 1]  # first appearance of 3, 1, 2
    else:
        trainval = to_datums(fixture.raw["trainval"], fixture.dataset_dir)
        expected = (*split_trainval(trainval, rng=rng), to_datums(fixture.raw["test"], fixture.dataset_dir))
    assert (ds.train_x, ds.val, ds.test) == expected
    assert ds.classnames == fixture.classnames
    assert all(ds.lab2cname[d.label] == d.classname for d in ds.train_x + ds.val + ds.test)
    assert files_under(tmp_path / "data") == before  # no split file, no split_fewshot/ in the dataset root
    assert len(list((tmp_path / "cache" / name).glob("split-seed_3-*.json"))) == 1


def test_caltech_labels_put_capitalised_folders_first_and_rename(tmp_path) -> None:
    fx.make_caltech101(tmp_path, num_classes=8, per_class=4, with_split_file=False)
    ds = build(tmp_path, "Caltech101", tmp_path / "cache")
    assert ds.classnames == ["face", "leopard", "motorbike", "accordion", "airplane", "anchor", "car_side", "yin_yang"]
    paths = {d.impath for d in ds.train_x + ds.test}
    assert not any("BACKGROUND_Google" in p or "Faces_easy" in p or ".DS_Store" in p for p in paths)
    assert [len([d for d in ds.train_x if d.label == y]) for y in range(8)] == [2] * 8  # round(4 * 0.5)


@pytest.fixture(scope="module")
def caltech40(tmp_path_factory) -> fx.DatasetFixture:
    return fx.make_caltech101(tmp_path_factory.mktemp("caltech40"), num_classes=3, per_class=40)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("shots", [1, 2, 4, 16])
def test_few_shot_follows_the_sampling_rule(tmp_path, caltech40, seed: int, shots: int) -> None:
    ds = build(caltech40.root, "Caltech101", tmp_path / "cache", num_shots=shots, seed=seed, val_source="val")
    rng = random.Random(seed)  # split file present: the few-shot draws start from a fresh seed
    expected_train = few_shot_rule(to_datums(caltech40.split["train"], caltech40.dataset_dir), shots, rng)
    expected_val = few_shot_rule(to_datums(caltech40.split["val"], caltech40.dataset_dir), min(shots, 4), rng)
    assert ds.train_x == expected_train and ds.val == expected_val
    assert len(ds.train_x) == 3 * shots and len(ds.val) == 3 * min(shots, 4)
    assert rel(ds.test, caltech40.dataset_dir) == caltech40.split["test"]  # test is never sampled


def test_few_shot_after_generation_continues_the_split_rng(tmp_path) -> None:
    fixture = fx.make_oxford_pets(tmp_path / "data", trainval_per_class=6)
    for seed in (1, 2, 3):
        ds = build(tmp_path / "data", "OxfordPets", tmp_path / "cache", num_shots=2, seed=seed, val_source="val")
        rng = random.Random(seed)
        train, val = split_trainval(to_datums(fixture.raw["trainval"], fixture.dataset_dir), rng=rng)
        assert ds.train_x == few_shot_rule(train, 2, rng) and ds.val == few_shot_rule(val, 2, rng)


BASE_NEW = [("base", ["face", "leopard", "motorbike"]), ("new", ["accordion", "airplane"])]


@pytest.mark.parametrize("subsample, names", BASE_NEW)
def test_base_new_split(tmp_path, subsample: str, names: list[str]) -> None:
    fixture = fx.make_caltech101(tmp_path, num_classes=5, per_class=6)
    ds = build(tmp_path, "Caltech101", tmp_path / "cache", subsample=subsample)
    assert ds.classnames == names and ds.num_classes == len(names)
    assert sorted({d.label for d in ds.test}) == list(range(len(names)))
    assert ds.val is ds.test  # VAL_SOURCE "test" (upstream)
    offset = 0 if subsample == "base" else 3
    expected_test = [(p, y - offset, c) for p, y, c in fixture.split["test"] if (y < 3) == (subsample == "base")]
    assert rel(ds.test, fixture.dataset_dir) == expected_test
    assert len(ds.train_x) == 3 * len(names)


def test_read_only_root_caches_outside_and_second_run_reuses_them(tmp_path, monkeypatch) -> None:
    fx.make_oxford_pets(tmp_path / "data")
    before = files_under(tmp_path / "data")
    modes = {p: p.stat().st_mode for p in [tmp_path / "data", *(tmp_path / "data").rglob("*")]}
    for p, mode in modes.items():
        p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        first = build(tmp_path / "data", "OxfordPets", tmp_path / "cache", num_shots=2, seed=1, val_source="val")
        assert files_under(tmp_path / "data") == before
        cached = sorted(p.name.split("-")[0] for p in (tmp_path / "cache" / "OxfordPets").iterdir())
        assert cached == ["fewshot", "split"]

        def fail(*args, **kwargs):
            raise AssertionError("the cache should have been used")

        monkeypatch.setattr(datasets.OxfordPets, "generate_split", fail)
        monkeypatch.setattr(BenchmarkDataset, "generate_fewshot_dataset", fail)
        second = build(tmp_path / "data", "OxfordPets", tmp_path / "cache", num_shots=2, seed=1, val_source="val")
        assert (second.train_x, second.val, second.test) == (first.train_x, first.val, first.test)
        monkeypatch.undo()
        # The split cache restores the RNG state, so new few-shot draws equal a from-scratch run.
        (next((tmp_path / "cache" / "OxfordPets").glob("fewshot-*"))).unlink()
        third = build(tmp_path / "data", "OxfordPets", tmp_path / "cache", num_shots=2, seed=1, val_source="val")
        assert third.train_x == first.train_x and third.val == first.val
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def test_unseeded_runs_write_no_cache(tmp_path) -> None:
    fx.make_oxford_pets(tmp_path / "data")
    build(tmp_path / "data", "OxfordPets", tmp_path / "cache", num_shots=1, seed=-1)
    assert not (tmp_path / "cache").exists()


def test_changed_split_file_is_not_served_from_a_stale_cache(tmp_path) -> None:
    fixture = fx.make_caltech101(tmp_path / "data", num_classes=3, per_class=10)
    first = build(tmp_path / "data", "Caltech101", tmp_path / "cache", num_shots=2, seed=1)
    split_path = fixture.dataset_dir / "split_zhou_Caltech101.json"
    split_path.write_text(split_path.read_text().replace('"leopard"', '"leopard cat"'))
    second = build(tmp_path / "data", "Caltech101", tmp_path / "cache", num_shots=2, seed=1)
    assert "leopard cat" in second.classnames
    assert [d.impath for d in second.train_x] == [d.impath for d in first.train_x]


def test_upstream_few_shot_pickle_is_honoured_with_rebased_paths(tmp_path) -> None:
    fixture = fx.make_caltech101(tmp_path / "data", num_classes=3, per_class=10)
    chosen = fixture.split["train"][::3]
    foreign = {
        key: [Datum(f"/home/someone/DATA/caltech-101/{p}", label=y, classname=c, check=False) for p, y, c in items]
        for key, items in (("train", chosen), ("val", fixture.split["val"][:2]))
    }
    pkl = fixture.dataset_dir / "split_fewshot" / "shot_4-seed_2.pkl"
    pkl.parent.mkdir()
    pkl.write_bytes(pickle.dumps(foreign, protocol=pickle.HIGHEST_PROTOCOL))
    ds = build(tmp_path / "data", "Caltech101", tmp_path / "cache", num_shots=4, seed=2, val_source="val")
    assert rel(ds.train_x, fixture.dataset_dir) == chosen
    assert rel(ds.val, fixture.dataset_dir) == fixture.split["val"][:2]
    other_seed = build(tmp_path / "data", "Caltech101", tmp_path / "cache", num_shots=4, seed=3)
    assert rel(other_seed.train_x, fixture.dataset_dir) != chosen


def test_missing_dataset_folder_shows_layout_and_guide(tmp_path) -> None:
    (tmp_path / "oxford_pet").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        build(tmp_path, "OxfordPets", tmp_path / "cache")
    msg = str(err.value)
    assert "oxford_pets" in msg and "annotations/trainval.txt" in msg and "DATASETS.md" in msg and "oxford_pet" in msg


def test_neither_split_file_nor_annotations(tmp_path) -> None:
    fx.make_sun397(tmp_path, with_annotations=False)
    with pytest.raises(FileNotFoundError, match=r"split_zhou_SUN397.json nor the raw file\(s\) \['ClassName.txt'"):
        build(tmp_path, "SUN397", tmp_path / "cache")


def test_split_file_naming_missing_images_is_one_error(tmp_path) -> None:
    fixture = fx.make_caltech101(tmp_path, num_classes=3, per_class=6)
    for p, _, _ in fixture.split["train"][:1] + fixture.split["test"]:
        (fixture.dataset_dir / p).unlink()
    pattern = r"7 of 18 image\(s\) named by split file .*split_zhou_Caltech101(.|\n)*and 2 more"
    with pytest.raises(MissingImagesError, match=pattern):
        build(tmp_path, "Caltech101", tmp_path / "cache")


def test_fgvc_aircraft_uses_official_lists_and_writes_nothing(tmp_path) -> None:
    fixture = fx.make_fgvc_aircraft(tmp_path / "data")
    before = files_under(tmp_path / "data")
    ds = build(tmp_path / "data", "FGVCAircraft", tmp_path / "cache", val_source="val")
    assert ds.classnames == ["707-320", "Cessna 172", "F/A-18"]
    assert [d.label for d in ds.train_x] == [2, 0, 1] * 3 and len(ds.val) == len(ds.test) == 9
    assert ds.test[0].impath == str(fixture.dataset_dir / "images" / "1000019.jpg")
    assert files_under(tmp_path / "data") == before and not (tmp_path / "cache").exists()
    few = build(tmp_path / "data", "FGVCAircraft", tmp_path / "cache", num_shots=2, seed=1, val_source="val")
    rng = random.Random(1)
    assert few.train_x == few_shot_rule(ds.train_x, 2, rng) and few.val == few_shot_rule(ds.val, 2, rng)


def test_malformed_cache_entries_are_rebuilt(tmp_path) -> None:
    fx.make_oxford_pets(tmp_path / "data")
    first = build(tmp_path / "data", "OxfordPets", tmp_path / "cache", num_shots=1, seed=1, val_source="val")
    for path in (tmp_path / "cache" / "OxfordPets").iterdir():
        data = json.loads(path.read_text())
        data.pop("rng_state" if path.name.startswith("split") else "split")
        path.write_text(json.dumps(data))
    again = build(tmp_path / "data", "OxfordPets", tmp_path / "cache", num_shots=1, seed=1, val_source="val")
    assert (again.train_x, again.val, again.test) == (first.train_x, first.val, first.test)
    rebuilt = {p.name.split("-")[0]: json.loads(p.read_text()) for p in (tmp_path / "cache" / "OxfordPets").iterdir()}
    assert "rng_state" in rebuilt["split"] and "split" in rebuilt["fewshot"]
