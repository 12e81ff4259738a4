"""MaPLe: multi-modal prompt learning with vision prompts coupled to the text prompts (Khattak et al., CVPR 2023).

Text side: the layer-0 context ``ctx [n, D_t]`` (CoOp's CTX_INIT rule, `coop_context`) and ``compound_prompts_text.{k}``
``[n, D_t]`` replacing the prompt tokens of text blocks ``k+1`` (``k = 0..J-2``). Vision side: no parameters
of its own -- the layer-0 prompt is ``proj(ctx)`` and block ``k+1`` gets
``compound_prompt_projections[k](compound_prompts_text[k])`` (the coupling functions, ``Linear(D_t, D_v)``, all
starting as copies of one initialisation). Keys are upstream's (``prompt_learner.proj.weight``, ...).

Fixes: the widths come from the loaded CLIP (upstream hard-codes 512/768, i.e. ViT-B only) and
``proj`` follows the run's precision (upstream forced it to fp16, which crashes in fp32 mode).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

import clip
from clip.model import TextEncoder, VisionTransformer
from dassl.config import register_cfg_defaults
from dassl.engine import TRAINER_REGISTRY

from .common import (
    CLIPPromptTrainer,
    build_clip_model,
    check_input_size,
    freeze_by_name,
    init_text_context,
    log_trainable_parameters,
    register_prompt_token_buffers,
)

__all__ = ["MaPLe", "MaPLeCLIP", "MultiModalPromptLearner"]

logger = logging.getLogger(__name__)


@register_cfg_defaults
def _add_maple_defaults(cfg: CN) -> None:
    """``TRAINER.MAPLE`` defaults (upstream's ``extend_cfg`` values); PREC also accepts ``bf16``."""
    cfg.TRAINER.MAPLE = CN()
    cfg.TRAINER.MAPLE.N_CTX = 2  # number of context vectors
    cfg.TRAINER.MAPLE.CTX_INIT = "a photo of a"  # initialization words
    cfg.TRAINER.MAPLE.PREC = "fp16"  # fp16, fp32, amp, bf16
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = 9  # max 12 for ViT-B/16: prompts in blocks 0..J-1


class MultiModalPromptLearner(nn.Module):
    """Text prompts for every depth and the projections that derive the vision prompts from them.

    ``forward() -> (prompts [C, L, D_t], shared_ctx [n, D_v], deep_text [J-1 x (n, D_t)], deep_vision
    [J-1 x (n, D_v)])``.
    """

    def __init__(
        self, classnames: Sequence[str], clip_model: nn.Module, n_ctx: int, ctx_init: str, prompt_depth: int
    ) -> None:
        super().__init__()
        if not classnames:
            raise ValueError("MultiModalPromptLearner needs at least one class name")
        if not isinstance(clip_model.visual, VisionTransformer):
            raise ValueError(
                f"MaPLe needs a ViT image encoder (its prompts are tokens), got {type(clip_model.visual).__name__}; "
                "use a ViT backbone such as 'ViT-B/16'."
            )
        if prompt_depth < 1:
            raise ValueError(f"TRAINER.MAPLE.PROMPT_DEPTH must be >= 1, got {prompt_depth}")
        blocks = min(clip_model.visual.transformer.layers, clip_model.transformer.layers)
        if prompt_depth > blocks:
            raise ValueError(
                f"TRAINER.MAPLE.PROMPT_DEPTH={prompt_depth} exceeds the {blocks} transformer blocks of the backbone; "
                f"use a depth between 1 and {blocks}."
            )
        text_width = clip_model.token_embedding.weight.shape[1]
        vision_width = clip_model.visual.conv1.out_channels
        ctx, prefix = init_text_context(clip_model, n_ctx, ctx_init)
        logger.info('MaPLe design: multi-modal prompt learning; initial context: "%s"', prefix)
        logger.info("Number of MaPLe context words (tokens): %d; prompt depth: %d", n_ctx, prompt_depth)
        self.n_cls = len(classnames)
        self.n_ctx = n_ctx
        self.ctx = nn.Parameter(ctx)
        self.proj = nn.Linear(text_width, vision_width)
        self.compound_prompts_text = nn.ParameterList(
            [nn.Parameter(torch.empty(n_ctx, text_width).normal_(std=0.02)) for _ in range(prompt_depth - 1)]
        )
        coupling = nn.Linear(text_width, vision_width)
        self.compound_prompt_projections = nn.ModuleList([copy.deepcopy(coupling) for _ in range(prompt_depth - 1)])
        register_prompt_token_buffers(self, clip_model, prefix, classnames, n_ctx)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        ctx = self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)  # (C, n, D_t)
        prompts = torch.cat([self.token_prefix.to(ctx.dtype), ctx, self.token_suffix.to(ctx.dtype)], dim=1)
        shared_ctx = self.proj(self.ctx)  # (n, D_v)
        deep_text = list(self.compound_prompts_text)
        deep_vision = [layer(prompt) for layer, prompt in zip(self.compound_prompt_projections, deep_text, strict=True)]
        return prompts, shared_ctx, deep_text, deep_vision


