"""IVLP: independent vision-language deep prompts trained with cross-entropy.

CLIP with the ``ivlp`` design (deep prompts ``VPT`` / ``VPT_shallow`` in both towers) and a learnable
text context (``VLPromptLearner``). Logits ``s * normalize(f_img) @ normalize(f_txt)^T``; loss CE.
Registered model ``VLPromptLearner``; checkpoints hold the trainable prompts only.
"""

from __future__ import annotations

import logging

from yacs.config import CfgNode as CN

from dassl.config import register_cfg_defaults
from dassl.engine import TRAINER_REGISTRY

from .common import (
    CLIPPromptTrainer,
    PromptedCLIP,
    build_clip_model,
    check_input_size,
    freeze_by_name,
    ivlp_design,
    log_trainable_parameters,
)

__all__ = ["IVLP"]

logger = logging.getLogger(__name__)


@register_cfg_defaults
def _add_ivlp_defaults(cfg: CN) -> None:
    cfg.TRAINER.IVLP = CN()
    cfg.TRAINER.IVLP.N_CTX_VISION = 2
    cfg.TRAINER.IVLP.N_CTX_TEXT = 2
    cfg.TRAINER.IVLP.CTX_INIT = "a photo of a"
    cfg.TRAINER.IVLP.PREC = "fp16"
    cfg.TRAINER.IVLP.PROMPT_DEPTH_VISION = 9
    cfg.TRAINER.IVLP.PROMPT_DEPTH_TEXT = 9


@TRAINER_REGISTRY.register()
class IVLP(CLIPPromptTrainer):
    """Deep vision-language prompt tuning with labels (base classes, few shots)."""

    def check_cfg(self, cfg: CN) -> None:
        super().check_cfg(cfg)
        if cfg.TRAINER.IVLP.PROMPT_DEPTH_TEXT < 1:
            raise ValueError(
                f"TRAINER.IVLP.PROMPT_DEPTH_TEXT must be >= 1 (layer-0 text context), got "
                f"{cfg.TRAINER.IVLP.PROMPT_DEPTH_TEXT}"
            )

    def build_model(self) -> None:
        cfg, node = self.cfg, self.cfg.TRAINER.IVLP
        classnames = self.dm.dataset.classnames
        design = ivlp_design(node.PROMPT_DEPTH_VISION, node.PROMPT_DEPTH_TEXT, node.N_CTX_VISION, node.N_CTX_TEXT)
        clip_model = build_clip_model(cfg, design)
        check_input_size(cfg, clip_model.visual.input_resolution)
        logger.info("Building IVLP CLIP (%d classes)", len(classnames))
        model = PromptedCLIP(clip_model, classnames, node.N_CTX_TEXT, node.CTX_INIT)
        freeze_by_name(model)
        log_trainable_parameters(model)
        self.register_prompt_model(model)
