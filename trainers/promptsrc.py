"""PromptSRC: self-regulating prompts (Khattak et al., ICCV 2023), also the trainer of PromptKD's teachers.

Model: an IVLP-prompted CLIP (``PromptedCLIP``) plus two frozen references computed from the SAME loaded
weights (upstream loads CLIP three times): the zero-shot image encoder
``prompt_learner.ZS_image_encoder`` (a plain visual tower) and ``fixed_embeddings [C, E]``, the mean of the raw
zero-shot text features over the 60 ImageNet templates, computed once at build.

Loss (per batch, computed in fp32 in every precision):
``L = CE(z, y) + KL(softmax(z_zs) || softmax(z)) / (B*C) + λ_t * mean|t̂ - normalize(fixed)| + λ_i * mean|û - û_zs|``.

Gaussian Prompt Aggregation: after every epoch the trainable parameters are added, in fp32, with weight
``w_e ∝ N(e; GPA_MEAN, GPA_STD)`` (e = 1..MAX_EPOCH, normalised) into an accumulator; after the last epoch the
parameters are replaced by it (before the last checkpoint is saved). The accumulator is a persistent buffer
(``gpa.*``), so it is in every checkpoint and a resumed run aggregates exactly like an uninterrupted one
(upstream keeps it in memory and deep-copies the whole model each epoch).

Checkpoint keys (upstream names): ``prompt_learner.ctx``, ``image_encoder.VPT``,
``image_encoder.transformer.resblocks.{i}.VPT_shallow``, ``text_encoder.transformer.resblocks.{i}.VPT_shallow``
(+ ``gpa.*``); PromptKD loads them directly as a teacher.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

import clip
from dassl.config import register_cfg_defaults
from dassl.engine import TRAINER_REGISTRY

from .common import (
    CLIPPromptTrainer,
    PromptedCLIP,
    check_input_size,
    class_text_features,
    freeze_by_name,
    ivlp_design,
    kl_logit_loss,
    load_clip_state_dict,
    log_trainable_parameters,
)
from .templates import IMAGENET_TEMPLATES

__all__ = [
    "GaussianPromptAggregator",
    "PromptSRC",
    "PromptSRCCLIP",
    "compute_fixed_embeddings",
    "gpa_weights",
    "promptsrc_loss",
]

logger = logging.getLogger(__name__)

ZS_ENCODER_MARKER = "ZS_image_encoder"


@register_cfg_defaults
def _add_promptsrc_defaults(cfg: CN) -> None:
    cfg.TRAINER.PROMPTSRC = CN()
    cfg.TRAINER.PROMPTSRC.N_CTX_VISION = 4
    cfg.TRAINER.PROMPTSRC.N_CTX_TEXT = 4
    cfg.TRAINER.PROMPTSRC.CTX_INIT = "a photo of a"
    cfg.TRAINER.PROMPTSRC.PREC = "fp16"
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION = 9
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT = 9
    cfg.TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT = 25
    cfg.TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT = 10
    cfg.TRAINER.PROMPTSRC.GPA_MEAN = 15
    cfg.TRAINER.PROMPTSRC.GPA_STD = 1


def gpa_weights(max_epoch: int, mean: float, std: float) -> list[float]:
    """Normalised Gaussian weights ``w_e`` for epochs ``e = 1..max_epoch`` (PromptSRC paper, Sec. 3.3).

    ``g(e) = exp(-(e - mean)^2 / (2 std^2))`` normalised to sum 1 (the ``1 / (std sqrt(2 pi))`` factor cancels).
    """
    if max_epoch < 1 or std <= 0:
        raise ValueError(f"GPA needs MAX_EPOCH >= 1 and GPA_STD > 0, got {max_epoch} and {std}")
    density = [
        math.exp(-((e - mean) ** 2) / (2 * std * std)) / (std * math.sqrt(2 * math.pi)) for e in range(1, max_epoch + 1)
    ]
    total = sum(density)
    if total == 0.0:
        raise ValueError(f"GPA_MEAN={mean}, GPA_STD={std} put no weight on epochs 1..{max_epoch}")
    return [d / total for d in density]


class GaussianPromptAggregator(nn.Module):
    """fp32 running sum ``Σ_e w_e θ_e`` of the trainable parameters, kept as persistent buffers."""

    def __init__(self, named_params: Sequence[tuple[str, torch.Tensor]], weights: Sequence[float]) -> None:
        super().__init__()
        self.weights = list(weights)
        self.names = [name for name, _ in named_params]
        for name, param in named_params:
            self.register_buffer(self._buffer_name(name), torch.zeros_like(param, dtype=torch.float32))

    @staticmethod
    def _buffer_name(param_name: str) -> str:
        return param_name.replace(".", "__")

    def _pairs(self, model: nn.Module):
        params = dict(model.named_parameters())
        for name in self.names:
            yield params[name], getattr(self, self._buffer_name(name))

    @torch.no_grad()
    def accumulate(self, model: nn.Module, epoch: int) -> None:
        """Add ``w_{epoch+1} * θ`` (``epoch`` is the 0-based epoch that just finished)."""
        weight = self.weights[epoch]
        for param, total in self._pairs(model):
            total.add_(param.detach().float(), alpha=weight)

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Replace the trainable parameters by the aggregate."""
        for param, total in self._pairs(model):
            param.copy_(total.to(param.dtype))


