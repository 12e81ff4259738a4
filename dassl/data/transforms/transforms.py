"""Train/test image pipelines built from ``cfg.INPUT``, on torchvision.

The step order is fixed (it does not follow the order of ``INPUT.TRANSFORMS``) and each step prints the same
line as upstream, because users compare logs. Fixes over upstream: unknown names raise a
``ValueError`` listing the valid ones, ``center_crop`` in training logs that it has no effect, and
``random_translation`` uses ``INPUT.INTERPOLATION`` instead of always bilinear.
"""

from __future__ import annotations

import difflib
import logging
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    GaussianBlur,
    InterpolationMode,
    Normalize,
    RandomApply,
    RandomCrop,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
)
from torchvision.transforms import functional as TF

from .autoaugment import CIFAR10Policy, ImageNetPolicy, SVHNPolicy
from .randaugment import RandAugment, RandAugment2, RandAugmentFixMatch

logger = logging.getLogger(__name__)

__all__ = [
    "AVAI_CHOICES",
    "INTERPOLATION_MODES",
    "build_transform",
    "get_interpolation_mode",
    "Random2DTranslation",
    "InstanceNormalization",
    "Cutout",
    "GaussianNoise",
]

AVAI_CHOICES = [
    "random_flip",
    "random_resized_crop",
    "normalize",
    "instance_norm",
    "random_crop",
    "random_translation",
    "center_crop",  # This has become a default operation during testing
    "cutout",
    "imagenet_policy",
    "cifar10_policy",
    "svhn_policy",
    "randaugment",
    "randaugment_fixmatch",
    "randaugment2",
    "gaussian_noise",
    "colorjitter",
    "randomgrayscale",
    "gaussian_blur",
]

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


def get_interpolation_mode(name: str) -> InterpolationMode:
    """Look up ``INPUT.INTERPOLATION``; an unknown name raises ``KeyError`` (as upstream) listing the valid ones."""
    try:
        return INTERPOLATION_MODES[name]
    except KeyError:
        raise KeyError(
            f"INPUT.INTERPOLATION = {name!r} is not supported; use one of {sorted(INTERPOLATION_MODES)}"
        ) from None


class Random2DTranslation:
    """With probability ``p`` enlarge the image by 1/8 and crop a random ``height x width`` window; else resize.

    Crop offsets come from the stdlib `random` (upstream), so this op shares the Python RNG stream.
    """

    def __init__(
        self, height: int, width: int, p: float = 0.5, interpolation: InterpolationMode = InterpolationMode.BILINEAR
    ) -> None:
        self.height = height
        self.width = width
        self.p = p
        self.interpolation = interpolation

    def __call__(self, img: Image.Image) -> Image.Image:
        if random.uniform(0, 1) > self.p:
            return TF.resize(img, [self.height, self.width], interpolation=self.interpolation)
        new_width = int(round(self.width * 1.125))
        new_height = int(round(self.height * 1.125))
        resized = TF.resize(img, [new_height, new_width], interpolation=self.interpolation)
        x1 = int(round(random.uniform(0, new_width - self.width)))
        y1 = int(round(random.uniform(0, new_height - self.height)))
        return TF.crop(resized, y1, x1, self.height, self.width)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(height={self.height}, width={self.width}, p={self.p})"


class InstanceNormalization:
    """Normalise each channel of a CHW tensor by its own mean and (unbiased) std: (x - mean) / (std + eps)."""

    def __init__(self, eps: float = 1e-8) -> None:
        self.eps = eps

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        c = img.shape[0]
        flat = img.reshape(c, -1)
        mean = flat.mean(1).view(c, 1, 1)
        std = flat.std(1).view(c, 1, 1)
        return (img - mean) / (std + self.eps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps})"


class Cutout:
    """Zero ``n_holes`` squares of side ``length`` in a CHW tensor (DeVries & Taylor 2017).

    Centres are drawn with ``np.random.randint`` (upstream RNG); squares are clipped at the borders.
    """

    def __init__(self, n_holes: int = 1, length: int = 16) -> None:
        self.n_holes = n_holes
        self.length = length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[1], img.shape[2]
        mask = np.ones((h, w), np.float32)
        half = self.length // 2
        for _ in range(self.n_holes):
            y = np.random.randint(h)
            x = np.random.randint(w)
            y1, y2 = np.clip(y - half, 0, h), np.clip(y + half, 0, h)
            x1, x2 = np.clip(x - half, 0, w), np.clip(x + half, 0, w)
            mask[y1:y2, x1:x2] = 0.0
        return img * torch.from_numpy(mask).expand_as(img)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_holes={self.n_holes}, length={self.length})"


class GaussianNoise:
    """With probability ``p`` add ``N(mean, std)`` noise to a tensor.

    The coin is stdlib `random` and the noise torch RNG, as upstream.
    """

    def __init__(self, mean: float = 0.0, std: float = 0.15, p: float = 0.5) -> None:
        self.mean = mean
        self.std = std
        self.p = p

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if random.uniform(0, 1) > self.p:
            return img
        return img + torch.randn(img.size()) * self.std + self.mean

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std}, p={self.p})"


def _check_choices(choices: Sequence[str]) -> None:
    for choice in choices:
        if choice not in AVAI_CHOICES:
            close = difflib.get_close_matches(str(choice), AVAI_CHOICES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"Unknown transform {choice!r} in INPUT.TRANSFORMS{hint}. Valid names: {', '.join(AVAI_CHOICES)}"
            )


