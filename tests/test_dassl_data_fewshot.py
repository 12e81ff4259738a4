"""Few-shot sampling, Datum and DatasetBase."""

import io
import logging
import pickle
import random

import pytest

from dassl.data.datasets import DatasetBase, Datum, sample_few_shot
from dassl.data.datasets import base_dataset as base_dataset_module

# Golden vector: items 0..11 with these labels; fewshot(k=2) then fewshot(k=3) on one RNG stream.
GOLDEN_LABELS = [1, 1, 0, 1, 0, 2, 0, 2, 2, 1, 0, 2]
GOLDEN = {
    1: ([1, 3, 2, 4, 5, 7], [9, 1, 3, 4, 2, 10, 5, 7, 8]),
    2: ([0, 9, 2, 4, 7, 8], [3, 1, 0, 2, 6, 10, 11, 8, 7]),
}


def _items(labels, check=False):
    return [Datum(impath=f"img{i}.jpg", label=lab, classname=f"c{lab}", check=check) for i, lab in enumerate(labels)]


def _indices(picked):
    return [int(d.impath[3:-4]) for d in picked]


@pytest.mark.parametrize("seed", sorted(GOLDEN))
def test_golden_vectors_global_random(seed):
    items = _items(GOLDEN_LABELS)
    ds = DatasetBase(train_x=items)
    random.seed(seed)
    first = ds.generate_fewshot_dataset(items, num_shots=2)
    second = ds.generate_fewshot_dataset(items, num_shots=3)
    assert (_indices(first), _indices(second)) == GOLDEN[seed]


@pytest.mark.parametrize("seed", sorted(GOLDEN))
def test_golden_vectors_private_rng(seed):
    items = _items(GOLDEN_LABELS)
    rng = random.Random(seed)
    random.seed(12345)
    global_state = random.getstate()
    first = sample_few_shot(items, 2, rng)
    second = DatasetBase(train_x=items).generate_fewshot_dataset(items, num_shots=3, rng=rng)
    assert (_indices(first), _indices(second)) == GOLDEN[seed]
    assert random.getstate() == global_state  # the private stream leaves the global one alone


def test_fewshot_matches_manual_random_calls_and_multiple_sources():
    items = _items(GOLDEN_LABELS)
    other = _items([5, 5, 5, 6, 6, 6])
    random.seed(7)
    train, val = DatasetBase(train_x=items).generate_fewshot_dataset(items, other, num_shots=2)
    random.seed(7)
    expected = []
    for lab in (1, 0, 2):  # first-appearance order
        expected += random.sample([d for d in items if d.label == lab], 2)
    expected_val = []
    for lab in (5, 6):
        expected_val += random.sample([d for d in other if d.label == lab], 2)
    assert train == expected and val == expected_val


def test_short_class_consumes_no_rng_and_is_logged(caplog):
    items = _items([0, 0, 0, 1, 2, 2, 2])  # label 1 has one item
    rng = random.Random(3)
    with caplog.at_level(logging.WARNING, logger=base_dataset_module.__name__):
        picked = sample_few_shot(items, 2, rng)
    ref = random.Random(3)
    expected = ref.sample(items[0:3], 2) + [items[3]] + ref.sample(items[4:7], 2)
    assert picked == expected
    assert rng.getstate() == ref.getstate()
    assert "1: 1" in caplog.text


def test_repeat_uses_choices():
    items = _items([0, 1, 1, 1])
    picked = sample_few_shot(items, 3, random.Random(0), repeat=True)
    ref = random.Random(0)
    assert picked == ref.choices(items[:1], k=3) + ref.sample(items[1:], 3)


def test_non_positive_shots_returns_input_unchanged(capsys):
    items = _items([0, 1])
    ds = DatasetBase(train_x=items)
    state = random.getstate()
    assert ds.generate_fewshot_dataset(items, num_shots=0) is items
    assert ds.generate_fewshot_dataset(items, items, num_shots=-1) == (items, items)
    assert random.getstate() == state
    assert capsys.readouterr().out == ""
    ds.generate_fewshot_dataset(items, num_shots=1)
    assert capsys.readouterr().out == "Creating a 1-shot dataset\n"


