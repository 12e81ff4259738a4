"""Learnable text context shared by IVLP, PromptSRC and PromptKD's teacher (``VLPromptLearner``).

Keys match upstream checkpoints: ``prompt_learner.ctx``; the token buffers ``token_prefix`` / ``token_suffix``
(SOT, and class tokens + "." + EOT + padding) are fixed functions of the class names, so they are
non-persistent here (never saved; upstream files that carry them have them dropped on load).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

from .prompt_layout import assemble_prompts
from .prompt_text import init_text_context, register_prompt_token_buffers

__all__ = ["VLPromptLearner"]

logger = logging.getLogger(__name__)


class VLPromptLearner(nn.Module):
    """Layer-0 text prompts ``[SOT][ctx_1..ctx_n][class tokens . EOT pad]`` for every class.

    ``forward()`` returns the prompt embeddings ``[C, L, D]``; ``tokenized_prompts [C, L]`` locates EOT for
    pooling. The deep text prompts (blocks 1..J-1) live in the text transformer (``VPT_shallow``).
    """

    def __init__(self, classnames: Sequence[str], clip_model: nn.Module, n_ctx: int, ctx_init: str) -> None:
        super().__init__()
        if not classnames:
            raise ValueError("VLPromptLearner needs at least one class name")
        ctx, prefix = init_text_context(clip_model, n_ctx, ctx_init)
        self.n_ctx = n_ctx
        self.n_cls = len(classnames)
        self.prompt_prefix = prefix
        self.ctx = nn.Parameter(ctx)
        logger.info('Initial text context: "%s"; number of context words (tokens): %d', prefix, n_ctx)
        register_prompt_token_buffers(self, clip_model, prefix, classnames, n_ctx)

    def forward(self) -> torch.Tensor:
        return assemble_prompts(self.token_prefix, self.ctx.unsqueeze(0), self.token_suffix)  # (C, L, D)
