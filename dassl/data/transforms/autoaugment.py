"""AutoAugment policies for ImageNet, CIFAR-10 and SVHN on PIL images.

Cubuk et al., "AutoAugment: Learning Augmentation Policies from Data" (CVPR 2019), appendix tables: each policy
is a list of 25 sub-policies; a sub-policy is two (probability, operation, magnitude bin) steps. Magnitude bins
0..9 index ten evenly spaced values per operation, and geometric / colour operations pick their sign with
probability 1/2 (the widely used PIL formulation that Dassl ships). All randomness comes from the stdlib
`random`, like upstream. Upstream crashed at construction on NumPy >= 1.24 (``np.int``).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

__all__ = ["ImageNetPolicy", "CIFAR10Policy", "SVHNPolicy", "SubPolicy", "MAGNITUDE_RANGES"]

_FILL = (128, 128, 128)

# Ten magnitude values per operation (bin index 0..9).
MAGNITUDE_RANGES: dict[str, list[float]] = {
    "shearX": np.linspace(0, 0.3, 10).tolist(),
    "shearY": np.linspace(0, 0.3, 10).tolist(),
    "translateX": np.linspace(0, 150 / 331, 10).tolist(),
    "translateY": np.linspace(0, 150 / 331, 10).tolist(),
    "rotate": np.linspace(0, 30, 10).tolist(),
    "color": np.linspace(0.0, 0.9, 10).tolist(),
    "posterize": [int(v) for v in np.round(np.linspace(8, 4, 10), 0)],
    "solarize": np.linspace(256, 0, 10).tolist(),
    "contrast": np.linspace(0.0, 0.9, 10).tolist(),
    "sharpness": np.linspace(0.0, 0.9, 10).tolist(),
    "brightness": np.linspace(0.0, 0.9, 10).tolist(),
    "autocontrast": [0] * 10,
    "equalize": [0] * 10,
    "invert": [0] * 10,
}


def _sign() -> int:
    return random.choice([-1, 1])


def _rotate_with_fill(img: Image.Image, degrees: float) -> Image.Image:
    """Rotate and fill the uncovered corners with grey instead of black."""
    rotated = img.convert("RGBA").rotate(degrees)
    grey = Image.new("RGBA", rotated.size, (128,) * 4)
    return Image.composite(rotated, grey, rotated).convert(img.mode)


def _affine(img: Image.Image, coeffs: tuple[float, ...], resample: int, fill: tuple[int, ...]) -> Image.Image:
    return img.transform(img.size, Image.AFFINE, coeffs, resample, fillcolor=fill)


_OPERATIONS: dict[str, Callable[[Image.Image, float, tuple[int, ...]], Image.Image]] = {
    "shearX": lambda img, m, fill: _affine(img, (1, m * _sign(), 0, 0, 1, 0), Image.BICUBIC, fill),
    "shearY": lambda img, m, fill: _affine(img, (1, 0, 0, m * _sign(), 1, 0), Image.BICUBIC, fill),
    "translateX": lambda img, m, fill: _affine(img, (1, 0, m * img.size[0] * _sign(), 0, 1, 0), Image.NEAREST, fill),
    "translateY": lambda img, m, fill: _affine(img, (1, 0, 0, 0, 1, m * img.size[1] * _sign()), Image.NEAREST, fill),
    "rotate": lambda img, m, fill: _rotate_with_fill(img, m * _sign()),
    "color": lambda img, m, fill: ImageEnhance.Color(img).enhance(1 + m * _sign()),
    "posterize": lambda img, m, fill: ImageOps.posterize(img, int(m)),
    "solarize": lambda img, m, fill: ImageOps.solarize(img, m),
    "contrast": lambda img, m, fill: ImageEnhance.Contrast(img).enhance(1 + m * _sign()),
    "sharpness": lambda img, m, fill: ImageEnhance.Sharpness(img).enhance(1 + m * _sign()),
    "brightness": lambda img, m, fill: ImageEnhance.Brightness(img).enhance(1 + m * _sign()),
    "autocontrast": lambda img, m, fill: ImageOps.autocontrast(img),
    "equalize": lambda img, m, fill: ImageOps.equalize(img),
    "invert": lambda img, m, fill: ImageOps.invert(img),
}


class SubPolicy:
    """Apply operation 1 with probability p1, then operation 2 with probability p2."""

    def __init__(
        self,
        p1: float,
        operation1: str,
        magnitude_idx1: int,
        p2: float,
        operation2: str,
        magnitude_idx2: int,
        fillcolor: tuple[int, ...] = _FILL,
    ) -> None:
        for name in (operation1, operation2):
            if name not in _OPERATIONS:
                raise ValueError(f"Unknown AutoAugment operation {name!r}; valid: {sorted(_OPERATIONS)}")
        self.fillcolor = tuple(fillcolor)
        self.p1, self.p2 = p1, p2
        self.operation1, self.operation2 = operation1, operation2
        self.magnitude1 = MAGNITUDE_RANGES[operation1][magnitude_idx1]
        self.magnitude2 = MAGNITUDE_RANGES[operation2][magnitude_idx2]

    def __call__(self, img: Image.Image) -> Image.Image:
        if random.random() < self.p1:
            img = _OPERATIONS[self.operation1](img, self.magnitude1, self.fillcolor)
        if random.random() < self.p2:
            img = _OPERATIONS[self.operation2](img, self.magnitude2, self.fillcolor)
        return img


# (p1, op1, bin1, p2, op2, bin2) per sub-policy, from the paper's appendix.
_IMAGENET = [
    (0.4, "posterize", 8, 0.6, "rotate", 9),
    (0.6, "solarize", 5, 0.6, "autocontrast", 5),
    (0.8, "equalize", 8, 0.6, "equalize", 3),
    (0.6, "posterize", 7, 0.6, "posterize", 6),
    (0.4, "equalize", 7, 0.2, "solarize", 4),
    (0.4, "equalize", 4, 0.8, "rotate", 8),
    (0.6, "solarize", 3, 0.6, "equalize", 7),
    (0.8, "posterize", 5, 1.0, "equalize", 2),
    (0.2, "rotate", 3, 0.6, "solarize", 8),
    (0.6, "equalize", 8, 0.4, "posterize", 6),
    (0.8, "rotate", 8, 0.4, "color", 0),
    (0.4, "rotate", 9, 0.6, "equalize", 2),
    (0.0, "equalize", 7, 0.8, "equalize", 8),
    (0.6, "invert", 4, 1.0, "equalize", 8),
    (0.6, "color", 4, 1.0, "contrast", 8),
    (0.8, "rotate", 8, 1.0, "color", 2),
    (0.8, "color", 8, 0.8, "solarize", 7),
    (0.4, "sharpness", 7, 0.6, "invert", 8),
    (0.6, "shearX", 5, 1.0, "equalize", 9),
    (0.4, "color", 0, 0.6, "equalize", 3),
    (0.4, "equalize", 7, 0.2, "solarize", 4),
    (0.6, "solarize", 5, 0.6, "autocontrast", 5),
    (0.6, "invert", 4, 1.0, "equalize", 8),
    (0.6, "color", 4, 1.0, "contrast", 8),
    (0.8, "equalize", 8, 0.6, "equalize", 3),
]

_CIFAR10 = [
    (0.1, "invert", 7, 0.2, "contrast", 6),
    (0.7, "rotate", 2, 0.3, "translateX", 9),
    (0.8, "sharpness", 1, 0.9, "sharpness", 3),
    (0.5, "shearY", 8, 0.7, "translateY", 9),
    (0.5, "autocontrast", 8, 0.9, "equalize", 2),
    (0.2, "shearY", 7, 0.3, "posterize", 7),
    (0.4, "color", 3, 0.6, "brightness", 7),
    (0.3, "sharpness", 9, 0.7, "brightness", 9),
    (0.6, "equalize", 5, 0.5, "equalize", 1),
    (0.6, "contrast", 7, 0.6, "sharpness", 5),
    (0.7, "color", 7, 0.5, "translateX", 8),
    (0.3, "equalize", 7, 0.4, "autocontrast", 8),
    (0.4, "translateY", 3, 0.2, "sharpness", 6),
    (0.9, "brightness", 6, 0.2, "color", 8),
    (0.5, "solarize", 2, 0.0, "invert", 3),
    (0.2, "equalize", 0, 0.6, "autocontrast", 0),
    (0.2, "equalize", 8, 0.6, "equalize", 4),
    (0.9, "color", 9, 0.6, "equalize", 6),
    (0.8, "autocontrast", 4, 0.2, "solarize", 8),
    (0.1, "brightness", 3, 0.7, "color", 0),
    (0.4, "solarize", 5, 0.9, "autocontrast", 3),
    (0.9, "translateY", 9, 0.7, "translateY", 9),
    (0.9, "autocontrast", 2, 0.8, "solarize", 3),
    (0.8, "equalize", 8, 0.1, "invert", 3),
    (0.7, "translateY", 9, 0.9, "autocontrast", 1),
]

_SVHN = [
    (0.9, "shearX", 4, 0.2, "invert", 3),
    (0.9, "shearY", 8, 0.7, "invert", 5),
    (0.6, "equalize", 5, 0.6, "solarize", 6),
    (0.9, "invert", 3, 0.6, "equalize", 3),
    (0.6, "equalize", 1, 0.9, "rotate", 3),
    (0.9, "shearX", 4, 0.8, "autocontrast", 3),
    (0.9, "shearY", 8, 0.4, "invert", 5),
    (0.9, "shearY", 5, 0.2, "solarize", 6),
    (0.9, "invert", 6, 0.8, "autocontrast", 1),
    (0.6, "equalize", 3, 0.9, "rotate", 3),
    (0.9, "shearX", 4, 0.3, "solarize", 3),
    (0.8, "shearY", 8, 0.7, "invert", 4),
    (0.9, "equalize", 5, 0.6, "translateY", 6),
    (0.9, "invert", 4, 0.6, "equalize", 7),
    (0.3, "contrast", 3, 0.8, "rotate", 4),
    (0.8, "invert", 5, 0.0, "translateY", 2),
    (0.7, "shearY", 6, 0.4, "solarize", 8),
    (0.6, "invert", 4, 0.8, "rotate", 4),
    (0.3, "shearY", 7, 0.9, "translateX", 3),
    (0.1, "shearX", 6, 0.6, "invert", 5),
    (0.7, "solarize", 2, 0.6, "translateY", 7),
    (0.8, "shearY", 4, 0.8, "invert", 8),
    (0.7, "shearX", 9, 0.8, "translateY", 3),
    (0.8, "shearY", 5, 0.7, "autocontrast", 3),
    (0.7, "shearX", 2, 0.1, "invert", 5),
]


class _Policy:
    """Pick one sub-policy uniformly (``random.randint``) and apply it."""

    table: list[tuple] = []

    def __init__(self, fillcolor: tuple[int, ...] = _FILL) -> None:
        self.policies = [SubPolicy(*row, fillcolor=fillcolor) for row in self.table]

    def __call__(self, img: Image.Image) -> Image.Image:
        return self.policies[random.randint(0, len(self.policies) - 1)](img)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ImageNetPolicy(_Policy):
    """AutoAugment policy searched on ImageNet."""

    table = _IMAGENET


class CIFAR10Policy(_Policy):
    """AutoAugment policy searched on CIFAR-10."""

    table = _CIFAR10


class SVHNPolicy(_Policy):
    """AutoAugment policy searched on SVHN."""

    table = _SVHN
