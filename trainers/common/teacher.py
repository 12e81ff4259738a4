"""A frozen distillation teacher: image tower, logit scale and class features ``W``, nothing else.

A teacher is CLIP weights plus either a prompt checkpoint (a PromptSRC/IVLP file or run folder, whose prompt
design is read from its keys) or ``none`` (zero-shot CLIP, text prompts ``"<CTX_INIT> <class>."``). Building it
encodes all class prompts through the text tower exactly once, in fp32 and outside autograd, keeps the
L2-normalised ``W [C, E]`` and lets the text tower and prompt learner go: during distillation only the image
tower runs, and evaluation never runs the teacher at all. ``text_tower_runs`` counts the text-tower passes made
while building (one), so callers and tests can check that ``W`` was never recomputed.
"""

from __future__ import annotations

import logging
import os.path as osp
import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode

import clip
from dassl.errors import CheckpointMismatchError, InputFileError
from dassl.utils import load_checkpoint
from dassl.utils.checkpoint_files import resolve_checkpoint_file, strip_module_prefix

from .checkpoint import load_trained_state
from .clip_loading import check_input_size, load_clip_state_dict
from .freezing import is_prompt_parameter
from .prompt_text import prompt_template
from .prompted_clip import PromptedCLIP, ivlp_design
from .zero_shot import ensemble_text_features

__all__ = [
    "TEACHER_IGNORE_PREFIXES",
    "ZERO_SHOT_TEACHER",
    "FrozenTeacher",
    "build_teacher",
    "infer_teacher_design",
    "resolve_teacher_checkpoint",
]

logger = logging.getLogger(__name__)

ZERO_SHOT_TEACHER = "none"
# Keys of teacher files that the teacher does not have: PromptSRC's frozen zero-shot encoder and GPA sums.
TEACHER_IGNORE_PREFIXES = ("prompt_learner.ZS_image_encoder.", "gpa.")
_VISION_DEEP = re.compile(r"^image_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow$")
_TEXT_DEEP = re.compile(r"^text_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow$")
# Folder a PromptSRC run writes its model into (an OUTPUT_DIR may be given instead of the model folder).
_PROMPTSRC_MODEL_FOLDER = "VLPromptLearner"


