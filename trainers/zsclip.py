"""Zero-shot CLIP baselines (as in CoOp's repository): no training, text classifiers built from templates.

- ``ZeroshotCLIP``: one hand-written template per dataset (``CUSTOM_TEMPLATES[DATASET.NAME]``).
- ``ZeroshotCLIP2``: prompt ensemble over ``IMAGENET_TEMPLATES_SELECT`` plus the dataset's template (except on
  ImageNet); each template's features are normalised, averaged over templates and normalised again.

Only ``--eval-only`` is meaningful (the scripts pass it). Backbone and input settings come from a CoOp YAML, so
the precision is ``TRAINER.COOP.PREC`` (upstream ran the model in fp16); on CPU it is fp32 math. The template
lists are immutable and copied per run (upstream ZeroshotCLIP2 appended to the shared module-level list).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

import clip
from dassl.engine import TRAINER_REGISTRY, TrainerX

from .common import build_clip_model, check_input_size, ensemble_text_features
from .common.inference import FixedClassifier
from .templates import IMAGENET_TEMPLATES_SELECT, custom_template

__all__ = ["ZeroshotCLIP", "ZeroshotCLIP2", "ensemble_text_features"]

logger = logging.getLogger(__name__)


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(TrainerX):
    """CLIP with the dataset's hand-written template as a fixed linear classifier."""

    def templates(self) -> list[str]:
        return [custom_template(self.cfg.DATASET.NAME)]

    def get_precision_name(self) -> str:
        """The scripts take backbone/input settings from CoOp YAMLs; precision follows ``TRAINER.COOP.PREC``."""
        coop = self.cfg.TRAINER.get("COOP")
        return coop.PREC if coop is not None and "PREC" in coop else "fp32"

    def build_model(self) -> None:
        cfg = self.cfg
        clip_model = build_clip_model(cfg, clip.PromptDesign())
        check_input_size(cfg, clip_model.visual.input_resolution)
        clip_model.requires_grad_(False)
        clip_model.to(self.device).eval()
        templates = self.templates()
        logger.info("Zero-shot classifier from %d template(s): %s", len(templates), templates)
        with self.autocast():
            text_features = ensemble_text_features(clip_model, self.dm.dataset.classnames, templates)
        self.text_features = text_features.float()  # (C, E)
        self.clip_model = clip_model

    @torch.no_grad()
    def model_inference(self, image: torch.Tensor) -> torch.Tensor:
        image_features = F.normalize(self.clip_model.encode_image(image).float(), dim=-1)  # (B, E)
        return self.clip_model.logit_scale.exp().float() * image_features @ self.text_features.t()

    def inference_model(self) -> FixedClassifier:
        """The zero-shot classifier: the template features computed at build, the plain image tower."""
        return FixedClassifier(self.clip_model.visual, self.text_features, self.clip_model.logit_scale)

    def train(self) -> None:
        raise RuntimeError(
            f"{self.cfg.TRAINER.NAME} has nothing to train: run train.py with --eval-only "
            "(scripts/zsclip/zeroshot.sh does)."
        )


@TRAINER_REGISTRY.register()
class ZeroshotCLIP2(ZeroshotCLIP):
    """Prompt ensembling over the 7 selected ImageNet templates (+ the dataset's template off ImageNet)."""

    def templates(self) -> list[str]:
        templates = list(IMAGENET_TEMPLATES_SELECT)
        if self.cfg.DATASET.NAME != "ImageNet":
            templates.append(custom_template(self.cfg.DATASET.NAME))
        return templates