def test_datum_checks_file_unless_disabled(tmp_path):
    img = tmp_path / "a.jpg"
    img.write_bytes(b"x")
    d = Datum(str(img), 3, 0, "cat")
    assert (d.impath, d.label, d.domain, d.classname) == (str(img), 3, 0, "cat")
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        Datum(str(tmp_path / "missing.jpg"), 0)
    assert Datum(str(tmp_path / "missing.jpg"), 0, check=False).label == 0
    with pytest.raises(TypeError, match="impath must be a str"):
        Datum(tmp_path, 0, check=False)


def test_datum_pickle_layout_roundtrip():
    items = _items([0, 1])
    blob = pickle.dumps({"train": items, "val": items[:1]}, protocol=pickle.HIGHEST_PROTOCOL)
    assert b"dassl.data.datasets.base_dataset" in blob
    loaded = pickle.loads(blob)
    assert loaded["train"] == items
    assert vars(loaded["train"][1]) == {"_impath": "img1.jpg", "_label": 1, "_domain": 0, "_classname": "c1"}


class _UpstreamDatum:
    """Stand-in for upstream's class: pickled under upstream's module path with upstream's instance dict."""


def test_upstream_pickle_unpickles_into_our_datum(monkeypatch):
    # Write a pickle exactly as upstream would: class path dassl.data.datasets.base_dataset.Datum, state =
    # instance dict with the four private attributes, for a file that does not exist here.
    obj = _UpstreamDatum()
    obj.__dict__.update({"_impath": "/nowhere/x.jpg", "_label": 4, "_domain": 0, "_classname": "dog"})
    _UpstreamDatum.__module__ = "dassl.data.datasets.base_dataset"
    _UpstreamDatum.__qualname__ = "Datum"
    monkeypatch.setattr(base_dataset_module, "Datum", _UpstreamDatum)
    blob = pickle.dumps({"train": [obj]}, protocol=4)
    monkeypatch.undo()
    loaded = pickle.load(io.BytesIO(blob))["train"][0]
    assert type(loaded) is Datum
    assert (loaded.impath, loaded.label, loaded.domain, loaded.classname) == ("/nowhere/x.jpg", 4, 0, "dog")


def test_dataset_base_classes_and_warnings(caplog):
    items = [Datum("a", 2, classname="two", check=False), Datum("b", 0, classname="zero", check=False)]
    with caplog.at_level(logging.WARNING, logger=base_dataset_module.__name__):
        ds = DatasetBase(train_x=items, test=items)
    assert ds.num_classes == 3  # max + 1, upstream semantics
    assert ds.lab2cname == {0: "zero", 2: "two"}
    assert ds.classnames == ["zero", "two"]
    assert "not contiguous" in caplog.text and "[1]" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=base_dataset_module.__name__):
        ds = DatasetBase(train_x=items + [Datum("c", 0, classname="nil", check=False)])
    assert ds.lab2cname[0] == "zero" and "two class names" in caplog.text
    with pytest.raises(ValueError, match="non-empty train_x"):
        DatasetBase(train_x=[])


def test_split_by_label_and_domain_order():
    items = [Datum(f"{i}", lab, dom, check=False) for i, (lab, dom) in enumerate([(2, 1), (0, 0), (2, 0), (1, 1)])]
    ds = DatasetBase(train_x=items)
    assert list(ds.split_dataset_by_label(items)) == [2, 0, 1]
    assert [d.impath for d in ds.split_dataset_by_label(items)[2]] == ["0", "2"]
    assert list(ds.split_dataset_by_domain(items)) == [1, 0]
    ds.domains = ["a", "b"]
    ds.check_input_domains(["a"], ["b"])
    with pytest.raises(ValueError, match=r"but got \[c\]"):
        ds.check_input_domains(["a"], ["c"])