class PromptSRCCLIP(PromptedCLIP):
    """IVLP CLIP + frozen zero-shot image encoder + fixed template-ensemble text features."""

    def __init__(
        self,
        clip_model: nn.Module,
        zs_image_encoder: nn.Module,
        fixed_embeddings: torch.Tensor,
        classnames: Sequence[str],
        n_ctx: int,
        ctx_init: str,
    ) -> None:
        super().__init__(clip_model, classnames, n_ctx, ctx_init)
        self.prompt_learner.ZS_image_encoder = zs_image_encoder  # upstream key prefix
        self.register_buffer("fixed_embeddings", fixed_embeddings.float(), persistent=False)

    def forward(self, image: torch.Tensor, with_regularisers: bool = False):
        """Logits ``[B, C]``; with ``with_regularisers`` a dict of everything the PromptSRC loss needs."""
        text_features = self.encode_text()  # t̂ (C, E)
        image_features = self.encode_image(image)  # û (B, E)
        scale = self.logit_scale.exp()
        logits = scale * image_features @ text_features.t()
        if not with_regularisers:
            return logits
        with torch.no_grad():
            zs_image_features = F.normalize(self.prompt_learner.ZS_image_encoder(image), dim=-1)  # û_zs
            fixed = F.normalize(self.fixed_embeddings, dim=-1)
            zs_logits = scale * zs_image_features @ fixed.t().to(zs_image_features.dtype)
        return {
            "logits": logits,
            "text_features": text_features,
            "image_features": image_features,
            "zs_image_features": zs_image_features,
            "fixed_text_features": fixed,
            "zs_logits": zs_logits,
        }


def promptsrc_loss(
    parts: dict[str, torch.Tensor], label: torch.Tensor, text_weight: float, image_weight: float
) -> dict[str, torch.Tensor]:
    """The four PromptSRC terms and their sum ``loss``, in fp32.

    CE on the logits, L1 of the text and image features to the frozen zero-shot ones (weighted), and
    ``KL(softmax(zero-shot logits) || softmax(logits))`` summed and divided by the number of logits."""
    logits = parts["logits"].float()
    ce = F.cross_entropy(logits, label)
    text = text_weight * F.l1_loss(parts["text_features"].float(), parts["fixed_text_features"].float())
    image = image_weight * F.l1_loss(parts["image_features"].float(), parts["zs_image_features"].float())
    logit = kl_logit_loss(logits, parts["zs_logits"].float(), temperature=1.0)
    return {"loss": ce + logit + text + image, "ce": ce, "logit": logit, "text": text, "image": image}


def compute_fixed_embeddings(
    plain_clip: nn.Module, classnames: Sequence[str], templates: Sequence[str], device: torch.device
) -> torch.Tensor:
    """Mean over templates of the raw (unnormalised) zero-shot text features ``[C, E]`` (upstream order)."""
    plain_clip.to(device).eval()
    return class_text_features(plain_clip, classnames, templates).mean(dim=0)


@TRAINER_REGISTRY.register()
class PromptSRC(CLIPPromptTrainer):
    """PromptSRC trainer: CE + self-regularisation + GPA; registered model ``VLPromptLearner``."""

    IGNORE_PREFIXES = ("gpa.",)

    def check_cfg(self, cfg: CN) -> None:
        super().check_cfg(cfg)
        node = cfg.TRAINER.PROMPTSRC
        if node.PROMPT_DEPTH_TEXT < 1:
            raise ValueError(f"TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT must be >= 1, got {node.PROMPT_DEPTH_TEXT}")
        gpa_weights(cfg.OPTIM.MAX_EPOCH, node.GPA_MEAN, node.GPA_STD)  # validates

    def build_model(self) -> None:
        cfg, node = self.cfg, self.cfg.TRAINER.PROMPTSRC
        classnames = self.dm.dataset.classnames
        state_dict = load_clip_state_dict(cfg)
        plain = clip.build_model(state_dict)
        check_input_size(cfg, plain.visual.input_resolution)
        logger.info(
            "Computing fixed text embeddings (%d templates x %d classes)", len(IMAGENET_TEMPLATES), len(classnames)
        )
        fixed = compute_fixed_embeddings(plain, classnames, IMAGENET_TEMPLATES, self.device)
        zs_image_encoder = plain.visual
        del plain
        design = ivlp_design(node.PROMPT_DEPTH_VISION, node.PROMPT_DEPTH_TEXT, node.N_CTX_VISION, node.N_CTX_TEXT)
        prompted = clip.build_model(state_dict, design)
        del state_dict
        logger.info("Building PromptSRC CLIP (%d classes)", len(classnames))
        model = PromptSRCCLIP(prompted, zs_image_encoder, fixed, classnames, node.N_CTX_TEXT, node.CTX_INIT)
        freeze_by_name(model, frozen_markers=(ZS_ENCODER_MARKER,))
        log_trainable_parameters(model)
        trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        model.gpa = GaussianPromptAggregator(trainable, gpa_weights(cfg.OPTIM.MAX_EPOCH, node.GPA_MEAN, node.GPA_STD))
        self.register_prompt_model(model)

    @property
    def prompt_model(self) -> PromptSRCCLIP:
        """The registered (unwrapped) model."""
        return self._models[self.MODEL_NAME]

    def forward_backward(self, batch: dict) -> dict:
        image, label = self.parse_batch_train(batch)
        node = self.cfg.TRAINER.PROMPTSRC
        with self.autocast():
            parts = self.model(image, with_regularisers=True)
        terms = promptsrc_loss(parts, label, float(node.TEXT_LOSS_WEIGHT), float(node.IMAGE_LOSS_WEIGHT))
        self.model_backward_and_update(terms["loss"])
        if self.update_lr_after_last_batch():
            model = self.prompt_model
            model.gpa.accumulate(model, self.epoch)
            if (self.epoch + 1) == self.max_epoch:
                logger.info(
                    "GPA: replacing the prompts by their Gaussian-weighted average over %d epochs", self.max_epoch
                )
                model.gpa.apply(model)
        return {"loss": terms["loss"].item()}
