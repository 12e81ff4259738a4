"""CoOp: learnable text context in front of (or around) the class name (Zhou et al., IJCV 2022).

The CLIP towers are plain and frozen; only ``prompt_learner`` trains. The prompt learner is the registered
model (name ``prompt_learner``, as upstream), so checkpoint keys are ``ctx`` (and, in upstream files, the fixed
``token_prefix`` / ``token_suffix`` that are dropped on load). Differences from upstream: no hand-made fp16 casts --
precision comes from the engine's autocast; with ``CSC True`` and ``CTX_INIT`` every class starts from the
phrase (upstream silently fell back to one shared context); class-token positions use one precomputed gather
instead of a Python loop over classes.

``CoOpTextPromptTrainer`` is also the base of CoCoOp (same registration, loading and batch handling).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

import clip
from clip.model import TextEncoder
from dassl.config import register_cfg_defaults
from dassl.engine import TRAINER_REGISTRY

from .common import (
    CLASS_TOKEN_POSITIONS,
    CLIPPromptTrainer,
    assemble_prompts,
    build_clip_model,
    check_input_size,
    class_token_order,
    clean_classname,
    log_trainable_parameters,
    name_token_counts,
    phrase_context,
    random_context,
    register_prompt_token_buffers,
)

__all__ = [
    "CLASS_TOKEN_POSITIONS",
    "CoOp",
    "CoOpCLIP",
    "CoOpPromptLearner",
    "CoOpTextPromptTrainer",
    "FrozenTowersCLIP",
    "class_token_order",
    "coop_context",
]

logger = logging.getLogger(__name__)


@register_cfg_defaults
def _add_coop_defaults(cfg: CN) -> None:
    """``TRAINER.COOP`` defaults (upstream's ``extend_cfg`` values); PREC also accepts ``bf16`` (via autocast)."""
    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16  # number of context vectors
    cfg.TRAINER.COOP.CSC = False  # class-specific context
    cfg.TRAINER.COOP.CTX_INIT = ""  # initialization words
    cfg.TRAINER.COOP.PREC = "fp16"  # fp16, fp32, amp, bf16
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"  # 'middle' or 'end' or 'front'


def coop_context(
    clip_model: nn.Module, n_ctx: int, ctx_init: str, n_cls: int = 1, class_specific: bool = False
) -> tuple[torch.Tensor, str]:
    """Initial context and prompt prefix under CoOp/CoCoOp's rule.

    With ``ctx_init`` the number of context tokens becomes the number of words of the phrase and the context
    starts as their embeddings; otherwise ``n_ctx`` random vectors N(0, 0.02) (``[n_cls, n_ctx, D]`` when
    class-specific) and the prefix is ``n_ctx`` placeholder ``X`` words.
    """
    width = clip_model.token_embedding.weight.shape[1]
    phrase = clean_classname(ctx_init).strip()
    if phrase:
        n_ctx = len(phrase.split(" "))
        ctx = phrase_context(clip_model, phrase, n_ctx)
        if class_specific:
            ctx = ctx.unsqueeze(0).repeat(n_cls, 1, 1)
        return ctx, phrase
    if n_ctx < 1:
        raise ValueError(f"N_CTX must be >= 1 (or set CTX_INIT to a phrase), got {n_ctx}")
    ctx = random_context(n_cls, n_ctx, width) if class_specific else random_context(n_ctx, width)
    return ctx, " ".join(["X"] * n_ctx)


class CoOpPromptLearner(nn.Module):
    """Context vectors ``ctx`` (shared ``[n, D]`` or class-specific ``[C, n, D]``) + fixed token embeddings."""

    def __init__(
        self,
        classnames: Sequence[str],
        clip_model: nn.Module,
        n_ctx: int,
        ctx_init: str = "",
        class_specific: bool = False,
        class_token_position: str = "end",
    ) -> None:
        super().__init__()
        if not classnames:
            raise ValueError("CoOpPromptLearner needs at least one class name")
        n_cls = len(classnames)
        ctx, prefix = coop_context(clip_model, n_ctx, ctx_init, n_cls, class_specific)
        self.n_cls = n_cls
        self.n_ctx = ctx.shape[-2]
        self.class_token_position = class_token_position
        self.ctx = nn.Parameter(ctx)
        logger.info('Initial context: "%s"; number of context words (tokens): %d', prefix, self.n_ctx)
        tokenized = register_prompt_token_buffers(self, clip_model, prefix, classnames, self.n_ctx)
        if class_token_position == "end":
            self.register_buffer("token_order", None, persistent=False)
        else:
            name_lens = name_token_counts(tokenized, self.n_ctx)
            order = class_token_order(self.n_ctx, name_lens, tokenized.shape[1], class_token_position)
            self.register_buffer("token_order", order, persistent=False)

    def build_prompts(self, ctx: torch.Tensor) -> torch.Tensor:
        """Prompt embeddings ``[C, L, D]`` for a context ``[n, D]`` or ``[C, n, D]``."""
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0)
        return assemble_prompts(self.token_prefix, ctx, self.token_suffix, self.token_order)  # (C, L, D)

    def forward(self) -> torch.Tensor:
        return self.build_prompts(self.ctx)


