"""Synthetic JPEG datasets for the benchmarks: realistic file sizes and decode cost, no downloads.

Images are smooth colour fields with texture and noise (about 40-70 KB at 500x375, quality 90, close to the
JPEGs of the PromptKD benchmarks), so decoding costs what a real photo costs; pure noise would compress badly
and exaggerate decode time, flat colour would understate it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from dassl.utils import write_json

__all__ = ["make_caltech101_layout", "synthetic_image", "write_jpegs"]

IMAGE_FOLDER = "101_ObjectCategories"


def synthetic_image(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A photo-like RGB image: random low-frequency colour field + mid-frequency texture + sensor noise."""
    coarse = rng.uniform(0, 255, size=(6, 8, 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    fx, fy = rng.uniform(0.02, 0.15, size=2)
    texture = 20.0 * np.sin(fx * xx + 3.0 * np.sin(fy * yy))[..., None]
    noise = rng.normal(0.0, 6.0, size=(height, width, 3))
    pixels = np.clip(field + texture + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def write_jpegs(
    folder: str | os.PathLike, count: int, size: tuple[int, int] = (500, 375), seed: int = 0, quality: int = 90
) -> list[str]:
    """Write ``count`` JPEGs of ``size`` (width, height) into ``folder``; returns their paths (sorted)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"image_{i + 1:05d}.jpg"
        synthetic_image(size[0], size[1], rng).save(path, format="JPEG", quality=quality)
        paths.append(str(path))
    return paths


def make_caltech101_layout(
    root: str | os.PathLike, num_classes: int, per_class: int, size: tuple[int, int] = (500, 375), seed: int = 0
) -> Path:
    """``root/caltech-101/101_ObjectCategories/<class>/*.jpg`` + ``split_zhou_Caltech101.json``.

    Every image of a class is in the train split; the first ``max(1, per_class // 2)`` are also the test split
    (a benchmark needs evaluation images, not an honest split). Returns the ``DATASET.ROOT`` to pass.
    """
    if per_class < 1 or num_classes < 2:
        raise ValueError(f"need num_classes >= 2 and per_class >= 1, got {num_classes} and {per_class}")
    dataset = Path(root) / "caltech-101"
    split: dict[str, list[list]] = {"train": [], "val": [], "test": []}
    for label in range(num_classes):
        name = f"category_{label:04d}"
        paths = write_jpegs(dataset / IMAGE_FOLDER / name, per_class, size, seed=seed * 100003 + label)
        items = [[f"{name}/{Path(p).name}", label, name.replace("_", " ")] for p in paths]
        split["train"] += items
        split["val"] += items[: max(1, per_class // 2)]
        split["test"] += items[: max(1, per_class // 2)]
    write_json(split, dataset / "split_zhou_Caltech101.json")  # upstream split-file layout, atomically
    return Path(root)