def build_transform(cfg: Any, is_train: bool = True, choices: Sequence[str] | None = None) -> Compose | None:
    """Build the train or test pipeline from ``cfg.INPUT``.

    ``choices`` defaults to ``cfg.INPUT.TRANSFORMS``. Returns None (and prints a note) when
    ``INPUT.NO_TRANSFORM`` is set.
    """
    if cfg.INPUT.NO_TRANSFORM:
        print("Note: no transform is applied!")
        return None

    if choices is None:
        choices = cfg.INPUT.TRANSFORMS
    _check_choices(choices)

    target_size = f"{cfg.INPUT.SIZE[0]}x{cfg.INPUT.SIZE[1]}"
    normalize = Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)
    if is_train:
        return _build_transform_train(cfg, choices, target_size, normalize)
    return _build_transform_test(cfg, choices, target_size, normalize)


def _build_transform_train(cfg: Any, choices: Sequence[str], target_size: str, normalize: Normalize) -> Compose:
    print("Building transform_train")
    inp = cfg.INPUT
    interp_mode = get_interpolation_mode(inp.INTERPOLATION)
    input_size = inp.SIZE
    tfm: list[Any] = []

    if "center_crop" in choices:
        logger.warning("'center_crop' has no effect in the training pipeline (it is always applied at test time)")

    if "random_crop" not in choices and "random_resized_crop" not in choices:
        print(f"+ resize to {target_size}")
        tfm.append(Resize(input_size, interpolation=interp_mode))

    if "random_translation" in choices:
        print("+ random translation")
        tfm.append(Random2DTranslation(input_size[0], input_size[1], interpolation=interp_mode))

    if "random_crop" in choices:
        print(f"+ random crop (padding = {inp.CROP_PADDING})")
        tfm.append(RandomCrop(input_size, padding=inp.CROP_PADDING))

    if "random_resized_crop" in choices:
        print(f"+ random resized crop (size={input_size}, scale={inp.RRCROP_SCALE})")
        tfm.append(RandomResizedCrop(input_size, scale=inp.RRCROP_SCALE, interpolation=interp_mode))

    if "random_flip" in choices:
        print("+ random flip")
        tfm.append(RandomHorizontalFlip())

    if "imagenet_policy" in choices:
        print("+ imagenet policy")
        tfm.append(ImageNetPolicy())

    if "cifar10_policy" in choices:
        print("+ cifar10 policy")
        tfm.append(CIFAR10Policy())

    if "svhn_policy" in choices:
        print("+ svhn policy")
        tfm.append(SVHNPolicy())

    if "randaugment" in choices:
        n, m = inp.RANDAUGMENT_N, inp.RANDAUGMENT_M
        print(f"+ randaugment (n={n}, m={m})")
        tfm.append(RandAugment(n, m))

    if "randaugment_fixmatch" in choices:
        n = inp.RANDAUGMENT_N
        print(f"+ randaugment_fixmatch (n={n})")
        tfm.append(RandAugmentFixMatch(n))

    if "randaugment2" in choices:
        n = inp.RANDAUGMENT_N
        print(f"+ randaugment2 (n={n})")
        tfm.append(RandAugment2(n))

    if "colorjitter" in choices:
        b, c, s, h = inp.COLORJITTER_B, inp.COLORJITTER_C, inp.COLORJITTER_S, inp.COLORJITTER_H
        print(f"+ color jitter (brightness={b}, contrast={c}, saturation={s}, hue={h})")
        tfm.append(ColorJitter(brightness=b, contrast=c, saturation=s, hue=h))

    if "randomgrayscale" in choices:
        print("+ random gray scale")
        tfm.append(RandomGrayscale(p=inp.RGS_P))

    if "gaussian_blur" in choices:
        print(f"+ gaussian blur (kernel={inp.GB_K})")
        tfm.append(RandomApply([GaussianBlur(inp.GB_K)], p=inp.GB_P))

    print("+ to torch tensor of range [0, 1]")
    tfm.append(ToTensor())

    if "cutout" in choices:
        print(f"+ cutout (n_holes={inp.CUTOUT_N}, length={inp.CUTOUT_LEN})")
        tfm.append(Cutout(inp.CUTOUT_N, inp.CUTOUT_LEN))

    if "normalize" in choices:
        print(f"+ normalization (mean={inp.PIXEL_MEAN}, std={inp.PIXEL_STD})")
        tfm.append(normalize)

    if "gaussian_noise" in choices:
        print(f"+ gaussian noise (mean={inp.GN_MEAN}, std={inp.GN_STD})")
        tfm.append(GaussianNoise(inp.GN_MEAN, inp.GN_STD))

    if "instance_norm" in choices:
        print("+ instance normalization")
        tfm.append(InstanceNormalization())

    return Compose(tfm)


def _build_transform_test(cfg: Any, choices: Sequence[str], target_size: str, normalize: Normalize) -> Compose:
    """Resize the shorter side to max(SIZE) (aspect kept), centre-crop SIZE, to tensor, optional normalisation."""
    print("Building transform_test")
    inp = cfg.INPUT
    interp_mode = get_interpolation_mode(inp.INTERPOLATION)
    input_size = inp.SIZE
    tfm: list[Any] = []

    print(f"+ resize the smaller edge to {max(input_size)}")
    tfm.append(Resize(max(input_size), interpolation=interp_mode))

    print(f"+ {target_size} center crop")
    tfm.append(CenterCrop(input_size))

    print("+ to torch tensor of range [0, 1]")
    tfm.append(ToTensor())

    if "normalize" in choices:
        print(f"+ normalization (mean={inp.PIXEL_MEAN}, std={inp.PIXEL_STD})")
        tfm.append(normalize)

    if "instance_norm" in choices:
        print("+ instance normalization")
        tfm.append(InstanceNormalization())

    return Compose(tfm)
