"""Shared dataset stages: golden vectors, split-file format/errors, base/new split,
assembly, cache directory and the Datum-only unpickler."""

from __future__ import annotations

import json
import os
import pickle
import random

import pytest

from dassl.data.datasets import Datum, sample_few_shot
from datasets.cache import UnsafePickleError, cache_dir, load_upstream_pickle, rebase_path
from datasets.common import finalize_dataset, subsample_classes
from datasets.dtd import DTD
from datasets.oxford_pets import OxfordPets
from datasets.split_builders import read_and_split_data, split_trainval
from datasets.split_io import MissingImagesError, SplitFileError, dumps_split, read_split, write_split
from tests.helpers.dataset_fixtures import make_dataset_cfg


def _items(labels: list[int]) -> list[Datum]:
    return [Datum(impath=f"/x/{i}.jpg", label=y, classname=f"c{y}", check=False) for i, y in enumerate(labels)]


def _idx(items: list[Datum]) -> list[int]:
    return [int(os.path.basename(d.impath).split(".")[0]) for d in items]


# ---------------------------------------------------------------------------------------------------- golden vectors
@pytest.mark.parametrize(
    "seed, first, second",
    [(1, [1, 3, 2, 4, 5, 7], [9, 1, 3, 4, 2, 10, 5, 7, 8]), (2, [0, 9, 2, 4, 7, 8], [3, 1, 0, 2, 6, 10, 11, 8, 7])],
)
def test_few_shot_golden_vector_a(seed: int, first: list[int], second: list[int]) -> None:
    items = _items([1, 1, 0, 1, 0, 2, 0, 2, 2, 1, 0, 2])
    rng = random.Random(seed)
    assert _idx(sample_few_shot(items, 2, rng)) == first
    assert _idx(sample_few_shot(items, 3, rng)) == second


@pytest.mark.parametrize(
    "seed, train, val",
    [
        (0, [3, 0, 12, 9, 7, 4, 10, 13, 2, 14, 8, 11], [6, 1, 5]),
        (1, [9, 12, 0, 3, 7, 4, 13, 10, 11, 14, 2, 5], [6, 1, 8]),
    ],
)
def test_split_trainval_golden_vector_b(seed: int, train: list[int], val: list[int]) -> None:
    items = _items([[2, 0, 1][i % 3] for i in range(15)])
    got_train, got_val = split_trainval(items, p_val=0.2, rng=random.Random(seed))
    assert (_idx(got_train), _idx(got_val)) == (train, val)
    # The upstream alias uses the global generator, seeded as the launcher would.
    random.seed(seed)
    alias_train, alias_val = OxfordPets.split_trainval(items)
    assert (_idx(alias_train), _idx(alias_val)) == (train, val)


GOLDEN_C = {
    0: (["A04", "A02", "A01", "A00", "z09", "z00", "z03", "z05", "z01"], ["A05", "z08", "z02"],
        ["A03", "A06", "z07", "z04", "z06"]),
    1: (["A03", "A06", "A05", "A02", "z02", "z05", "z04", "z03", "z00"], ["A00", "z01", "z08"],
        ["A04", "A01", "z06", "z09", "z07"]),
}  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1])
def test_read_and_split_data_golden_vector_c(tmp_path, seed: int) -> None:
    for folder, n in (("zeta", 10), ("Alpha", 7)):
        (tmp_path / folder).mkdir()
        for i in range(n):
            (tmp_path / folder / f"{i:02d}.jpg").write_bytes(b"")
    (tmp_path / "zeta" / ".DS_Store").write_bytes(b"")  # hidden entries never count

    def short(items: list[Datum]) -> list[str]:
        return [os.path.basename(os.path.dirname(d.impath))[0] + os.path.basename(d.impath)[:2] for d in items]

    got = read_and_split_data(str(tmp_path), rng=random.Random(seed))
    assert tuple(short(x) for x in got) == GOLDEN_C[seed]
    assert {d.label: d.classname for d in got[0]} == {0: "Alpha", 1: "zeta"}
    random.seed(seed)
    assert tuple(short(x) for x in DTD.read_and_split_data(str(tmp_path))) == GOLDEN_C[seed]
    renamed = read_and_split_data(str(tmp_path), ignored=["zeta"], new_cnames={"Alpha": "alpha"}, rng=random.Random(0))
    assert {d.classname for part in renamed for d in part} == {"alpha"}


