"""Prompt designs of a distillation student that classifies with its OWN text tower (CoOp, IVLP, MaPLe).

PromptKD's own student (``vpt``: prompted image tower + projector, classifying with the teacher's stored class
features) lives with the method. The designs here are the named families' prompted CLIPs, built from their own
prompt learners on the student CLIP: ``coop`` (learnable text context, frozen towers), ``ivlp`` (deep prompts in
both towers) and ``maple`` (text prompts coupled into the image tower). Trained by the distillation loss alone,
their class features come from their text tower at every training step. The stored ``class_features`` buffer
[C, E] is the classifier of evaluation and prediction: :meth:`TextPromptedStudent.store_class_features` encodes
the classes once after training (and before every checkpoint is written), so loading a checkpoint and evaluating
runs no text tower at all.

Not exported from ``trainers.common`` itself: it builds on the families' modules (``trainers.coop``,
``trainers.maple``), which import ``trainers.common``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from torch import nn
from yacs.config import CfgNode

import clip
from trainers.coop import CoOpCLIP, CoOpPromptLearner
from trainers.maple import MaPLeCLIP, MultiModalPromptLearner

from .clip_loading import build_clip_model, check_input_size
from .prompted_clip import PromptedCLIP, ivlp_design

__all__ = ["TEXT_STUDENT_DESIGNS", "TextPromptedStudent", "build_text_prompted_student"]

logger = logging.getLogger(__name__)


class TextPromptedStudent(nn.Module):
    """A prompted CLIP (``encode_image(x)``, ``encode_text()``, ``logit_scale``) with stored class features.

    Training mode: logits against ``encode_text()`` (gradients reach the text prompts). Eval mode: logits against
    the ``class_features`` buffer (persistent: in every checkpoint), which :meth:`store_class_features` fills.
    """

    def __init__(self, prompted: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.prompted = prompted
        embed_dim = int(prompted.text_encoder.text_projection.shape[1])
        self.register_buffer("class_features", torch.zeros(num_classes, embed_dim))

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.prompted.logit_scale

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.prompted.encode_image(image)

    def encode_text(self) -> torch.Tensor:
        """Fresh class features ``[C, E]`` from the student's text tower (normalised)."""
        return self.prompted.encode_text()

    @torch.no_grad()
    def store_class_features(self) -> None:
        """Encode the classes once (fp32, no autocast) into ``class_features``."""
        device = self.class_features.device
        with torch.autocast(device_type=device.type, enabled=False):
            self.class_features.copy_(self.encode_text().float())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.encode_image(image)
        classes = self.encode_text() if self.training else self.class_features
        return self.logit_scale.exp() * features @ classes.t().to(features.dtype)


def _coop(cfg: CfgNode, classnames: Sequence[str]) -> nn.Module:
    node = cfg.TRAINER.PROMPTKD
    clip_model = build_clip_model(cfg, clip.PromptDesign())
    learner = CoOpPromptLearner(classnames, clip_model, n_ctx=node.N_CTX_TEXT, ctx_init=node.CTX_INIT)
    return CoOpCLIP(clip_model, learner)


def _ivlp(cfg: CfgNode, classnames: Sequence[str]) -> nn.Module:
    node = cfg.TRAINER.PROMPTKD
    design = ivlp_design(node.PROMPT_DEPTH_VISION, node.PROMPT_DEPTH_TEXT, node.N_CTX_VISION, node.N_CTX_TEXT)
    return PromptedCLIP(build_clip_model(cfg, design), classnames, node.N_CTX_TEXT, node.CTX_INIT)


def _maple(cfg: CfgNode, classnames: Sequence[str]) -> nn.Module:
    node = cfg.TRAINER.PROMPTKD
    clip_model = build_clip_model(cfg, clip.PromptDesign(variant="maple", maple_length=node.N_CTX_TEXT))
    learner = MultiModalPromptLearner(classnames, clip_model, node.N_CTX_TEXT, node.CTX_INIT, node.PROMPT_DEPTH_TEXT)
    return MaPLeCLIP(clip_model, learner)


# Design name -> builder of the family's prompted CLIP from the PromptKD keys (N_CTX_*, PROMPT_DEPTH_*, CTX_INIT).
TEXT_STUDENT_DESIGNS: dict[str, Callable[[CfgNode, Sequence[str]], nn.Module]] = {
    "coop": _coop,
    "ivlp": _ivlp,
    "maple": _maple,
}


def build_text_prompted_student(design: str, cfg: CfgNode, classnames: Sequence[str]) -> TextPromptedStudent:
    """The ``design`` family's prompted CLIP on ``MODEL.BACKBONE.NAME`` for ``classnames``, as a student."""
    if design not in TEXT_STUDENT_DESIGNS:
        raise ValueError(f"unknown text-prompted student design {design!r}; allowed: {list(TEXT_STUDENT_DESIGNS)}")
    prompted = TEXT_STUDENT_DESIGNS[design](cfg, classnames)
    check_input_size(cfg, prompted.image_encoder.input_resolution, "student image encoder")
    logger.info("Student design %s: its own text tower gives the class features (stored after training)", design)
    return TextPromptedStudent(prompted, len(classnames))