class FrozenTeacher(nn.Module):
    """Frozen image tower + scalar logit scale + class features ``W`` (a non-persistent buffer).

    Not a trained model: it is never registered with the engine, so it is in no checkpoint.
    """

    def __init__(
        self, image_encoder: nn.Module, logit_scale: float, class_features: torch.Tensor, source: str, runs: int
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder.requires_grad_(False).eval()
        self.logit_scale = float(logit_scale)  # exp(ln s), a constant
        self.register_buffer("class_features", class_features.detach().float(), persistent=False)
        self.source = source
        self.text_tower_runs = runs

    @property
    def num_classes(self) -> int:
        return int(self.class_features.shape[0])

    @property
    def embed_dim(self) -> int:
        return int(self.class_features.shape[1])

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """``s * normalize(g(x)) @ W^T`` ``[B, C]`` in fp32, outside the autograd graph.

        Runs in whatever autocast the caller opened; the result is a normal (non-inference) fp32 tensor.
        """
        with torch.inference_mode():
            features = F.normalize(self.image_encoder(image), dim=-1)
            logits = self.logit_scale * features @ self.class_features.t().to(features.dtype)
        return logits.float().clone()  # inference tensors cannot enter autograd; a clone is a normal tensor


def resolve_teacher_checkpoint(value: str, default: str, key: str) -> str | None:
    """The teacher checkpoint file for config value ``value`` (``key`` names it in errors), or None for ``none``.

    ``""`` means ``default``. A file is used as is; a folder (a PromptSRC model folder or the run's OUTPUT_DIR)
    gives its ``model-best.pth.tar``, pointed-to or latest ``model.pth.tar-N``. Raises FileNotFoundError naming
    what was tried.
    """
    value = str(value).strip()
    if value.lower() == ZERO_SHOT_TEACHER:
        return None
    path = value or default
    if osp.isfile(path):
        return path
    folder = path if osp.isdir(path) else osp.dirname(path)
    if osp.isdir(osp.join(folder, _PROMPTSRC_MODEL_FOLDER)):
        folder = osp.join(folder, _PROMPTSRC_MODEL_FOLDER)
    if osp.isdir(folder):
        try:
            return resolve_checkpoint_file(folder)
        except FileNotFoundError:
            pass
    raise InputFileError(
        f"teacher checkpoint not found at {path!r} ({key}={value!r}). Train a teacher with PromptSRC "
        "(configs/trainers/PromptSRC/vit_l14_c2_ep20_batch8_4+4ctx.yaml) or download the released ones, then set "
        f"{key} to the file or its folder; use {key} none for a zero-shot CLIP teacher."
    )


def infer_teacher_design(
    state_dict: Mapping[str, torch.Tensor], source: str = "teacher checkpoint"
) -> tuple[clip.PromptDesign, int]:
    """``(PromptDesign, n_ctx_text)`` of a PromptSRC/IVLP checkpoint, read from its prompt keys.

    Depth = 1 + the highest block index carrying ``VPT_shallow``; a gap below it is reported by the loader as
    a missing key (never filled with random prompts).
    """
    entries = {strip_module_prefix(key): value for key, value in state_dict.items()}
    keys = set(entries)
    if "prompt_learner.ctx" not in keys:
        raise CheckpointMismatchError(
            f"{source} has no 'prompt_learner.ctx': not a PromptSRC/IVLP teacher. Found keys like "
            f"{sorted(keys)[:5]}; use 'none' as the teacher checkpoint for a zero-shot teacher."
        )
    n_ctx_text = int(entries["prompt_learner.ctx"].shape[-2])
    vision_blocks = [int(m.group(1)) for m in map(_VISION_DEEP.match, keys) if m]
    text_blocks = [int(m.group(1)) for m in map(_TEXT_DEEP.match, keys) if m]
    if "image_encoder.VPT" in keys:
        vision_ctx = int(entries["image_encoder.VPT"].shape[0])
        vision_depth = 1 + max(vision_blocks, default=0)
    elif vision_blocks:
        raise CheckpointMismatchError(
            f"{source} has deep vision prompts but no 'image_encoder.VPT' (missing prompt key)"
        )
    else:
        vision_ctx, vision_depth = 0, 0
    text_depth = 1 + max(text_blocks, default=0)
    return ivlp_design(vision_depth, text_depth, vision_ctx, n_ctx_text), n_ctx_text


def build_teacher(
    cfg: CfgNode,
    clip_weights: str,
    checkpoint: str | None,
    classnames: Sequence[str],
    ctx_init: str,
    device: torch.device | str = "cpu",
) -> FrozenTeacher:
    """Load CLIP ``clip_weights`` (+ the prompt ``checkpoint``, or zero-shot when None), compute ``W`` once.

    The text tower runs once on ``device`` in fp32 under ``no_grad``; only the image tower is kept.
    """
    clip_sd = load_clip_state_dict(cfg, clip_weights)
    if checkpoint is None:
        logger.info("Teacher: zero-shot CLIP %s with template %r", clip_weights, ctx_init)
        clip_model = clip.build_model(clip_sd)
        text_tower, image_encoder, logit_scale = clip_model.transformer, clip_model.visual, clip_model.logit_scale
        template = prompt_template(ctx_init)
        model: nn.Module = clip_model

        def encode() -> torch.Tensor:
            return ensemble_text_features(clip_model, classnames, [template])

        source = f"zero-shot {clip_weights}"
    else:
        file = load_checkpoint(checkpoint)
        state_dict = file.get("state_dict", file)
        design, n_ctx_text = infer_teacher_design(state_dict, checkpoint)
        logger.info(
            "Teacher: %s from %s (design read from the checkpoint: vision depth %d x %d tokens, text depth %d x "
            "%d tokens)",
            clip_weights,
            checkpoint,
            design.vision_depth,
            design.vision_ctx,
            design.text_depth,
            n_ctx_text,
        )
        model = PromptedCLIP(clip.build_model(clip_sd, design), classnames, n_ctx_text, ctx_init)
        load_trained_state(
            model,
            state_dict,
            expected_keys=[name for name, _ in model.named_parameters() if is_prompt_parameter(name)],
            ignore_prefixes=TEACHER_IGNORE_PREFIXES,
            source=f"teacher checkpoint {checkpoint}",
        )
        del file, state_dict
        text_tower, image_encoder, logit_scale = model.text_encoder.transformer, model.image_encoder, model.logit_scale
        encode = model.encode_text
        source = f"{clip_weights} + {checkpoint}"
    del clip_sd
    check_input_size(cfg, image_encoder.input_resolution, "teacher image encoder")
    model.requires_grad_(False)
    model.to(device).eval()
    runs = []
    counter = text_tower.register_forward_hook(lambda *_: runs.append(1))
    try:
        with torch.no_grad():  # once, in fp32 whatever PREC: the classifier of every later evaluation
            class_features = encode().float()  # (C, E), normalised
    finally:
        counter.remove()
    teacher = FrozenTeacher(image_encoder, logit_scale.detach().exp().item(), class_features, source, len(runs))
    logger.info("Teacher text features computed once for %d classes", len(classnames))
    return teacher  # the text tower and prompt learner go with ``model`` here