class MaPLeCLIP(nn.Module):
    """CLIP whose two towers take the compound prompts; ``forward(image) -> logits [B, C]``."""

    def __init__(self, clip_model: nn.Module, prompt_learner: MultiModalPromptLearner) -> None:
        super().__init__()
        self.prompt_learner = prompt_learner
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale

    def encode_text(self) -> torch.Tensor:
        """L2-normalised class text features ``[C, E]`` with the compound text prompts."""
        prompts, _, deep_text, _ = self.prompt_learner()
        tokenized = self.prompt_learner.tokenized_prompts
        return F.normalize(self.text_encoder(prompts, tokenized, deep_text), dim=-1)

    def vision_prompts(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The layer-0 and deeper vision prompts ``(shared_ctx [n, Dv], [n, Dv] per block)``, derived from the
        text prompts (fixed once trained: prediction stores them)."""
        _, shared_ctx, _, deep_vision = self.prompt_learner()
        return shared_ctx, deep_vision

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """L2-normalised image features ``[B, E]`` with the vision prompts derived from the text prompts."""
        shared_ctx, deep_vision = self.vision_prompts()
        return F.normalize(self.image_encoder(image, shared_ctx, deep_vision), dim=-1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.logit_scale.exp() * self.encode_image(image) @ self.encode_text().t()


@TRAINER_REGISTRY.register()
class MaPLe(CLIPPromptTrainer):
    """Multi-modal Prompt Learning (Khattak et al., CVPR 2023); registered model ``MultiModalPromptLearner``."""

    MODEL_NAME = "MultiModalPromptLearner"
    DROP_KEYS = ("prompt_learner.token_prefix", "prompt_learner.token_suffix")

    def check_cfg(self, cfg: CN) -> None:
        super().check_cfg(cfg)
        if cfg.TRAINER.MAPLE.PROMPT_DEPTH < 1:
            raise ValueError(f"TRAINER.MAPLE.PROMPT_DEPTH must be >= 1, got {cfg.TRAINER.MAPLE.PROMPT_DEPTH}")

    def build_model(self) -> None:
        cfg = self.cfg
        node = cfg.TRAINER.MAPLE
        design = clip.PromptDesign(variant="maple", maple_length=node.N_CTX)
        clip_model = build_clip_model(cfg, design)
        check_input_size(cfg, clip_model.visual.input_resolution)
        logger.info("Building custom CLIP")
        prompt_learner = MultiModalPromptLearner(
            self.dm.dataset.classnames, clip_model, node.N_CTX, node.CTX_INIT, node.PROMPT_DEPTH
        )
        model = MaPLeCLIP(clip_model, prompt_learner)
        logger.info("Turning off gradients in both the image and the text encoder")
        freeze_by_name(model)
        log_trainable_parameters(model)
        self.register_prompt_model(model)  # also loads MODEL.INIT_WEIGHTS before moving to device