class FrozenTowersCLIP(nn.Module):
    """CLIP's frozen image and text towers + a trainable ``prompt_learner`` (shared by CoOp and CoCoOp)."""

    def __init__(self, clip_model: nn.Module, prompt_learner: nn.Module) -> None:
        super().__init__()
        self.prompt_learner = prompt_learner
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.image_encoder.eval()
        self.text_encoder.eval()

    def train(self, mode: bool = True) -> FrozenTowersCLIP:
        """Only the prompt learner changes mode: the frozen towers stay in eval (ResNet BatchNorm statistics)."""
        self.training = mode
        self.prompt_learner.train(mode)
        return self


class CoOpCLIP(FrozenTowersCLIP):
    """Frozen CLIP towers + a CoOp prompt learner; ``forward(image) -> logits [B, C]``."""

    def encode_text(self) -> torch.Tensor:
        features = self.text_encoder(self.prompt_learner(), self.prompt_learner.tokenized_prompts)
        return F.normalize(features, dim=-1)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_encoder(image), dim=-1)  # (B, E)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.logit_scale.exp() * self.encode_image(image) @ self.encode_text().t()


class CoOpTextPromptTrainer(CLIPPromptTrainer):
    """Shared by CoOp and CoCoOp: plain CLIP, only ``prompt_learner`` trains and is registered."""

    MODEL_NAME = "prompt_learner"
    DROP_KEYS = ("token_prefix", "token_suffix")

    def build_prompt_learner(self, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        raise NotImplementedError

    def build_custom_clip(self, clip_model: nn.Module, prompt_learner: nn.Module) -> nn.Module:
        return CoOpCLIP(clip_model, prompt_learner)

    def build_model(self) -> None:
        cfg = self.cfg
        classnames = self.dm.dataset.classnames
        clip_model = build_clip_model(cfg, clip.PromptDesign())
        check_input_size(cfg, clip_model.visual.input_resolution)
        logger.info("Building custom CLIP")
        prompt_learner = self.build_prompt_learner(classnames, clip_model)
        model = self.build_custom_clip(clip_model, prompt_learner)
        logger.info("Turning off gradients in both the image and the text encoder")
        for name, param in model.named_parameters():
            param.requires_grad_("prompt_learner" in name)
        log_trainable_parameters(model)
        self.register_prompt_model(model, registered=prompt_learner)  # also loads MODEL.INIT_WEIGHTS


@TRAINER_REGISTRY.register()
class CoOp(CoOpTextPromptTrainer):
    """Context Optimization (Zhou et al., IJCV 2022): prompt tuning with cross-entropy on labelled shots."""

    REPORT_ACCURACY = True

    def check_cfg(self, cfg: CN) -> None:
        super().check_cfg(cfg)
        position = cfg.TRAINER.COOP.CLASS_TOKEN_POSITION
        if position not in CLASS_TOKEN_POSITIONS:
            raise ValueError(
                f"TRAINER.COOP.CLASS_TOKEN_POSITION is {position!r}; allowed: {list(CLASS_TOKEN_POSITIONS)}"
            )

    def build_prompt_learner(self, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        node = self.cfg.TRAINER.COOP
        return CoOpPromptLearner(
            classnames,
            clip_model,
            n_ctx=node.N_CTX,
            ctx_init=node.CTX_INIT,
            class_specific=node.CSC,
            class_token_position=node.CLASS_TOKEN_POSITION,
        )
