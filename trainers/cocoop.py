"""CoCoOp: CoOp's context shifted per image by a small meta-network (Zhou et al., CVPR 2022).

``π = meta_net(normalize(f(x)))`` (``Linear(E, E//16) -> ReLU -> Linear(E//16, D_text)``) is added to every
context vector, so each image gets its own C prompts. One text-encoder pass takes the prompts of as many images
as fit in ``max_text_sequences`` sequences (upstream: one pass per image, which is also what 1000-class datasets
get here, bounding memory). Only ``prompt_learner`` (context + meta-net) trains and is registered under that
name; checkpoint keys are ``ctx`` and ``meta_net.*``.
The meta-net follows the run's precision (upstream forced it to fp16).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

from dassl.config import register_cfg_defaults
from dassl.engine import TRAINER_REGISTRY

from .common import assemble_prompts, load_clip_state_dict, register_prompt_token_buffers
from .common.inference import ConditionalClassifier
from .coop import CoOpTextPromptTrainer, FrozenTowersCLIP, coop_context

__all__ = ["CoCoOp", "CoCoOpCLIP", "CoCoOpPromptLearner"]

logger = logging.getLogger(__name__)


@register_cfg_defaults
def _add_cocoop_defaults(cfg: CN) -> None:
    """``TRAINER.COCOOP`` defaults (upstream's ``extend_cfg`` values); PREC also accepts ``bf16``."""
    cfg.TRAINER.COCOOP = CN()
    cfg.TRAINER.COCOOP.N_CTX = 16  # number of context vectors
    cfg.TRAINER.COCOOP.CTX_INIT = ""  # initialization words
    cfg.TRAINER.COCOOP.PREC = "fp16"  # fp16, fp32, amp, bf16


class CoCoOpPromptLearner(nn.Module):
    """Shared context ``ctx [n, D]`` + ``meta_net`` mapping an image feature ``[E]`` to a context shift ``[D]``."""

    def __init__(self, classnames: Sequence[str], clip_model: nn.Module, n_ctx: int, ctx_init: str = "") -> None:
        super().__init__()
        if not classnames:
            raise ValueError("CoCoOpPromptLearner needs at least one class name")
        ctx, prefix = coop_context(clip_model, n_ctx, ctx_init)
        self.n_cls = len(classnames)
        self.n_ctx = ctx.shape[0]
        self.ctx = nn.Parameter(ctx)
        logger.info('Initial context: "%s"; number of context words (tokens): %d', prefix, self.n_ctx)
        vis_dim = clip_model.visual.output_dim
        width = clip_model.token_embedding.weight.shape[1]
        hidden = vis_dim // 16
        if hidden < 1:
            raise ValueError(f"CoCoOp's meta-net needs an image feature size >= 16, got {vis_dim}")
        self.meta_net = nn.Sequential(
            OrderedDict(
                [
                    ("linear1", nn.Linear(vis_dim, hidden)),
                    ("relu", nn.ReLU(inplace=True)),
                    ("linear2", nn.Linear(hidden, width)),
                ]
            )
        )
        register_prompt_token_buffers(self, clip_model, prefix, classnames, self.n_ctx)

    def shifted_contexts(self, image_features: torch.Tensor) -> torch.Tensor:
        """Per-image contexts ``[B, n, D]`` = ``ctx + meta_net(image_features)`` (features ``[B, E]``)."""
        bias = self.meta_net(image_features)  # (B, D)
        return self.ctx.unsqueeze(0) + bias.unsqueeze(1)  # (B, n, D)

    def build_prompts(self, ctx: torch.Tensor) -> torch.Tensor:
        """Prompt embeddings ``[C, L, D]`` for one image's context ``[n, D]``."""
        return assemble_prompts(self.token_prefix, ctx.unsqueeze(0), self.token_suffix)


class CoCoOpCLIP(FrozenTowersCLIP):
    """Frozen CLIP towers + the conditional prompt learner; ``forward(image) -> logits [B, C]``."""

    prompt_learner: CoCoOpPromptLearner

    # Upper bound on the prompt sequences of one text-encoder pass: several images' prompts are encoded together
    # when C is small (upstream ran one pass per image); with C >= this bound it is one image per pass.
    max_text_sequences = 1024

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        learner = self.prompt_learner
        scale = self.logit_scale.exp()
        image_features = F.normalize(self.image_encoder(image), dim=-1)  # (B, E)
        contexts = learner.shifted_contexts(image_features)  # (B, n, D)
        per_pass = max(1, self.max_text_sequences // learner.n_cls)  # images whose C prompts share one text pass
        logits = []
        for start in range(0, image.shape[0], per_pass):
            ctx = contexts[start : start + per_pass]  # (b, n, D)
            b = ctx.shape[0]
            prompts = torch.cat([learner.build_prompts(ctx_i) for ctx_i in ctx])  # (b*C, L, D)
            tokenized = learner.tokenized_prompts.repeat(b, 1)  # (b*C, L)
            text_features = F.normalize(self.text_encoder(prompts, tokenized), dim=-1).view(b, learner.n_cls, -1)
            features = image_features[start : start + per_pass]  # (b, E)
            logits.append(scale * torch.einsum("be,bce->bc", features, text_features))
        return torch.cat(logits)  # (B, C)


@TRAINER_REGISTRY.register()
class CoCoOp(CoOpTextPromptTrainer):
    """Conditional Context Optimization (Zhou et al., CVPR 2022)."""

    def build_prompt_learner(self, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        node = self.cfg.TRAINER.COCOOP
        return CoCoOpPromptLearner(classnames, clip_model, n_ctx=node.N_CTX, ctx_init=node.CTX_INIT)

    def build_custom_clip(self, clip_model: nn.Module, prompt_learner: nn.Module) -> nn.Module:
        return CoCoOpCLIP(clip_model, prompt_learner)

    def inference_model(self) -> ConditionalClassifier:
        """The whole model: CoCoOp's prompts depend on each image, so its class features cannot be stored."""
        self.set_model_mode("eval")
        node = self.cfg.TRAINER.COCOOP
        return ConditionalClassifier(self.model, node.N_CTX, node.CTX_INIT, lambda: load_clip_state_dict(self.cfg))
