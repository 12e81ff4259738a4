"""RandAugment variants on PIL images.

- `RandAugment(n, m)`: Cubuk et al., "RandAugment" (2020): ``n`` operations drawn with replacement
  (``random.choices``), all at the global magnitude ``m`` in [0, 30], mapped linearly into each op's range.
- `RandAugmentFixMatch(n)`: Sohn et al., "FixMatch" (2020) list; each op gets a uniform random magnitude.
- `RandAugment2(n, p=0.6)`: like FixMatch but each drawn op is applied with probability ``p``.

Geometric ops flip the sign of their magnitude with probability 1/2. All randomness is stdlib `random` except
the cutout centre (``np.random``), as in Dassl. Upstream crashed when SolarizeAdd was drawn on NumPy >= 1.24
(``np.int``); here plain ``int`` / ``np.int16`` are used.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

__all__ = [
    "RandAugment",
    "RandAugmentFixMatch",
    "RandAugment2",
    "randaugment_list",
    "fixmatch_list",
    "randaugment_list2",
]

Op = Callable[[Image.Image, float], Image.Image]


def _random_sign(v: float) -> float:
    return -v if random.random() > 0.5 else v


def _affine(img: Image.Image, coeffs: tuple[float, ...]) -> Image.Image:
    return img.transform(img.size, Image.AFFINE, coeffs)


def ShearX(img: Image.Image, v: float) -> Image.Image:  # noqa: N802 - op names as in the RandAugment papers
    return _affine(img, (1, _random_sign(v), 0, 0, 1, 0))


def ShearY(img: Image.Image, v: float) -> Image.Image:  # noqa: N802
    return _affine(img, (1, 0, 0, _random_sign(v), 1, 0))


def TranslateX(img: Image.Image, v: float) -> Image.Image:  # noqa: N802
    """Shift by a fraction ``v`` of the width."""
    return _affine(img, (1, 0, _random_sign(v) * img.size[0], 0, 1, 0))


def TranslateY(img: Image.Image, v: float) -> Image.Image:  # noqa: N802
    """Shift by a fraction ``v`` of the height."""
    return _affine(img, (1, 0, 0, 0, 1, _random_sign(v) * img.size[1]))


def TranslateXabs(img: Image.Image, v: float) -> Image.Image:  # noqa: N802
    """Shift by ``v`` pixels horizontally."""
    return _affine(img, (1, 0, _random_sign(v), 0, 1, 0))


def TranslateYabs(img: Image.Image, v: float) -> Image.Image:  # noqa: N802
    """Shift by ``v`` pixels vertically."""
    return _affine(img, (1, 0, 0, 0, 1, _random_sign(v)))


def Rotate(img: Image.Image, v: float) -> Image.Image:  # noqa: N802
    return img.rotate(_random_sign(v))


def AutoContrast(img: Image.Image, _: float) -> Image.Image:  # noqa: N802
    return ImageOps.autocontrast(img)


def Invert(img: Image.Image, _: float) -> Image.Image:  # noqa: N802
    return ImageOps.invert(img)


def Equalize(img: Image.Image, _: float) -> Image.Image:  # noqa: N802
    return ImageOps.equalize(img)


def Identity(img: Image.Image, _: float) -> Image.Image:  # noqa: N802
    return img


def Solarize(img: Image.Image, v: float) -> Image.Image:  # noqa: N802
    return ImageOps.solarize(img, v)


def SolarizeAdd(img: Image.Image, addition: float = 0, threshold: int = 128) -> Image.Image:  # noqa: N802
    """Add ``addition`` to every pixel (clipped to [0, 255]), then solarize above ``threshold``."""
    arr = np.asarray(img).astype(np.int16) + int(addition)
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    return ImageOps.solarize(Image.fromarray(arr), threshold)


def Posterize(img: Image.Image, v: float) -> Image.Image:  # noqa: N802
    return ImageOps.posterize(img, max(1, int(v)))


def Contrast(img: Image.Image, v: float) -> Image.Image:  # noqa: N802
    return ImageEnhance.Contrast(img).enhance(v)


def Color(img: Image.Image, v: float) -> Image.Image:  # noqa: N802
    return ImageEnhance.Color(img).enhance(v)


def Brightness(img: Image.Image, v: float) -> Image.Image:  # noqa: N802
    return ImageEnhance.Brightness(img).enhance(v)


def Sharpness(img: Image.Image, v: float) -> Image.Image:  # noqa: N802
    return ImageEnhance.Sharpness(img).enhance(v)


def CutoutAbs(img: Image.Image, v: float) -> Image.Image:  # noqa: N802
    """Paint a ``v x v`` grey square (clipped at the borders) at a centre drawn with ``np.random.uniform``."""
    if v < 0:
        return img
    w, h = img.size
    x0 = int(max(0, np.random.uniform(w) - v / 2.0))
    y0 = int(max(0, np.random.uniform(h) - v / 2.0))
    x1 = int(min(w, x0 + v))
    y1 = int(min(h, y0 + v))
    img = img.copy()
    ImageDraw.Draw(img).rectangle((x0, y0, x1, y1), (125, 123, 114))
    return img


def Cutout(img: Image.Image, v: float) -> Image.Image:  # noqa: N802
    """Cutout with side ``v`` given as a fraction of the width."""
    if v <= 0:
        return img
    return CutoutAbs(img, v * img.size[0])


def randaugment_list() -> list[tuple[Op, float, float]]:
    """The 16 RandAugment operations with their magnitude ranges (value at m=0 and at m=30)."""
    return [
        (AutoContrast, 0, 1),
        (Equalize, 0, 1),
        (Invert, 0, 1),
        (Rotate, 0, 30),
        (Posterize, 4, 8),
        (Solarize, 0, 256),
        (SolarizeAdd, 0, 110),
        (Color, 0.1, 1.9),
        (Contrast, 0.1, 1.9),
        (Brightness, 0.1, 1.9),
        (Sharpness, 0.1, 1.9),
        (ShearX, 0.0, 0.3),
        (ShearY, 0.0, 0.3),
        (CutoutAbs, 0, 40),
        (TranslateXabs, 0.0, 100),
        (TranslateYabs, 0.0, 100),
    ]


def fixmatch_list() -> list[tuple[Op, float, float]]:
    """FixMatch's RandAugment operations and magnitude ranges."""
    return [
        (AutoContrast, 0, 1),
        (Brightness, 0.05, 0.95),
        (Color, 0.05, 0.95),
        (Contrast, 0.05, 0.95),
        (Equalize, 0, 1),
        (Identity, 0, 1),
        (Posterize, 4, 8),
        (Rotate, -30, 30),
        (Sharpness, 0.05, 0.95),
        (ShearX, -0.3, 0.3),
        (ShearY, -0.3, 0.3),
        (Solarize, 0, 256),
        (TranslateX, -0.3, 0.3),
        (TranslateY, -0.3, 0.3),
    ]