def test_builders_reject_too_small_classes() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        split_trainval(_items([0, 0, 1, 1, 1]), rng=random.Random(0))


# ------------------------------------------------------------------------------------------------------- split files
def test_write_split_uses_upstream_text_format_and_round_trips(tmp_path) -> None:
    prefix = tmp_path / "images"
    (prefix / "a").mkdir(parents=True)
    for name in ("x.jpg", "y.jpg", "z.jpg"):
        (prefix / "a" / name).write_bytes(b"")
    mk = lambda n, y, c: Datum(str(prefix / "a" / n), label=y, classname=c)  # noqa: E731
    train, val, test = [mk("x.jpg", 0, "caf\u00e9")], [mk("y.jpg", 1, "b")], [mk("z.jpg", 0, "caf\u00e9")]
    path = tmp_path / "out" / "split.json"
    write_split(train, val, test, str(path), str(prefix))
    item = '        [\n            "{}",\n            {},\n            "{}"\n        ]\n'
    expected = (
        '{\n    "train": [\n' + item.format("a/x.jpg", 0, "caf\\u00e9") + "    ],\n"
        '    "val": [\n' + item.format("a/y.jpg", 1, "b") + "    ],\n"
        '    "test": [\n' + item.format("a/z.jpg", 0, "caf\\u00e9") + "    ]\n}"
    )
    assert path.read_text(encoding="utf-8") == expected
    assert read_split(str(path), str(prefix)) == (train, val, test)
    assert OxfordPets.read_split(str(path), str(prefix))[1][0].label == 1
    assert dumps_split([("p", 1, "c")], [], []).endswith("]\n}")


def test_read_split_reports_all_missing_images_in_one_error(tmp_path) -> None:
    items = [[f"img_{i}.jpg", 0, "a"] for i in range(8)]
    (tmp_path / "img_0.jpg").write_bytes(b"")
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": items, "val": [], "test": [["gone.jpg", 0, "a"]]}))
    with pytest.raises(MissingImagesError) as err:
        read_split(str(path), str(tmp_path))
    msg = str(err.value)
    assert "8 of 9 image(s)" in msg and str(path) in msg and "img_1.jpg" in msg and "and 3 more" in msg


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('{"train": [], "val": []', "not valid JSON"),
        ('["train"]', "expected a JSON object"),
        ('{"train": [], "val": []}', "missing key(s) ['test']"),
        ('{"train": [["a.jpg", "0", "a"]], "val": [], "test": []}', "item 0 of 'train'"),
    ],
)
def test_malformed_split_file_names_file_and_problem(tmp_path, text: str, fragment: str) -> None:
    path = tmp_path / "split_zhou_X.json"
    path.write_text(text)
    with pytest.raises(SplitFileError) as err:
        read_split(str(path), str(tmp_path))
    assert fragment in str(err.value) and str(path) in str(err.value)


