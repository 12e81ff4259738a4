"""``Folder``: your own images, no reader to write (``configs/datasets/folder.yaml``).

Layout under ``DATASET.ROOT`` (every part optional except some images)::

    classnames.txt             one class name per line, in label order
    unlabeled/**/<image>       any nesting, labels never read: the distillation data
    train/<class>/**/<image>   labeled images (few-shot sampled for the supervised trainers)
    val/<class>/**/<image>     model selection (DATASET.VAL_SOURCE val)
    test/<class>/**/<image>    evaluation

Without ``classnames.txt`` the class names are the sorted sub-folder names of the first of ``train/``, ``val/``,
``test/`` that exists, ``_`` read as a space. A class folder matches a class name with ``_`` and space
equivalent. Images are the extensions in :data:`IMAGE_EXTENSIONS` in any case; other files are skipped and
counted in one log line. Listings are sorted and nothing is written into ``DATASET.ROOT`` (no split cache: the
folders are the split).

What the lists hold: ``train_x`` = ``train/`` (``NUM_SHOTS`` per class when >= 1, the reader's private RNG),
``train_u`` = ``unlabeled/`` plus every ``train/`` image with label -1 (what PromptKD distils on), ``test`` =
``test/`` (None without it), ``val`` = ``val/`` under ``VAL_SOURCE val``, else the test list (upstream's rule).
The class list comes from the class names, not from the training images, so ``train_x`` may be empty.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum, base_new_labels, sample_few_shot
from dassl.engine.run_classnames import read_classnames_file
from dassl.errors import ConfigError, InputFileError

from .common import SUBSAMPLE_CHOICES, VAL_SOURCE_CHOICES, dataset_root, make_rng, reader_seed

__all__ = ["IMAGE_EXTENSIONS", "Folder", "is_image_file", "list_images", "read_folder_classnames"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
CLASSNAMES_FILE = "classnames.txt"
LABELED_SPLITS = ("train", "val", "test")
UNLABELED = "unlabeled"
UNLABELED_LABEL = -1
LAYOUT = (
    "put images in unlabeled/ (any nesting) and/or train/<class>/, val/<class>/, test/<class>/, with an optional "
    "classnames.txt (one class name per line)"
)


def is_image_file(name: str) -> bool:
    """Whether ``name`` has one of :data:`IMAGE_EXTENSIONS` (any case) and is not a hidden file."""
    return not os.path.basename(name).startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(folder: str) -> tuple[list[str], list[str]]:
    """``(images, skipped files)`` under ``folder``, recursively, both sorted; hidden folders are not entered."""
    images: list[str] = []
    skipped: list[str] = []
    for current, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            (images if is_image_file(name) else skipped).append(os.path.join(current, name))
    return sorted(images), sorted(skipped)


def class_key(name: str) -> str:
    """The matching key of a class name or folder name: ``_`` and space are the same, runs of them one."""
    return " ".join(name.replace("_", " ").split())


def read_folder_classnames(path: str) -> list[str]:
    """Class names of ``classnames.txt``; empty names and names equal up to ``_`` versus space are errors."""
    return read_classnames_file(path, key=class_key)


@DATASET_REGISTRY.register()
class Folder(DatasetBase):
    """A folder of your own images (see the module docstring for the layout)."""

    layout = LAYOUT

    def __init__(self, cfg: Any) -> None:
        self.dataset_dir = root = dataset_root(cfg)
        if not os.path.isdir(root):
            raise InputFileError("dataset folder not found", f"DATASET.ROOT={root}", f"create it and {LAYOUT}")
        skipped: list[str] = []
        classnames = self._classnames(root)
        labeled = {
            split: self._read_labeled(os.path.join(root, split), classnames, skipped)
            for split in LABELED_SPLITS
            if os.path.isdir(os.path.join(root, split))
        }
        unlabeled_dir = os.path.join(root, UNLABELED)
        unlabeled: list[str] = []
        if os.path.isdir(unlabeled_dir):
            unlabeled, stray = list_images(unlabeled_dir)
            skipped += stray
        if skipped:
            shown = ", ".join(os.path.relpath(p, root) for p in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
            logger.info("Folder: skipped %d file(s) that are not images under %s (%s)", len(skipped), root, shown)
        train, val, test = (labeled.get(split, []) for split in LABELED_SPLITS)
        if not (unlabeled or train or val or test):
            raise InputFileError(
                f"no images found (extensions {', '.join(IMAGE_EXTENSIONS)}, any case)",
                f"DATASET.ROOT={root}",
                LAYOUT,
            )
        train_u = [Datum(p, label=UNLABELED_LABEL, check=False) for p in unlabeled] + [
            Datum(d.impath, label=UNLABELED_LABEL, check=False) for d in train
        ]
        rng = make_rng(reader_seed(cfg))
        train = sample_few_shot(train, int(cfg.DATASET.NUM_SHOTS), rng=rng)
        if str(cfg.DATASET.get("VAL_SOURCE", "test")) not in VAL_SOURCE_CHOICES:
            raise ConfigError(f"DATASET.VAL_SOURCE must be one of {list(VAL_SOURCE_CHOICES)}")
        if cfg.DATASET.get("VAL_SOURCE", "test") == "test":
            val = test
        classnames, (train, val, test) = self._subsample(cfg, classnames, train, val, test)
        self.labeled_counts = {split: len(labeled.get(split, [])) for split in LABELED_SPLITS}
        self.unlabeled_count = len(unlabeled)
        super().__init__(train_x=train, train_u=train_u or None, val=val or None, test=test or None,
                         classnames=classnames)  # fmt: skip
        logger.info(
            "Folder %s: %d classes; %d unlabeled, %d train (%d used), %d val, %d test images",
            root, len(classnames), len(unlabeled), self.labeled_counts["train"], len(train),
            self.labeled_counts["val"], self.labeled_counts["test"],
        )  # fmt: skip

    @property
    def missing_labeled_train(self) -> str:
        """How to give a supervised trainer labeled images (the engine's error names it)."""
        return f"put labeled images in {os.path.join(self.dataset_dir, 'train')}/<class>/"

    @staticmethod
    def _classnames(root: str) -> list[str]:
        path = os.path.join(root, CLASSNAMES_FILE)
        if os.path.isfile(path):
            return read_folder_classnames(path)
        for split in LABELED_SPLITS:
            folder = os.path.join(root, split)
            if os.path.isdir(folder):
                names = [n for n in sorted(os.listdir(folder)) if not n.startswith(".")]
                names = [class_key(n) for n in names if os.path.isdir(os.path.join(folder, n))]
                if not names:
                    raise InputFileError("no class folders", folder, f"add one folder per class, or {CLASSNAMES_FILE}")
                duplicates = sorted({n for n in names if names.count(n) > 1})
                if duplicates:
                    raise InputFileError(
                        f"class folders {duplicates} differ only in '_' versus space", folder, "rename one of them"
                    )
                return names
        raise InputFileError(
            "no class names: neither classnames.txt nor a train/, val/ or test/ folder of classes",
            f"DATASET.ROOT={root}",
            f"write {os.path.join(root, CLASSNAMES_FILE)} with one class name per line",
        )

    @staticmethod
    def _read_labeled(folder: str, classnames: list[str], skipped: list[str]) -> list[Datum]:
        """The images of ``folder/<class>/`` in label order; loose files go to ``skipped``."""
        label_of = {class_key(name): label for label, name in enumerate(classnames)}
        by_label: dict[int, list[str]] = {}
        for entry in sorted(os.listdir(folder)):
            path = os.path.join(folder, entry)
            if not os.path.isdir(path):
                skipped.append(path)
                continue
            if entry.startswith("."):
                continue
            label = label_of.get(class_key(entry))
            if label is None:
                raise InputFileError(
                    f"class folder {entry!r} is not a class name (known: {classnames[:10]}"
                    f"{' ...' if len(classnames) > 10 else ''})",
                    path,
                    f"rename the folder, or add the class to {CLASSNAMES_FILE}",
                )
            images, stray = list_images(path)
            skipped += stray
            by_label.setdefault(label, []).extend(images)
        return [
            Datum(p, label=label, classname=classnames[label], check=False)
            for label in sorted(by_label)
            for p in by_label[label]
        ]

    @staticmethod
    def _subsample(cfg: Any, classnames: list[str], *lists: list[Datum]) -> tuple[list[str], tuple[list[Datum], ...]]:
        """``DATASET.SUBSAMPLE_CLASSES`` over the class list (base = the first ceil(C/2) classes), relabelled."""
        subsample = str(cfg.DATASET.get("SUBSAMPLE_CLASSES", "all"))
        if subsample not in SUBSAMPLE_CHOICES:
            raise ConfigError(f"DATASET.SUBSAMPLE_CLASSES must be one of {list(SUBSAMPLE_CHOICES)}, got {subsample!r}")
        if subsample == "all":
            return classnames, lists
        base, new = base_new_labels(range(len(classnames)))
        relabel = {y: i for i, y in enumerate(base if subsample == "base" else new)}
        names = [classnames[y] for y in relabel]
        return names, tuple(
            [Datum(d.impath, label=relabel[d.label], classname=d.classname, check=False) for d in items
             if d.label in relabel]
            for items in lists
        )  # fmt: skip
