"""Full-size parity with open_clip (fp32, batch 2) on random weights in OpenAI's layout and dtypes.

The weights are random (the real files are not downloadable in CI) but have the exact shapes and fp16/fp32
split of OpenAI's RN50, ViT-B/16 and ViT-L/14 files; open_clip builds its model from the same dict with its
own OpenAI importer.
"""

from __future__ import annotations

import logging

import pytest
import torch
from open_clip.model import build_model_from_openai_state_dict

import clip
from tests.helpers.tiny_clip import tiny_clip_state_dict
from tests.test_clip_model import parity_errors

logger = logging.getLogger(__name__)

CONFIGS = {
    "RN50": dict(vision="resnet", embed_dim=1024, vision_width=64, vision_layers=(3, 4, 6, 3)),
    "ViT-B/16": dict(vision="vit", embed_dim=512, vision_width=768, vision_layers=12, vision_patch_size=16),
    "ViT-L/14": dict(
        vision="vit", embed_dim=768, vision_width=1024, vision_layers=24, vision_patch_size=14,
        transformer_width=768, transformer_heads=12,
    ),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS))
def test_full_size_parity_with_open_clip(name: str) -> None:
    kw = {"transformer_width": 512, "transformer_heads": 8, **CONFIGS[name]}
    state = tiny_clip_state_dict(image_resolution=224, transformer_layers=12, half=True, seed=11, **kw)
    ours = clip.build_model(state)
    arch = clip.infer_architecture(state)
    assert arch["image_resolution"] == 224 and arch["context_length"] == 77 and arch["vocab_size"] == 49408
    ref = build_model_from_openai_state_dict(dict(state)).float().eval()
    del state
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    texts = clip.tokenize(["a photo of a golden retriever.", "a satellite photo of Sea or Lake."])
    errors = parity_errors(ours, ref, images, texts)
    logger.info("%s parity errors: %s", name, errors)
    assert errors["scale"] > 0.1
    assert max(errors["image"], errors["text"], errors["cosine"]) <= 1e-5, errors