# -------------------------------------------------------------------------------------------------- base/new split
def test_subsample_classes_uses_first_list_ceil_half_and_relabels() -> None:
    train = _items([4, 0, 2, 4, 8, 2, 6])  # 5 distinct labels -> base {0, 2, 4}, new {6, 8}
    test = _items([8, 6, 4, 2, 0, 9])  # label 9 is absent from train: never selected
    base_train, base_test = subsample_classes(train, test, subsample="base")
    assert [d.label for d in base_train] == [2, 0, 1, 2, 1]
    assert [d.classname for d in base_train] == ["c4", "c0", "c2", "c4", "c2"]
    assert [(d.label, d.classname) for d in base_test] == [(2, "c4"), (1, "c2"), (0, "c0")]
    new_train, new_test = subsample_classes(train, test, subsample="new")
    assert [(d.label, d.classname) for d in new_train] == [(1, "c8"), (0, "c6")]
    assert [(d.label, d.classname) for d in new_test] == [(1, "c8"), (0, "c6")]
    same = subsample_classes(train, test, subsample="all")
    assert same[0] is train and same[1] is test
    assert OxfordPets.subsample_classes(train, subsample="base")[0] == base_train
    with pytest.raises(ValueError, match="'novel'"):
        subsample_classes(train, subsample="novel")


def test_finalize_dataset_val_source_and_subsample(tmp_path) -> None:
    train, val, test = _items([0, 1, 2, 0]), _items([2, 1, 0]), _items([1, 2, 0, 2])
    cfg = make_dataset_cfg(tmp_path, "X", tmp_path / "c", subsample="new")
    train_x, val_out, test_out = finalize_dataset(cfg, train, val, test)
    assert [d.label for d in train_x] == [0] and val_out is test_out and [d.classname for d in test_out] == ["c2"] * 2
    cfg.DATASET.VAL_SOURCE = "val"
    assert [d.classname for d in finalize_dataset(cfg, train, val, test)[1]] == ["c2"]
    with pytest.raises(ValueError, match="no validation split"):
        finalize_dataset(cfg, train, None, test)
    cfg.DATASET.VAL_SOURCE = "train"
    with pytest.raises(ValueError, match=r"DATASET.VAL_SOURCE must be one of \['test', 'val'\], got 'train'"):
        finalize_dataset(cfg, train, val, test)
    cfg.DATASET.VAL_SOURCE, cfg.DATASET.SUBSAMPLE_CLASSES = "test", "half"
    with pytest.raises(ValueError, match="DATASET.SUBSAMPLE_CLASSES"):
        finalize_dataset(cfg, train, val, test)


# ------------------------------------------------------------------------------------------------------------ cache
def test_cache_dir_resolution(tmp_path, monkeypatch) -> None:
    cfg = make_dataset_cfg(tmp_path, "X", "")
    monkeypatch.setenv("PROMPTKD_CACHE_DIR", str(tmp_path / "env"))
    assert cache_dir(cfg) == str(tmp_path / "env")
    monkeypatch.delenv("PROMPTKD_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir(cfg) == str(tmp_path / "home" / ".cache" / "promptkd")
    cfg.DATASET.CACHE_DIR = str(tmp_path / "explicit")
    assert cache_dir(cfg) == str(tmp_path / "explicit")


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('EVIL_MARKER', '/nonexistent/x')}",))


def test_upstream_pickle_reader_admits_only_datum(tmp_path, monkeypatch) -> None:
    good = tmp_path / "good.pkl"
    data = {"train": [Datum("/other/machine/oxford_pets/images/a_1.jpg", label=3, classname="a", check=False)]}
    good.write_bytes(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
    assert load_upstream_pickle(str(good)) == {"train": [("/other/machine/oxford_pets/images/a_1.jpg", 3, "a")]}

    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"train": [_Evil()]}))
    with pytest.raises(UnsafePickleError, match="posix.system|os.system|nt.system"):
        load_upstream_pickle(str(evil))
    assert not marker.exists()


def test_rebase_path_keeps_part_after_dataset_folder(tmp_path) -> None:
    assert rebase_path("/a/b/oxford_pets/images/x.jpg", "oxford_pets", "/data/oxford_pets") == os.path.join(
        "/data/oxford_pets", "images", "x.jpg"
    )
    assert rebase_path("/elsewhere/x.jpg", "oxford_pets", "/data/oxford_pets") == "/elsewhere/x.jpg"
