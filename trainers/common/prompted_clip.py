"""CLIP with independent vision-language prompts (IVLP design).

Used as the IVLP model, as the trainable part of PromptSRC and as PromptKD's teacher. Submodule names give
upstream's checkpoint keys: ``prompt_learner.ctx``, ``image_encoder.VPT``,
``image_encoder.transformer.resblocks.{i}.VPT_shallow``, ``text_encoder.transformer.resblocks.{i}.VPT_shallow``,
``logit_scale``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

import clip
from clip.model import TextEncoder

from .prompt_learner import VLPromptLearner

__all__ = ["PromptedCLIP", "ivlp_design"]


def ivlp_design(vision_depth: int, text_depth: int, vision_ctx: int, text_ctx: int) -> clip.PromptDesign:
    """The ``ivlp`` prompt design (upstream ``design_details`` with ``trainer="IVLP"``)."""
    if vision_depth < 0 or text_depth < 0:
        raise ValueError(f"prompt depths must be >= 0, got vision {vision_depth}, text {text_depth}")
    if vision_depth > 0 and vision_ctx < 1:
        raise ValueError(f"N_CTX_VISION must be >= 1 when PROMPT_DEPTH_VISION={vision_depth} > 0, got {vision_ctx}")
    return clip.PromptDesign(
        variant="ivlp", vision_depth=vision_depth, text_depth=text_depth, vision_ctx=vision_ctx, text_ctx=text_ctx
    )


class PromptedCLIP(nn.Module):
    """Learnable text context + deep prompts in both towers; cosine logits scaled by ``exp(logit_scale)``."""

    def __init__(self, clip_model: nn.Module, classnames: Sequence[str], n_ctx: int, ctx_init: str) -> None:
        super().__init__()
        self.prompt_learner = VLPromptLearner(classnames, clip_model, n_ctx, ctx_init)
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale

    def encode_text(self) -> torch.Tensor:
        """L2-normalised class text features ``[C, E]``."""
        features = self.text_encoder(self.prompt_learner(), self.prompt_learner.tokenized_prompts)
        return F.normalize(features, dim=-1)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """L2-normalised image features ``[B, E]``."""
        return F.normalize(self.image_encoder(image), dim=-1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Class logits ``[B, C]``."""
        image_features = self.encode_image(image)
        text_features = self.encode_text()
        return self.logit_scale.exp() * image_features @ text_features.t()
