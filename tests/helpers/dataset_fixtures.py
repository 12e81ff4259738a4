"""Builders that write each benchmark's real raw layout with tiny decodable images.

Every builder writes under ``root`` exactly the files the upstream reader would find after following
DATASETS.md, and returns a `DatasetFixture` describing what it wrote. Images are 32 px JPEGs whose colour
depends on the class (plus a small per-image brightness change), so tiny models can learn them.

Builders with ``with_split_file=True`` also write a hand-made ``split_zhou_<Name>.json`` in upstream's format.
That split is deterministic (no shuffling: per class, the first items go to train, then val, then test), so it
differs from what a reader would generate; a reader returning it proves the file was read. Builders with
``with_annotations=False`` leave out the raw annotation files, proving the split file alone suffices.
"""

from __future__ import annotations

import colorsys
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "DatasetFixture",
    "IMAGENET_CLASSES",
    "EUROSAT_RENAMES",
    "write_image",
    "write_classnames",
    "make_imagenet",
    "make_caltech101",
    "make_oxford_pets",
    "make_stanford_cars",
    "make_oxford_flowers",
    "make_food101",
    "make_fgvc_aircraft",
    "make_sun397",
    "make_dtd",
    "make_eurosat",
    "make_ucf101",
    "make_imagenetv2",
    "make_imagenet_sketch",
    "make_imagenet_a",
    "make_imagenet_r",
    "make_dataset_cfg",
]

# (wnid, CLIP class name): real ImageNet entries first (incl. multi-word names), then synthetic ones.
IMAGENET_CLASSES: list[tuple[str, str]] = [
    ("n01440764", "tench"),
    ("n01443537", "goldfish"),
    ("n01484850", "great white shark"),
    ("n01491361", "tiger shark"),
    ("n01494475", "hammerhead shark"),
    ("n01496331", "electric ray"),
    ("n01498041", "stingray"),
    ("n01514668", "rooster"),
]

EUROSAT_RENAMES: dict[str, str] = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@dataclass
class DatasetFixture:
    """What a builder wrote: the dataset folder, class names in label order and the split it wrote (if any).

    ``split`` maps "train"/"val"/"test" to lists of ``(path relative to the dataset folder, label, classname)``
    and is filled only when a split file was written. ``raw`` holds the official lists an annotation-based
    reader parses (e.g. "trainval"/"test"), in file order, in the same item format.
    """

    root: Path
    dataset_dir: Path
    classnames: list[str]
    split: dict[str, list[tuple[str, int, str]]] = field(default_factory=dict)
    raw: dict[str, list[tuple[str, int, str]]] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classnames)


