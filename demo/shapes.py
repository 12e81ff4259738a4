"""Procedural "coloured shapes" benchmark written in the real Caltech101 layout.

Every class is a colour x shape combination ("red circle"); an image is that shape, in that colour (slightly
jittered), at a random size/position on a random grey-ish texture (stripes, checks, dots, noise, gradient).
The classes are ordered so that the first ``ceil(C/2)`` labels -- the BASE classes of the shared base/new
split -- cover every colour and every shape, while the NOVEL classes are the remaining,
never-seen combinations of those colours and shapes. That is what makes base-to-novel transfer measurable:
a CLIP pre-trained on base combinations can still name a novel one only if its text tower composes words.

Everything is a pure function of the seed, so the dataset, the split file and the pre-training pool are
reproducible bit for bit (PIL drawing and JPEG encoding are deterministic).
"""

from __future__ import annotations

import io
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dassl.errors import ConfigError
from dassl.utils import write_json

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "SHAPES",
    "ShapeClass",
    "ShapesDataset",
    "class_list",
    "render_image",
    "render_pool",
    "write_caltech_layout",
]

# Canonical colour names and their RGB centres (far apart so a jittered colour stays recognisable at 32 px).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 160, 50),
    "blue": (40, 70, 215),
    "yellow": (235, 215, 30),
    "purple": (140, 45, 185),
    "orange": (245, 135, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring")
BACKGROUNDS: tuple[str, ...] = ("striped", "checkered", "dotted", "noisy", "gradient")

DATASET_FOLDER = "caltech-101"
IMAGE_FOLDER = "101_ObjectCategories"
SPLIT_FILE = "split_zhou_Caltech101.json"
RENDER_SCALE = 3  # draw at 3x and box-downsample: anti-aliased edges at 32 px


@dataclass(frozen=True)
class ShapeClass:
    """One class: ``name`` is the class name the trainers see ("red circle"), ``folder`` its directory."""

    label: int
    colour: str
    shape: str
    base: bool

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def folder(self) -> str:
        return f"{self.colour}_{self.shape}"


def class_list(colours: Sequence[str] = tuple(COLOURS), shapes: Sequence[str] = SHAPES) -> list[ShapeClass]:
    """All ``len(colours) * len(shapes)`` classes, base classes first (labels ``0..ceil(C/2)-1``).

    Colour ``i`` is a base class with the ``b_i`` shapes ``(i + k) mod S``, ``k < b_i``, where the ``b_i`` share
    ``ceil(C/2)`` as evenly as possible (the base/new split takes the first ``ceil(C/2)`` labels as base). The cyclic
    shift pairs every colour with different shapes, so each colour and each shape occurs among the base
    classes, no colour group is tied to a shape group, and every novel class is an unseen pairing of a seen
    colour and a seen shape.
    """
    unknown = [c for c in colours if c not in COLOURS] + [s for s in shapes if s not in SHAPES]
    if unknown:
        raise ConfigError(f"unknown colours/shapes {unknown}; allowed colours {list(COLOURS)}, shapes {list(SHAPES)}")
    if len(colours) < 2 or len(shapes) < 2 or len(set(colours)) < len(colours) or len(set(shapes)) < len(shapes):
        raise ConfigError(f"need at least 2 distinct colours and 2 distinct shapes, got {colours} x {shapes}")
    n_colours, n_shapes = len(colours), len(shapes)
    n_base = math.ceil(n_colours * n_shapes / 2)
    base, novel = [], []
    for i, colour in enumerate(colours):
        count = (i + 1) * n_base // n_colours - i * n_base // n_colours
        chosen = {(i + k) % n_shapes for k in range(count)}
        for j, shape in enumerate(shapes):
            (base if j in chosen else novel).append((colour, shape))
    unseen = sorted(({c for c, _ in novel} - {c for c, _ in base}) | ({s for _, s in novel} - {s for _, s in base}))
    if unseen:
        raise ConfigError(
            f"{n_colours} colours x {n_shapes} shapes leave {unseen} out of the base classes, so the novel classes "
            "would not be combinations of seen words; use a grid whose sides differ by less (e.g. 6 x 5)"
        )
    ordered = [(c, s, True) for c, s in base] + [(c, s, False) for c, s in novel]
    return [ShapeClass(label, c, s, is_base) for label, (c, s, is_base) in enumerate(ordered)]


def _background(rng: random.Random, size: int) -> Image.Image:
    """A low-saturation texture so that colour words refer to the shape, never to the background."""
    kind = rng.choice(BACKGROUNDS)
    grey = rng.randint(70, 190)
    tint = [max(0, min(255, grey + rng.randint(-12, 12))) for _ in range(3)]
    delta = rng.choice((-1, 1)) * rng.randint(30, 55)  # same shift on every channel: lighter/darker, not coloured
    other = [max(0, min(255, v + delta)) for v in tint]
    img = Image.new("RGB", (size, size), tuple(tint))
    draw = ImageDraw.Draw(img)
    if kind == "striped":
        period = rng.randint(3, 6) * RENDER_SCALE
        vertical = rng.random() < 0.5
        for k in range(0, size, period):
            box = (k, 0, k + period // 2, size) if vertical else (0, k, size, k + period // 2)
            draw.rectangle(box, fill=tuple(other))
    elif kind == "checkered":
        cell = rng.randint(3, 6) * RENDER_SCALE
        for y in range(0, size, cell):
            for x in range(0, size, cell):
                if (x // cell + y // cell) % 2:
                    draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=tuple(other))
    elif kind == "dotted":
        r = rng.randint(1, 2) * RENDER_SCALE
        for _ in range(rng.randint(10, 25)):
            x, y = rng.randrange(size), rng.randrange(size)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(other))
    elif kind == "noisy":
        noise = np.random.default_rng(rng.getrandbits(32)).integers(-35, 36, (size // RENDER_SCALE,) * 2 + (1,))
        small = np.clip(np.array(tint)[None, None, :] + noise, 0, 255).astype(np.uint8)
        img = Image.fromarray(small).resize((size, size), Image.NEAREST)
    else:  # gradient
        ramp = np.linspace(0.0, 1.0, size)[None, :, None]
        arr = np.array(tint)[None, None, :] * (1 - ramp) + np.array(other)[None, None, :] * ramp
        arr = np.broadcast_to(arr, (size, size, 3))
        img = Image.fromarray(
            np.ascontiguousarray(arr.transpose(1, 0, 2) if rng.random() < 0.5 else arr).astype(np.uint8)
        )
    return img


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, angle: float, fill) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        s = 0.85 * r
        pts = [(-s, -s), (s, -s), (s, s), (-s, s)]
        draw.polygon(_rotate(pts, cx, cy, angle), fill=fill)
    elif shape == "triangle":
        pts = [(r * math.cos(a), r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
        draw.polygon(_rotate(pts, cx, cy, angle), fill=fill)
    elif shape == "cross":
        w = 0.32 * r
        arms = [(-r, -w), (r, -w), (r, w), (-r, w)]
        draw.polygon(_rotate(arms, cx, cy, angle), fill=fill)
        draw.polygon(_rotate([(y, x) for x, y in arms], cx, cy, angle), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; allowed: {list(SHAPES)}")


def _rotate(points, cx: float, cy: float, angle: float) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + c * x - s * y, cy + s * x + c * y) for x, y in points]


def render_image(colour: str, shape: str, rng: random.Random, size: int = 32) -> Image.Image:
    """One image of a ``colour`` ``shape`` on a random texture (all randomness from ``rng``)."""
    big = size * RENDER_SCALE
    img = _background(rng, big)
    rgb = tuple(max(0, min(255, v + rng.randint(-18, 18))) for v in COLOURS[colour])
    r = rng.uniform(0.26, 0.40) * big
    cx = rng.uniform(r + 0.04 * big, big - r - 0.04 * big)
    cy = rng.uniform(r + 0.04 * big, big - r - 0.04 * big)
    angle = rng.uniform(-0.3, 0.3)
    if shape == "ring":  # a disc with a hole showing the background
        mask = Image.new("L", (big, big), 0)
        mdraw = ImageDraw.Draw(mask)
        mdraw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        inner = 0.55 * r
        mdraw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=0)
        img.paste(Image.new("RGB", (big, big), rgb), (0, 0), mask)
    else:
        _draw_shape(ImageDraw.Draw(img), shape, cx, cy, r, angle, rgb)
    return img.reduce(RENDER_SCALE)


def _jpeg_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@dataclass(frozen=True)
class ShapesDataset:
    """What :func:`write_caltech_layout` wrote: ``root`` is the ``DATASET.ROOT`` for ``train.py``."""

    root: Path
    classes: tuple[ShapeClass, ...]
    counts: dict[str, int]

    @property
    def dataset_dir(self) -> Path:
        return self.root / DATASET_FOLDER

    @property
    def num_base(self) -> int:
        return sum(c.base for c in self.classes)


def write_caltech_layout(
    root: str | os.PathLike,
    seed: int = 0,
    per_class: tuple[int, int, int] = (24, 4, 16),
    size: int = 32,
    colours: Sequence[str] = tuple(COLOURS),
    shapes: Sequence[str] = SHAPES,
) -> ShapesDataset:
    """Write ``root/caltech-101/101_ObjectCategories/<colour>_<shape>/image_NNNN.jpg`` and the split file.

    ``per_class`` = (train, val, test) images per class. The split file ``split_zhou_Caltech101.json`` follows
    upstream's split-file format exactly (3 keys, ``[relative path, label, class name]`` items, 4-space indentation, no
    trailing newline), so the real ``Caltech101`` reader takes labels and names from it. The file is written
    last and atomically: a folder with a split file is complete.
    """
    root = Path(root)
    classes = class_list(colours, shapes)
    image_dir = root / DATASET_FOLDER / IMAGE_FOLDER
    split: dict[str, list] = {"train": [], "val": [], "test": []}
    for cls in classes:
        folder = image_dir / cls.folder
        folder.mkdir(parents=True, exist_ok=True)
        rng = random.Random(f"{seed}/{cls.folder}")
        index = 0
        for part, count in zip(("train", "val", "test"), per_class, strict=True):
            for _ in range(count):
                index += 1
                name = f"image_{index:04d}.jpg"
                (folder / name).write_bytes(_jpeg_bytes(render_image(cls.colour, cls.shape, rng, size)))
                split[part].append([f"{cls.folder}/{name}", cls.label, cls.name])
    write_json(split, root / DATASET_FOLDER / SPLIT_FILE)  # upstream split-file layout, atomically
    counts = {part: len(items) for part, items in split.items()}
    return ShapesDataset(root, tuple(classes), counts)


def render_pool(
    classes: Sequence[ShapeClass], per_class: int, seed: int, size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [N, size, size, 3], labels [N])`` of fresh images (JPEG round-trip like the files).

    Used for pre-training; the seed namespace differs from :func:`write_caltech_layout`'s, so no pool image
    is a benchmark image.
    """
    images, labels = [], []
    for cls in classes:
        rng = random.Random(f"pool/{seed}/{cls.folder}")
        for _ in range(per_class):
            jpeg = _jpeg_bytes(render_image(cls.colour, cls.shape, rng, size))
            images.append(np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")))
            labels.append(cls.label)
    return np.stack(images), np.asarray(labels, dtype=np.int64)
