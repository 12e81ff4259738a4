"""Your own images end to end: the ``Folder`` dataset, distillation on ``unlabeled/``, ``predict.py`` and export.

Synthetic images in the Folder layout (colour encodes the class) and the tiny CLIPs of the trainer harness.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dassl.data.datasets import build_dataset
from dassl.errors import InputFileError
from tests.helpers.dataset_fixtures import make_dataset_cfg, write_image

CLASSES = ["red fox", "blue jay", "green frog", "grey seal", "gold fish"]


def make_folder(
    root: Path,
    classes: list[str] = CLASSES,
    splits: dict[str, int] | None = None,
    unlabeled: int = 10,
    classnames_file: bool = True,
    size: int = 32,
) -> Path:
    """The Folder layout: ``classnames.txt``, ``unlabeled/`` (nested), ``<split>/<class folder>/`` images (class
    folders use ``_`` for spaces, extensions in mixed case), plus stray files that must be skipped."""
    splits = {"train": 4, "test": 3} if splits is None else splits
    if classnames_file:
        root.mkdir(parents=True, exist_ok=True)
        (root / "classnames.txt").write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")
    for split, per_class in splits.items():
        for label, name in enumerate(classes):
            for i in range(per_class):
                ext = ("jpg", "JPG", "jpeg")[i % 3]
                write_image(root / split / name.replace(" ", "_") / f"{i:03d}.{ext}", label, len(classes), size, i)
        if per_class:
            (root / split / "notes.txt").write_text("not an image")
    for i in range(unlabeled):
        write_image(
            root / "unlabeled" / f"batch{i % 2}" / "deep" / f"u{i:03d}.Jpeg", i % len(classes), len(classes), size, i
        )
    if unlabeled:
        (root / "unlabeled" / "README.md").write_text("stray")
        (root / "unlabeled" / ".DS_Store").write_bytes(b"\0")
    return root


def folder_cfg(root: Path, tmp_path: Path, **kw):
    return make_dataset_cfg(root, "Folder", tmp_path / "cache", **kw)


def tree_snapshot(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*")}


# ---------------------------------------------------------------------------------------------------- dataset
def test_folder_lists_splits_classes_and_skips_stray_files(tmp_path, caplog):
    root = make_folder(tmp_path / "data")
    before = tree_snapshot(root)
    with caplog.at_level(logging.INFO, logger="datasets.folder"):
        dataset = build_dataset(folder_cfg(root, tmp_path, num_shots=2))
    assert dataset.classnames == CLASSES  # classnames.txt order, not sorted folder order
    assert dataset.num_classes == 5
    assert len(dataset.train_x) == 5 * 2  # few-shot sampled
    assert {d.label for d in dataset.train_x} == set(range(5))
    assert len(dataset.test) == 5 * 3 and dataset.val == dataset.test  # VAL_SOURCE test: upstream's rule
    for d in dataset.test:
        assert Path(d.impath).parent.name.replace("_", " ") == CLASSES[d.label] == d.classname
    # train_u: every unlabeled image (any nesting, any case of the extension) + every train/ image, no labels
    assert len(dataset.train_u) == 10 + 5 * 4 and {d.label for d in dataset.train_u} == {-1}
    assert [d.impath for d in dataset.train_u[:10]] == sorted(d.impath for d in dataset.train_u[:10])
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1 and "skipped 4 file(s)" in skipped[0]  # 2 notes.txt, README.md, .DS_Store
    assert tree_snapshot(root) == before  # nothing written into DATASET.ROOT


def test_folder_class_names_from_sorted_folders_and_optional_splits(tmp_path):
    root = make_folder(tmp_path / "data", splits={"val": 2}, unlabeled=3, classnames_file=False)
    dataset = build_dataset(folder_cfg(root, tmp_path, val_source="val"))
    assert dataset.classnames == sorted(c for c in CLASSES)  # sorted folder names, '_' read as a space
    assert dataset.train_x == [] and dataset.test is None and len(dataset.val) == 10
    assert len(dataset.train_u) == 3


def test_folder_base_subsample_relabels_by_class_list(tmp_path):
    root = make_folder(tmp_path / "data")
    dataset = build_dataset(folder_cfg(root, tmp_path, subsample="base"))
    assert dataset.classnames == CLASSES[:3]
    assert {d.label for d in dataset.test} == {0, 1, 2} and len(dataset.test) == 9


def _no_root(root: Path) -> None:
    pass


def _no_images(root: Path) -> None:
    (root / "unlabeled").mkdir(parents=True)
    (root / "unlabeled" / "a.txt").write_text("x")
    (root / "classnames.txt").write_text("cat\n")


def _unknown_folder(root: Path) -> None:
    make_folder(root, splits={"train": 1}, unlabeled=0)
    write_image(root / "train" / "zebra" / "0.png")


def _duplicate(root: Path) -> None:
    make_folder(root, splits={}, unlabeled=2)
    (root / "classnames.txt").write_text("red fox\nblue jay\nred_fox\n")


def _empty(root: Path) -> None:
    make_folder(root, splits={}, unlabeled=2)
    (root / "classnames.txt").write_text("red fox\n\nblue jay\n")


def _no_classes(root: Path) -> None:
    make_folder(root, splits={}, unlabeled=2, classnames_file=False)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (_no_root, "dataset folder not found"),
        (_no_images, "no images found"),
        (_unknown_folder, "class folder 'zebra' is not a class name"),
        (_duplicate, "duplicate class name 'red_fox' (same as line 1)"),
        (_empty, "empty class name"),
        (_no_classes, "no class names"),
    ],
)
def test_folder_errors_are_one_line_user_errors(tmp_path, build, message):
    root = tmp_path / "data"
    build(root)
    with pytest.raises(InputFileError) as info:
        build_dataset(folder_cfg(root, tmp_path))
    assert message in str(info.value) and "\n" not in str(info.value)