def _class_colour(label: int, num_classes: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((label / max(num_classes, 1)) % 1.0, 0.9, 0.9)
    return int(r * 255), int(g * 255), int(b * 255)


def write_image(path: Path, label: int = 0, num_classes: int = 1, size: int = 32, index: int = 0) -> None:
    """Write a decodable JPEG whose colour encodes ``label`` (brightness varies a little with ``index``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    base = np.array(_class_colour(label, num_classes), dtype=np.float32)
    scale = 0.85 + 0.15 * ((index * 7919) % 11) / 10.0
    pixels = np.clip(base * scale, 0, 255).astype(np.uint8)
    Image.fromarray(np.broadcast_to(pixels, (size, size, 3)).copy()).save(path, format="JPEG", quality=95)


def write_classnames(path: Path, classes: list[tuple[str, str]]) -> None:
    """Write an ImageNet-style ``classnames.txt`` (``<wnid> <name with spaces>`` per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{wnid} {name}\n" for wnid, name in classes), encoding="utf-8")


def _imagenet_classes(n: int) -> list[tuple[str, str]]:
    extra = [(f"n{9000000 + i:08d}", f"synthetic class {i}") for i in range(max(0, n - len(IMAGENET_CLASSES)))]
    return (IMAGENET_CLASSES + extra)[:n]


def _split_counts(n: int) -> tuple[int, int, int]:
    """50/20/30 counts for a class of n items (the proportions upstream uses to split a folder-per-class tree)."""
    n_train, n_val = round(n * 0.5), round(n * 0.2)
    return n_train, n_val, n - n_train - n_val


def _write_split_file(path: Path, split: dict[str, list[tuple[str, int, str]]]) -> None:
    """Upstream's split-file format: keys train/val/test, 4-space indent, no trailing newline."""
    data = {key: [list(item) for item in split[key]] for key in ("train", "val", "test")}
    path.write_text(json.dumps(data, indent=4, separators=(",", ": ")), encoding="utf-8")


def _per_class_split(items_by_class: list[list[tuple[str, int, str]]]) -> dict[str, list[tuple[str, int, str]]]:
    """Deterministic 50/20/30 split per class, items unchanged."""
    split: dict[str, list[tuple[str, int, str]]] = {"train": [], "val": [], "test": []}
    for items in items_by_class:
        n_train, n_val, _ = _split_counts(len(items))
        split["train"] += items[:n_train]
        split["val"] += items[n_train : n_train + n_val]
        split["test"] += items[n_train + n_val :]
    return split


def _strip(split: dict[str, list[tuple[str, int, str]]], prefix: str) -> dict[str, list[tuple[str, int, str]]]:
    """The split with ``prefix`` cut from every path (split files hold paths relative to the image folder)."""
    return {k: [(p[len(prefix) :], lab, name) for p, lab, name in v] for k, v in split.items()}


def _write_split(
    fixture: DatasetFixture, split: dict[str, list[tuple[str, int, str]]], image_folder: str, file_name: str
) -> None:
    """Write ``split`` as a split file (paths relative to ``image_folder``); record it on ``fixture``."""
    _write_split_file(fixture.dataset_dir / file_name, _strip(split, image_folder + "/") if image_folder else split)
    fixture.split = split


# --------------------------------------------------------------------------------------------------------------
# ImageNet and its variants
# --------------------------------------------------------------------------------------------------------------
def make_imagenet(
    root: str | os.PathLike, num_classes: int = 3, train_per_class: int = 4, val_per_class: int = 2, size: int = 32
) -> DatasetFixture:
    """``imagenet/classnames.txt`` + ``images/train/<wnid>/`` and ``images/val/<wnid>/``.

    classnames.txt lists two more classes than have folders (as the real file lists all 1,000).
    """
    root = Path(root)
    ds = root / "imagenet"
    classes = _imagenet_classes(num_classes + 2)
    write_classnames(ds / "classnames.txt", classes)
    used = classes[:num_classes]
    for label, (wnid, _) in enumerate(used):
        for i in range(train_per_class):
            write_image(ds / "images" / "train" / wnid / f"{wnid}_{i:04d}.JPEG", label, num_classes, size, i)
        for i in range(val_per_class):
            write_image(ds / "images" / "val" / wnid / f"ILSVRC2012_val_{label:03d}{i:02d}.JPEG", label, num_classes)
    (ds / "images" / "train" / used[0][0] / ".DS_Store").write_bytes(b"")
    return DatasetFixture(root, ds, [name for _, name in used])


def make_imagenetv2(
    root: str | os.PathLike, labels: tuple[int, ...] = (0, 5, 999), per_class: int = 2
) -> DatasetFixture:
    """``imagenetv2/classnames.txt`` (1,000 lines) + ``imagenetv2-matched-frequency-format-val/0..999``.

    Every numbered folder exists; only those in ``labels`` hold images. ``classnames`` lists the names of
    ``labels`` in ascending order (what the reader's lab2cname holds).
    """
    root = Path(root)
    ds = root / "imagenetv2"
    classes = _imagenet_classes(1000)
    write_classnames(ds / "classnames.txt", classes)
    image_dir = ds / "imagenetv2-matched-frequency-format-val"
    for label in range(1000):
        (image_dir / str(label)).mkdir(parents=True, exist_ok=True)
    for label in labels:
        for i in range(per_class):
            write_image(image_dir / str(label) / f"{i:040x}.jpeg", label, 1000, 32, i)
    return DatasetFixture(root, ds, [classes[label][1] for label in sorted(labels)])


def _make_imagenet_subset(
    root: Path, folder: str, image_folder: str, class_ids: tuple[int, ...], per_class: int, readme: bool
) -> DatasetFixture:
    ds = root / folder
    classes = _imagenet_classes(max(class_ids) + 3)
    write_classnames(ds / "classnames.txt", classes)
    used = sorted(classes[i] for i in class_ids)  # labels follow sorted wnid order
    for label, (wnid, _) in enumerate(used):
        for i in range(per_class):
            write_image(ds / image_folder / wnid / f"{wnid}_{i}.jpg", label, len(used), 32, i)
    if readme:
        (ds / image_folder / "README.txt").write_text("release notes\n", encoding="utf-8")
    return DatasetFixture(root, ds, [name for _, name in used])


def make_imagenet_sketch(
    root: str | os.PathLike, class_ids: tuple[int, ...] = (1, 2, 4), per_class: int = 2
) -> DatasetFixture:
    """``imagenet-sketch/classnames.txt`` + ``images/<wnid>/`` for a subset of wnids."""
    return _make_imagenet_subset(Path(root), "imagenet-sketch", "images", class_ids, per_class, readme=False)


def make_imagenet_a(
    root: str | os.PathLike, class_ids: tuple[int, ...] = (2, 4, 6), per_class: int = 2
) -> DatasetFixture:
    """``imagenet-adversarial/classnames.txt`` + ``imagenet-a/<wnid>/`` (not the first wnids) + README.txt."""
    return _make_imagenet_subset(Path(root), "imagenet-adversarial", "imagenet-a", class_ids, per_class, readme=True)


def make_imagenet_r(
    root: str | os.PathLike, class_ids: tuple[int, ...] = (1, 3, 7), per_class: int = 2
) -> DatasetFixture:
    """``imagenet-rendition/classnames.txt`` + ``imagenet-r/<wnid>/`` + README.txt."""
    return _make_imagenet_subset(Path(root), "imagenet-rendition", "imagenet-r", class_ids, per_class, readme=True)


# --------------------------------------------------------------------------------------------------------------
# Folder-per-class datasets (Caltech101, Food101, DTD, EuroSAT)
# --------------------------------------------------------------------------------------------------------------
CALTECH_CATEGORIES = ["Faces", "Leopards", "Motorbikes", "airplanes", "accordion", "car_side", "anchor", "yin_yang"]
CALTECH_RENAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


def _make_folder_tree(
    ds: Path,
    image_root: str,
    folders: list[str],
    renames: dict[str, str],
    per_class: int,
    size: int,
    file_name: str,
) -> list[list[tuple[str, int, str]]]:
    """Write ``ds/image_root/<folder>/<files>``; return items per class (label = sorted folder index)."""
    folders_sorted = sorted(folders)
    items_by_class = []
    for label, folder in enumerate(folders_sorted):
        items = []
        for i in range(per_class):
            name = file_name.format(folder=folder, i=i + 1)
            write_image(ds / image_root / folder / name, label, len(folders), size, i)
            items.append((f"{image_root}/{folder}/{name}", label, renames.get(folder, folder)))
        items_by_class.append(items)
    (ds / image_root / folders_sorted[0] / ".DS_Store").write_bytes(b"")
    return items_by_class


def make_caltech101(
    root: str | os.PathLike,
    num_classes: int = 5,
    per_class: int = 6,
    size: int = 32,
    with_split_file: bool = True,
    seed: int = 0,
) -> DatasetFixture:
    """``caltech-101/101_ObjectCategories/<category>/image_NNNN.jpg`` (+ ``split_zhou_Caltech101.json``).

    Categories: the capitalised Faces/Leopards/Motorbikes (renamed), airplanes (renamed), lower-case ones
    (one with ``_``), then ``category_NN``; plus the ignored ``BACKGROUND_Google`` and ``Faces_easy`` folders.
    ``seed`` varies the per-image brightness so two fixtures with different seeds differ in pixels.
    """
    root = Path(root)
    ds = root / "caltech-101"
    names = (CALTECH_CATEGORIES + [f"category_{i:02d}" for i in range(num_classes)])[:num_classes]
    items = _make_folder_tree(ds, "101_ObjectCategories", names, CALTECH_RENAMES, per_class, size, "image_{i:04d}.jpg")
    if seed:
        for label, class_items in enumerate(items):
            for i, (rel, _, _) in enumerate(class_items):
                write_image(ds / rel, label, num_classes, size, i + 13 * seed)
    for ignored in ("BACKGROUND_Google", "Faces_easy"):
        for i in range(2):
            write_image(ds / "101_ObjectCategories" / ignored / f"image_{i + 1:04d}.jpg", 0, 1, size, i)
    fixture = DatasetFixture(root, ds, [class_items[0][2] for class_items in items])
    if with_split_file:
        _write_split(fixture, _per_class_split(items), "101_ObjectCategories", "split_zhou_Caltech101.json")
    return fixture


def make_food101(
    root: str | os.PathLike, num_classes: int = 3, per_class: int = 5, with_split_file: bool = False
) -> DatasetFixture:
    """``food-101/images/<class>/<id>.jpg`` + ``meta/`` (unused) (+ ``split_zhou_Food101.json``)."""
    root = Path(root)
    ds = root / "food-101"
    names = ["apple_pie", "baby_back_ribs", "beef_carpaccio", "sushi", "waffles"][:num_classes]
    items = _make_folder_tree(ds, "images", names, {}, per_class, 32, "{i}00{i}.jpg")
    (ds / "meta").mkdir(exist_ok=True)
    (ds / "meta" / "train.txt").write_text("apple_pie/1001\n", encoding="utf-8")
    fixture = DatasetFixture(root, ds, sorted(names))
    if with_split_file:
        _write_split(fixture, _per_class_split(items), "images", "split_zhou_Food101.json")
    return fixture


def make_dtd(
    root: str | os.PathLike, num_classes: int = 3, per_class: int = 5, with_split_file: bool = False
) -> DatasetFixture:
    """``dtd/images/<category>/<category>_NNNN.jpg`` + ``imdb/``, ``labels/`` (unused) (+ split file)."""
    root = Path(root)
    ds = root / "dtd"
    names = ["banded", "blotchy", "braided", "bubbly", "zigzagged"][:num_classes]
    items = _make_folder_tree(ds, "images", names, {}, per_class, 32, "{folder}_{i:04d}.jpg")
    for extra in ("imdb", "labels"):
        (ds / extra).mkdir(exist_ok=True)
    (ds / "labels" / "train1.txt").write_text("banded/banded_0001.jpg\n", encoding="utf-8")
    fixture = DatasetFixture(root, ds, sorted(names))
    if with_split_file:
        _write_split(fixture, _per_class_split(items), "images", "split_zhou_DescribableTextures.json")
    return fixture


def make_eurosat(root: str | os.PathLike, per_class: int = 4, with_split_file: bool = False) -> DatasetFixture:
    """``eurosat/2750/<ClassFolder>/<ClassFolder>_<n>.jpg`` for all 10 real folders (+ split file)."""
    root = Path(root)
    ds = root / "eurosat"
    items = _make_folder_tree(ds, "2750", list(EUROSAT_RENAMES), EUROSAT_RENAMES, per_class, 32, "{folder}_{i}.jpg")
    fixture = DatasetFixture(root, ds, [EUROSAT_RENAMES[f] for f in sorted(EUROSAT_RENAMES)])
    if with_split_file:
        _write_split(fixture, _per_class_split(items), "2750", "split_zhou_EuroSAT.json")
    return fixture


# --------------------------------------------------------------------------------------------------------------
# Annotation-file datasets
# --------------------------------------------------------------------------------------------------------------
def _holdout_split(
    trainval: list[tuple[str, int, str]], test: list[tuple[str, int, str]]
) -> dict[str, list[tuple[str, int, str]]]:
    """Hand-made split: every 4th trainval item goes to val, the rest to train; test unchanged."""
    return {
        "train": [it for i, it in enumerate(trainval) if i % 4 != 3],
        "val": [it for i, it in enumerate(trainval) if i % 4 == 3],
        "test": list(test),
    }


def make_oxford_pets(
    root: str | os.PathLike,
    trainval_per_class: int = 5,
    test_per_class: int = 2,
    with_split_file: bool = False,
    with_annotations: bool = True,
) -> DatasetFixture:
    """``oxford_pets/images/<Breed>_<n>.jpg`` + ``annotations/trainval.txt``, ``test.txt``.

    Three breeds (class ids 1..3): a capitalised one, an underscored lower-case one and another capitalised
    one. trainval.txt interleaves the classes starting with class id 2, so first-appearance order != label order.
    """
    root = Path(root)
    ds = root / "oxford_pets"
    breeds = ["Abyssinian", "american_pit_bull_terrier", "Bengal"]
    classnames = [b.lower() for b in breeds]
    order = [1, 0, 2]
    trainval, test, tv_lines, test_lines = [], [], [], []
    for i in range(trainval_per_class + test_per_class):
        for label in order:
            stem = f"{breeds[label]}_{i + 1}"
            write_image(ds / "images" / f"{stem}.jpg", label, 3, 32, i)
            line = f"{stem} {label + 1} {1 + label % 2} {i + 1}"
            item = (f"images/{stem}.jpg", label, classnames[label])
            if i < trainval_per_class:
                trainval.append(item)
                tv_lines.append(line)
            else:
                test.append(item)
                test_lines.append(line)
    if with_annotations:
        (ds / "annotations").mkdir(parents=True, exist_ok=True)
        (ds / "annotations" / "trainval.txt").write_text("\n".join(tv_lines) + "\n", encoding="utf-8")
        (ds / "annotations" / "test.txt").write_text("\n".join(test_lines) + "\n", encoding="utf-8")
    fixture = DatasetFixture(root, ds, classnames, raw={"trainval": trainval, "test": test})
    if with_split_file:
        _write_split(fixture, _holdout_split(trainval, test), "images", "split_zhou_OxfordPets.json")
    return fixture


def make_stanford_cars(
    root: str | os.PathLike,
    train_per_class: int = 4,
    test_per_class: int = 2,
    with_split_file: bool = False,
    with_annotations: bool = True,
) -> DatasetFixture:
    """``stanford_cars/cars_train/``, ``cars_test/``, ``devkit/*.mat``, top-level ``cars_test_annos_withlabels.mat``.

    Three classes whose names end in a model year; the reader moves the year to the front.
    """
    from scipy.io import savemat

    root = Path(root)
    ds = root / "stanford_cars"
    raw_names = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "smart fortwo Convertible 2012"]
    classnames = [" ".join([n.split(" ")[-1]] + n.split(" ")[:-1]) for n in raw_names]
    order = [2, 0, 1]
    parts = {}
    for split_name, per_class, folder in (
        ("train", train_per_class, "cars_train"),
        ("test", test_per_class, "cars_test"),
    ):
        fnames, classes, items = [], [], []
        counter = 0
        for i in range(per_class):
            for label in order:
                counter += 1
                fname = f"{counter:05d}.jpg"
                write_image(ds / folder / fname, label, 3, 32, i)
                fnames.append(fname)
                classes.append(label + 1)
                items.append((f"{folder}/{fname}", label, classnames[label]))
        parts[split_name] = (fnames, classes, items)
    if with_annotations:
        (ds / "devkit").mkdir(parents=True, exist_ok=True)

        def annotations(fnames: list[str], classes: list[int]) -> np.ndarray:
            dtype = [("bbox_x1", "O"), ("bbox_y1", "O"), ("class", "O"), ("fname", "O")]
            arr = np.zeros((1, len(fnames)), dtype=dtype)
            for j, (fname, cls) in enumerate(zip(fnames, classes, strict=True)):
                arr[0, j] = (np.array([[1]]), np.array([[2]]), np.array([[cls]], dtype=np.uint8), np.array([fname]))
            return arr

        savemat(ds / "devkit" / "cars_train_annos.mat", {"annotations": annotations(*parts["train"][:2])})
        savemat(ds / "cars_test_annos_withlabels.mat", {"annotations": annotations(*parts["test"][:2])})
        names = np.empty((1, len(raw_names)), dtype=object)
        for j, name in enumerate(raw_names):
            names[0, j] = np.array([name])
        savemat(ds / "devkit" / "cars_meta.mat", {"class_names": names})
    fixture = DatasetFixture(root, ds, classnames, raw={"trainval": parts["train"][2], "test": parts["test"][2]})
    if with_split_file:
        _write_split(fixture, _holdout_split(parts["train"][2], parts["test"][2]), "", "split_zhou_StanfordCars.json")
    return fixture


def make_oxford_flowers(
    root: str | os.PathLike,
    labels: tuple[int, ...] | None = None,
    with_split_file: bool = False,
    with_annotations: bool = True,
) -> DatasetFixture:
    """``oxford_flowers/jpg/image_NNNNN.jpg`` + ``imagelabels.mat`` + ``cat_to_name.json``.

    Default labels (1-based) start with 3, so first-appearance group order (3, 1, 2) != label order.
    ``classnames`` is in label order (label = value - 1).
    """
    from scipy.io import savemat

    root = Path(root)
    ds = root / "oxford_flowers"
    if labels is None:
        labels = (3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 1)
    names = {"1": "pink primrose", "2": "hard-leaved pocket orchid", "3": "canterbury bells", "4": "sweet pea"}
    items_by_label: dict[int, list[tuple[str, int, str]]] = {}
    for i, value in enumerate(labels):
        fname = f"image_{i + 1:05d}.jpg"
        write_image(ds / "jpg" / fname, value - 1, 3, 32, i)
        items_by_label.setdefault(value, []).append((f"jpg/{fname}", value - 1, names[str(value)]))
    if with_annotations:
        savemat(ds / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
        (ds / "cat_to_name.json").write_text(json.dumps(names), encoding="utf-8")
    groups = [item for value in items_by_label for item in items_by_label[value]]  # first-appearance order
    fixture = DatasetFixture(root, ds, [names[str(v)] for v in sorted(items_by_label)], raw={"groups": groups})
    if with_split_file:
        by_label = [items_by_label[v] for v in sorted(items_by_label)]
        _write_split(fixture, _per_class_split(by_label), "jpg", "split_zhou_OxfordFlowers.json")
    return fixture


def make_fgvc_aircraft(root: str | os.PathLike, per_split_per_class: int = 3) -> DatasetFixture:
    """``fgvc_aircraft/images/<id>.jpg`` + ``variants.txt`` + ``images_variant_{train,val,test}.txt``.

    Variants include names with a space and a ``/``; the list files name classes out of variants order.
    """
    root = Path(root)
    ds = root / "fgvc_aircraft"
    variants = ["707-320", "Cessna 172", "F/A-18"]
    (ds / "images").mkdir(parents=True, exist_ok=True)
    (ds / "variants.txt").write_text("\n".join(variants) + "\n", encoding="utf-8")
    counter = 1000000
    for split_name in ("train", "val", "test"):
        lines = []
        for i in range(per_split_per_class):
            for label in (2, 0, 1):
                counter += 1
                write_image(ds / "images" / f"{counter:07d}.jpg", label, 3, 32, i)
                lines.append(f"{counter:07d} {variants[label]}")
        (ds / f"images_variant_{split_name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (ds / "images_family_train.txt").write_text("unused\n", encoding="utf-8")
    return DatasetFixture(root, ds, variants)


def make_sun397(
    root: str | os.PathLike,
    train_per_class: int = 5,
    test_per_class: int = 2,
    with_split_file: bool = False,
    with_annotations: bool = True,
) -> DatasetFixture:
    """``sun397/SUN397/<letter>/<category>[/<sub>]/<file>.jpg`` + ``ClassName.txt``, ``Training_01.txt``,
    ``Testing_01.txt``. One 2-level class and two 3-level classes."""
    root = Path(root)
    ds = root / "sun397"
    keys = ["a/abbey", "a/apartment_building/outdoor", "b/bakery/shop"]
    classnames = ["abbey", "outdoor apartment_building", "shop bakery"]
    train, test, train_lines, test_lines = [], [], [], []
    for i in range(train_per_class + test_per_class):
        for label, key in enumerate(keys):
            rel = f"{key}/sun_{label}{i:03d}x.jpg"
            write_image(ds / "SUN397" / rel, label, 3, 32, i)
            item = (f"SUN397/{rel}", label, classnames[label])
            (train if i < train_per_class else test).append(item)
            (train_lines if i < train_per_class else test_lines).append(f"/{rel}")
    if with_annotations:
        (ds / "ClassName.txt").write_text("".join(f"/{k}\n" for k in keys), encoding="utf-8")
        (ds / "Training_01.txt").write_text("\n".join(train_lines) + "\n", encoding="utf-8")
        (ds / "Testing_01.txt").write_text("\n".join(test_lines) + "\n", encoding="utf-8")
    fixture = DatasetFixture(root, ds, classnames, raw={"trainval": train, "test": test})
    if with_split_file:
        _write_split(fixture, _holdout_split(train, test), "SUN397", "split_zhou_SUN397.json")
    return fixture


def make_ucf101(
    root: str | os.PathLike,
    train_per_class: int = 4,
    test_per_class: int = 2,
    with_split_file: bool = False,
    with_annotations: bool = True,
) -> DatasetFixture:
    """``ucf101/UCF-101-midframes/<Renamed>/<v_..>.jpg`` + ``ucfTrainTestlist/`` lists with CRLF endings."""
    root = Path(root)
    ds = root / "ucf101"
    actions = ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    renamed = ["Apply_Eye_Makeup", "Handstand_Pushups", "Yo_Yo"]
    train, test, train_lines, test_lines = [], [], [], []
    for i in range(train_per_class + test_per_class):
        for label in (2, 0, 1):
            video = f"v_{actions[label]}_g{i + 1:02d}_c01"
            rel = f"UCF-101-midframes/{renamed[label]}/{video}.jpg"
            write_image(ds / rel, label, 3, 32, i)
            item = (rel, label, renamed[label])
            if i < train_per_class:
                train.append(item)
                train_lines.append(f"{actions[label]}/{video}.avi {label + 1}")
            else:
                test.append(item)
                test_lines.append(f"{actions[label]}/{video}.avi")
    if with_annotations:
        lists = ds / "ucfTrainTestlist"
        lists.mkdir(parents=True, exist_ok=True)
        crlf = "\r\n"
        (lists / "classInd.txt").write_bytes(
            crlf.join(f"{j + 1} {a}" for j, a in enumerate(actions)).encode() + crlf.encode()
        )
        (lists / "trainlist01.txt").write_bytes((crlf.join(train_lines) + crlf).encode())
        (lists / "testlist01.txt").write_bytes((crlf.join(test_lines) + crlf).encode())
    fixture = DatasetFixture(root, ds, renamed, raw={"trainval": train, "test": test})
    if with_split_file:
        _write_split(fixture, _holdout_split(train, test), "UCF-101-midframes", "split_zhou_UCF101.json")
    return fixture


def make_dataset_cfg(
    root: str | os.PathLike,
    name: str,
    cache_dir: str | os.PathLike,
    num_shots: int = -1,
    seed: int = 1,
    subsample: str = "all",
    val_source: str = "test",
):
    """A full config (engine defaults + registered package defaults) pointing a reader at a fixture root."""
    import datasets  # noqa: F401  (registers the readers and the DATASET.* keys)
    from dassl.config import apply_cfg_defaults, get_cfg_default

    cfg = apply_cfg_defaults(get_cfg_default())
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.CACHE_DIR = str(cache_dir)
    cfg.DATASET.NUM_SHOTS = num_shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.DATASET.VAL_SOURCE = val_source
    cfg.SEED = seed
    return cfg
