"""CLIP weights for trainers, resolved from the config in one place.

Upstream copies a ``load_clip_to_cpu`` into every trainer and PromptKD hard-codes ``./clip/ViT-B-16.pt``.
Here every trainer asks this module: a registry name (``ViT-B/16``) or a file path,
looked up by ``clip.load_state_dict`` in ``MODEL.WEIGHTS_DIR`` and the usual caches, with TorchScript archives
opened only when trusted (``MODEL.TRUST_TORCHSCRIPT``).
"""

from __future__ import annotations

import logging

import torch
from yacs.config import CfgNode

import clip
from clip import PromptDesign

__all__ = ["build_clip_model", "check_input_size", "load_clip_state_dict"]

logger = logging.getLogger(__name__)


def load_clip_state_dict(cfg: CfgNode, name_or_path: str | None = None) -> dict[str, torch.Tensor]:
    """State dict of the CLIP named by ``name_or_path`` (default ``MODEL.BACKBONE.NAME``).

    The name may be a registry name or a path to an OpenAI ``.pt`` archive / plain state-dict file.
    """
    name = name_or_path or cfg.MODEL.BACKBONE.NAME
    if not name:
        raise ValueError("No CLIP backbone given: set MODEL.BACKBONE.NAME (e.g. 'ViT-B/16') or pass a weights path.")
    weights_dir = cfg.MODEL.get("WEIGHTS_DIR", "") or None
    trust = bool(cfg.MODEL.get("TRUST_TORCHSCRIPT", False))
    logger.info("Loading CLIP (backbone: %s)", name)
    return clip.load_state_dict(name, weights_dir=weights_dir, trust_torchscript=trust)


def build_clip_model(
    cfg: CfgNode,
    design: PromptDesign | None = None,
    name_or_path: str | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> clip.model.CLIP:
    """An fp32 eager CLIP with the given prompt design, from ``state_dict`` or loaded via the config."""
    if state_dict is None:
        state_dict = load_clip_state_dict(cfg, name_or_path)
    return clip.build_model(state_dict, design)


def check_input_size(cfg: CfgNode, input_resolution: int, what: str = "CLIP image encoder") -> None:
    """Prompted ViTs need ``INPUT.SIZE`` to equal the model's resolution (their positional grid is fixed)."""
    size = tuple(cfg.INPUT.SIZE)
    if size[0] != input_resolution:
        raise ValueError(
            f"INPUT.SIZE is {size} but the {what} expects {input_resolution}x{input_resolution} images; "
            f"set 'INPUT.SIZE ({input_resolution}, {input_resolution})' (the YAMLs use 224 for ViT-B/16 and ViT-L/14)."
        )
