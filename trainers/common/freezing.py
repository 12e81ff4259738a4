"""The name-based freezing rule of the prompt-learning trainers (the official repositories' rule).

A parameter is trained iff :func:`clip.design.is_prompt_key` holds for its name (it contains ``prompt_learner``
or ``VPT``: deep prompts ``VPT`` / ``VPT_shallow`` and PromptKD's projector ``VPT_image_trans`` train), unless it
also contains one of the ``frozen_markers`` (PromptSRC/PromptKD: ``ZS_image_encoder``). Everything else (the CLIP
backbone) is frozen. :func:`store_matmul_weights_in` keeps a frozen tower's matmul weights in the run's autocast
dtype.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import nn

from clip.design import PROMPT_KEY_MARKERS, is_prompt_key
from clip.model import SelfAttention

__all__ = ["freeze_by_name", "is_prompt_parameter", "log_trainable_parameters", "store_matmul_weights_in"]

logger = logging.getLogger(__name__)


def is_prompt_parameter(name: str, frozen_markers: Iterable[str] = ()) -> bool:
    """Whether parameter ``name`` is trainable: a prompt key outside every ``frozen_markers`` part."""
    if any(marker in name for marker in frozen_markers):
        return False
    return is_prompt_key(name)


def freeze_by_name(model: nn.Module, frozen_markers: Iterable[str] = ()) -> list[str]:
    """Set ``requires_grad`` by the rule above; returns the trainable names in module order."""
    frozen_markers = tuple(frozen_markers)
    enabled = []
    for name, param in model.named_parameters():
        trainable = is_prompt_parameter(name, frozen_markers)
        param.requires_grad_(trainable)
        if trainable:
            enabled.append(name)
    if not enabled:
        raise RuntimeError(
            f"No trainable parameter in {type(model).__name__}: no name contains {PROMPT_KEY_MARKERS} "
            "(check the prompt depths / N_CTX settings)."
        )
    return enabled


def log_trainable_parameters(model: nn.Module) -> int:
    """Log upstream's "Parameters to be updated" and "Parameters count" lines; return the count."""
    names = [name for name, param in model.named_parameters() if param.requires_grad]
    count = sum(param.numel() for param in model.parameters() if param.requires_grad)
    logger.info("Parameters to be updated: %s", set(names))
    logger.info("Parameters count: %d", len(names))
    logger.info("Trainable values: %s", f"{count:,}")
    return count


def store_matmul_weights_in(module: nn.Module, dtype: torch.dtype) -> int:
    """Keep the weights and biases of ``module``'s linear layers, convolutions and attention input projections in
    ``dtype`` (the run's autocast dtype); returns the number of values converted.

    Autocast casts fp32 weights to its dtype on every call, and does not cache the casts of weights that need no
    gradient; stored in that dtype they are used as they are. The products see the same rounded values, so the
    outputs are unchanged; LayerNorm, embeddings and projections stay fp32. Only for frozen towers that always run
    under autocast (a distillation teacher in a bf16/fp16 run), never for trained weights.
    """
    converted = 0
    for sub in module.modules():
        if isinstance(sub, nn.Linear | nn.Conv2d):
            tensors = [sub.weight, sub.bias]
        elif isinstance(sub, SelfAttention):
            tensors = [sub.in_proj_weight, sub.in_proj_bias]
        else:
            continue
        for tensor in tensors:
            if tensor is not None and tensor.dtype != dtype:
                if tensor.requires_grad:
                    raise ValueError("store_matmul_weights_in is for frozen towers; a weight here requires grad")
                tensor.data = tensor.data.to(dtype)
                converted += tensor.numel()
    return converted
