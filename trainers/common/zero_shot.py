"""Zero-shot class text features of a plain CLIP: the one text-encoding path for fixed classifiers.

Used by ZeroshotCLIP/ZeroshotCLIP2 (template ensemble), PromptSRC's fixed embeddings (mean of
the raw features over the 60 ImageNet templates) and PromptKD's zero-shot teacher (one template).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

import clip

from .prompt_text import clean_classname

__all__ = ["class_text_features", "ensemble_text_features"]


@torch.no_grad()
def class_text_features(
    clip_model: nn.Module, classnames: Sequence[str], templates: Sequence[str], chunk_size: int = 1024
) -> torch.Tensor:
    """Raw (unnormalised) fp32 features ``[T, C, E]`` of ``template.format(class name)``.

    All ``T x C`` prompts are encoded in chunks of ``chunk_size`` sequences (one pass per chunk, not one per
    template); the prompts go to the device of ``clip_model``.
    """
    device = clip_model.token_embedding.weight.device
    names = [clean_classname(name) for name in classnames]
    tokens = clip.tokenize([template.format(name) for template in templates for name in names])
    features = torch.cat([clip_model.encode_text(chunk.to(device)).float() for chunk in tokens.split(chunk_size)])
    return features.view(len(templates), len(names), -1)


@torch.no_grad()
def ensemble_text_features(clip_model: nn.Module, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """``[C, E]`` classifier: per template L2-normalised class features, averaged, normalised again.

    With one template this is just the normalised features of ``template.format(classname)``.
    """
    features = F.normalize(class_text_features(clip_model, classnames, templates), dim=-1)  # (T, C, E)
    if len(templates) == 1:
        return features[0]
    return F.normalize(features.mean(dim=0), dim=-1)
