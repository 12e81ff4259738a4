"""Transforms built from cfg.INPUT."""

import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.autoaugment import AutoAugment, AutoAugmentPolicy

from dassl.config import get_cfg_default
from dassl.data.transforms import AVAI_CHOICES, INTERPOLATION_MODES, build_transform
from dassl.data.transforms import autoaugment as aa
from dassl.data.transforms.transforms import Cutout, InstanceNormalization, Random2DTranslation

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _cfg(size=(32, 32), transforms=("random_resized_crop", "random_flip", "normalize"), interp="bicubic"):
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = size
    cfg.INPUT.INTERPOLATION = interp
    cfg.INPUT.TRANSFORMS = list(transforms)
    cfg.INPUT.PIXEL_MEAN = CLIP_MEAN
    cfg.INPUT.PIXEL_STD = CLIP_STD
    return cfg


def _noise_image(w=32, h=32, seed=0):
    rs = np.random.RandomState(seed)
    return Image.fromarray(rs.randint(0, 256, (h, w, 3), dtype=np.uint8))


def test_clip_train_pipeline_lines(capsys):
    build_transform(_cfg(size=(224, 224)), is_train=True)
    assert capsys.readouterr().out.splitlines() == [
        "Building transform_train",
        "+ random resized crop (size=(224, 224), scale=(0.08, 1.0))",
        "+ random flip",
        "+ to torch tensor of range [0, 1]",
        f"+ normalization (mean={CLIP_MEAN}, std={CLIP_STD})",
    ]


def test_test_pipeline_lines_and_normalized_values(capsys):
    tfm = build_transform(_cfg(), is_train=False)
    assert capsys.readouterr().out.splitlines() == [
        "Building transform_test",
        "+ resize the smaller edge to 32",
        "+ 32x32 center crop",
        "+ to torch tensor of range [0, 1]",
        f"+ normalization (mean={CLIP_MEAN}, std={CLIP_STD})",
    ]
    out = tfm(Image.new("RGB", (32, 32), (255, 0, 128)))
    expected = (torch.tensor([255, 0, 128]) / 255.0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert out.shape == (3, 32, 32)
    torch.testing.assert_close(out[:, 5, 7], expected)
    torch.testing.assert_close(out[:, 0, 0], expected)


@pytest.mark.parametrize(
    ("size", "img_wh", "shape"), [((16, 16), (40, 30), (3, 16, 16)), ((16, 24), (32, 32), (3, 16, 24))]
)
def test_test_pipeline_center_crop_sizes(size, img_wh, shape):
    tfm = build_transform(_cfg(size=size, transforms=()), is_train=False)
    out = tfm(_noise_image(*img_wh))
    assert tuple(out.shape) == shape
    assert 0.0 <= out.min() and out.max() <= 1.0  # no normalisation when not listed


def test_center_crop_keeps_the_centre():
    # 48x32 image: left third red, middle third green, right third blue -> centre 32x32 crop after a no-op resize.
    arr = np.zeros((32, 48, 3), np.uint8)
    arr[:, :16, 0] = 255
    arr[:, 16:32, 1] = 255
    arr[:, 32:, 2] = 255
    out = build_transform(_cfg(transforms=()), is_train=False)(Image.fromarray(arr))
    assert out.shape == (3, 32, 32)
    assert out[0, :, :8].min() == 1.0 and out[1, :, 8:24].min() == 1.0 and out[2, :, 24:].min() == 1.0


def test_interpolation_mapping_and_errors():
    assert INTERPOLATION_MODES == {
        "bilinear": InterpolationMode.BILINEAR,
        "bicubic": InterpolationMode.BICUBIC,
        "nearest": InterpolationMode.NEAREST,
    }
    img = _noise_image(37, 37)
    outs = {m: build_transform(_cfg(transforms=(), interp=m), is_train=False)(img) for m in INTERPOLATION_MODES}
    assert not torch.equal(outs["bicubic"], outs["nearest"])
    assert not torch.equal(outs["bicubic"], outs["bilinear"])
    with pytest.raises(KeyError, match="bilinear"):
        build_transform(_cfg(interp="lanczos"), is_train=False)


def test_unknown_transform_name_lists_valid_ones():
    with pytest.raises(ValueError, match=r"'random_flip'\?.*Valid names: random_flip, random_resized_crop"):
        build_transform(_cfg(transforms=("random_flipp",)), is_train=True)


def test_no_transform_returns_none(capsys):
    cfg = _cfg()
    cfg.INPUT.NO_TRANSFORM = True
    assert build_transform(cfg, is_train=True) is None
    assert capsys.readouterr().out == "Note: no transform is applied!\n"


def test_resize_step_only_without_crops(capsys):
    tfm = build_transform(_cfg(size=(16, 24), transforms=("center_crop",)), is_train=True)
    assert "+ resize to 16x24" in capsys.readouterr().out
    assert tfm(_noise_image(50, 20)).shape == (3, 16, 24)  # exact H x W, aspect not kept


def test_every_transform_name_builds_and_runs(capsys):
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    train_names = [n for n in AVAI_CHOICES if n not in ("random_crop", "instance_norm")]
    for names in (train_names, ["random_crop", "instance_norm"]):
        cfg = _cfg(transforms=names)
        cfg.INPUT.GB_K = 3
        tfm = build_transform(cfg, is_train=True)
        for seed in range(20):
            out = tfm(_noise_image(seed=seed))
            assert out.shape == (3, 32, 32) and torch.isfinite(out).all()
    text = capsys.readouterr().out
    for line in (
        "+ random translation",
        "+ imagenet policy",
        "+ cifar10 policy",
        "+ svhn policy",
        "+ randaugment (n=2, m=10)",
        "+ randaugment_fixmatch (n=2)",
        "+ randaugment2 (n=2)",
        "+ color jitter (brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)",
        "+ random gray scale",
        "+ gaussian blur (kernel=3)",
        "+ cutout (n_holes=1, length=16)",
        "+ gaussian noise (mean=0.0, std=0.15)",
        "+ random crop (padding = 4)",
        "+ instance normalization",
    ):
        assert line in text


def test_autoaugment_tables_match_torchvision():
    """Our policy tables equal torchvision's (same paper) wherever torchvision gives a magnitude bin."""
    for policy, ours in (
        (AutoAugmentPolicy.IMAGENET, aa._IMAGENET),
        (AutoAugmentPolicy.CIFAR10, aa._CIFAR10),
        (AutoAugmentPolicy.SVHN, aa._SVHN),
    ):
        theirs = AutoAugment(policy)._get_policies(policy)
        assert len(theirs) == len(ours) == 25
        for (a, b), row in zip(theirs, ours, strict=True):
            for (name, p, mag), (rp, rname, rmag) in ((a, row[0:3]), (b, row[3:6])):
                assert (name.lower(), p) == (rname.lower(), rp)
                assert mag is None or mag == rmag


def test_cutout_instance_norm_translation_values():
    np.random.seed(1)
    out = Cutout(n_holes=1, length=8)(torch.ones(3, 16, 16))
    zeros = (out[0] == 0).sum().item()
    assert 16 <= zeros <= 64 and torch.equal(out[0], out[2])
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4)
    y = InstanceNormalization()(x)
    torch.testing.assert_close(y.mean(dim=(1, 2)), torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(y.reshape(2, -1).std(1), torch.ones(2))
    img = _noise_image(20, 20)
    t = Random2DTranslation(16, 16, p=1.0)
    random.seed(3)
    assert t(img).size == (16, 16)
    assert Random2DTranslation(16, 16, p=0.0)(img).size == (16, 16)