def randaugment_list2() -> list[tuple[Op, float, float]]:
    """Operation list of `RandAugment2`."""
    return [
        (AutoContrast, 0, 1),
        (Brightness, 0.1, 1.9),
        (Color, 0.1, 1.9),
        (Contrast, 0.1, 1.9),
        (Equalize, 0, 1),
        (Identity, 0, 1),
        (Invert, 0, 1),
        (Posterize, 0, 4),
        (Rotate, -30, 30),
        (Sharpness, 0.1, 1.9),
        (ShearX, -0.3, 0.3),
        (ShearY, -0.3, 0.3),
        (Solarize, 0, 256),
        (TranslateX, -0.3, 0.3),
        (TranslateY, -0.3, 0.3),
    ]


class RandAugment:
    """``n`` random ops at global magnitude ``m`` (0..30): value = m / 30 * (max - min) + min."""

    def __init__(self, n: int = 2, m: int = 10) -> None:
        if not 0 <= m <= 30:
            raise ValueError(f"INPUT.RANDAUGMENT_M must be in [0, 30], got {m}")
        self.n = n
        self.m = m
        self.augment_list = randaugment_list()

    def __call__(self, img: Image.Image) -> Image.Image:
        for op, minval, maxval in random.choices(self.augment_list, k=self.n):
            img = op(img, (self.m / 30) * (maxval - minval) + minval)
        return img

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n}, m={self.m})"


class RandAugmentFixMatch:
    """``n`` random ops, each at a uniform random magnitude in its range."""

    def __init__(self, n: int = 2) -> None:
        self.n = n
        self.augment_list = fixmatch_list()

    def __call__(self, img: Image.Image) -> Image.Image:
        for op, minval, maxval in random.choices(self.augment_list, k=self.n):
            img = op(img, random.random() * (maxval - minval) + minval)
        return img

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n})"


class RandAugment2:
    """``n`` random ops, each applied with probability ``p`` at a uniform random magnitude."""

    def __init__(self, n: int = 2, p: float = 0.6) -> None:
        self.n = n
        self.p = p
        self.augment_list = randaugment_list2()

    def __call__(self, img: Image.Image) -> Image.Image:
        for op, minval, maxval in random.choices(self.augment_list, k=self.n):
            if random.random() > self.p:
                continue
            img = op(img, random.random() * (maxval - minval) + minval)
        return img

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n}, p={self.p})"
