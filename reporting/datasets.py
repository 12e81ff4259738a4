"""Benchmark names as they appear in paths, configs and the paper, mapped to one canonical name.

Run folders use the config-file names (``oxford_pets``), ``results.jsonl`` and ``log.txt`` carry
``DATASET.NAME`` (``OxfordPets``) and the paper prints its own labels (``Flowers102``, ``DTD``). Tables key
rows by the ``DATASET.NAME`` spelling and show the paper's label, in the paper's order.
"""

from __future__ import annotations

import re

# (DATASET.NAME, label printed in the paper's tables), in the order of Table 1 / Table 2 / the DG table.
_KNOWN: tuple[tuple[str, str], ...] = (
    ("ImageNet", "ImageNet"),
    ("Caltech101", "Caltech101"),
    ("OxfordPets", "OxfordPets"),
    ("StanfordCars", "StanfordCars"),
    ("OxfordFlowers", "Flowers102"),
    ("Food101", "Food101"),
    ("FGVCAircraft", "FGVCAircraft"),
    ("SUN397", "SUN397"),
    ("DescribableTextures", "DTD"),
    ("EuroSAT", "EuroSAT"),
    ("UCF101", "UCF101"),
    ("ImageNetV2", "ImageNet-V2"),
    ("ImageNetSketch", "ImageNet-Sketch"),
    ("ImageNetA", "ImageNet-A"),
    ("ImageNetR", "ImageNet-R"),
)
_EXTRA_ALIASES = {"dtd": "DescribableTextures", "flowers102": "OxfordFlowers", "flowers": "OxfordFlowers"}

_CANONICAL_BY_KEY: dict[str, str] = {}
for _name, _label in _KNOWN:
    _CANONICAL_BY_KEY[re.sub(r"[^a-z0-9]", "", _name.lower())] = _name
    _CANONICAL_BY_KEY[re.sub(r"[^a-z0-9]", "", _label.lower())] = _name
for _alias, _name in _EXTRA_ALIASES.items():
    _CANONICAL_BY_KEY[_alias] = _name
_LABELS = dict(_KNOWN)
_ORDER = {name: i for i, (name, _) in enumerate(_KNOWN)}


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def known_dataset(name: str) -> str | None:
    """Canonical ``DATASET.NAME`` for any known spelling (``oxford_pets``, ``DTD``, ``imagenet-v2``), else None."""
    return _CANONICAL_BY_KEY.get(_normalise(name))


def canonical_dataset(name: str) -> str:
    """Canonical name of a known benchmark; an unknown (custom) dataset keeps its own spelling."""
    return known_dataset(name) or name


def same_dataset(a: str, b: str) -> bool:
    """True when two spellings name the same benchmark (``oxford_flowers`` and ``OxfordFlowers``)."""
    return _normalise(canonical_dataset(a)) == _normalise(canonical_dataset(b))


def dataset_label(name: str) -> str:
    """The label the paper prints for a dataset (unknown datasets keep their name)."""
    return _LABELS.get(canonical_dataset(name), name)


def dataset_sort_key(name: str) -> tuple[int, str]:
    """Paper order first, then unknown datasets alphabetically."""
    canonical = canonical_dataset(name)
    return (_ORDER.get(canonical, len(_ORDER)), canonical)
