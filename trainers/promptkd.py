"""PromptKD: unsupervised prompt distillation (Li et al., CVPR 2024; methods.md §4).

A frozen teacher (a PromptSRC-prompted CLIP, default ViT-L/14) provides the class text features ``W`` ONCE:
after its checkpoint is loaded, ``W = normalize(text_encoder(prompts))`` for all C classes is computed under
``no_grad`` in eval mode, stored in the student as the persistent buffer ``text_features`` (so it is in every
student checkpoint), and the teacher's text tower is released (decision 6; upstream recomputes it every step,
§5 #1). During training the teacher's image tower runs under ``torch.inference_mode()`` with autocast on the same
augmented batch as the student. Evaluation never touches the teacher.

Student: the visual tower of ``MODEL.BACKBONE.NAME`` (default ViT-B/16) with deep visual prompts
(``TRAINER.PROMPTKD.PROMPT_DEPTH_VISION`` / ``N_CTX_VISION``) and the projector ``VPT_image_trans``
(``StudentProjector``, upstream key names). Logits ``z = s * normalize(P(f(x))) @ W^T``.

Loss (§4.6; labels are never read): ``KD_WEIGHT * T^2/(B*C) * Σ p_t (log p_t - log p_s)``.

Teacher checkpoint (``TRAINER.PROMPTKD.TEACHER_CKPT``): empty = upstream layout
(``teacher_model/<DATASET.NAME>/VLPromptLearner/model-best.pth.tar``; cross:
``teacher_model/ImageNet-xd/VLPromptLearner_large/model.pth.tar-20``), a file, or a folder (``model-best.pth.tar``
or the latest ``model.pth.tar-N``); ``none`` = zero-shot CLIP teacher with the ``CTX_INIT`` template. The teacher
design (depths, context lengths) is read from the checkpoint keys (decision 10). Without a teacher checkpoint the
trainer still builds the student (for ``--eval-only --model-dir``); training then stops with a clear error.

``TRAINER.MODAL base2novel``: trains on all classes' training images; the final evaluation reports the base
classes (first ``ceil(C/2)``) and the novel classes of the test split plus their harmonic mean (log blocks,
``results.jsonl`` records with ``classes`` base/new and a ``summary`` record). ``cross``: all classes.
Model selection defaults to the last epoch (decision 4); upstream's selection on base-class TEST images needs
``TEST.FINAL_MODEL best_val`` together with ``TRAINER.PROMPTKD.SELECT_ON_TEST True``.
"""

from __future__ import annotations

import logging
import os.path as osp

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

import clip
from dassl.config import register_cfg_defaults
from dassl.engine import TRAINER_REGISTRY
from dassl.errors import CheckpointMismatchError, InputFileError

from .common import (
    VALID_MODALS,
    CLIPPromptTrainer,
    FrozenTeacher,
    base_novel_subsets,
    build_teacher,
    check_input_size,
    evaluate_class_subsets,
    freeze_by_name,
    ivlp_design,
    kl_logit_loss,
    load_clip_state_dict,
    log_trainable_parameters,
    report_base_novel,
    resolve_teacher_checkpoint,
)

__all__ = ["PromptKD", "PromptKDStudent", "StudentProjector", "default_teacher_checkpoint"]

logger = logging.getLogger(__name__)


@register_cfg_defaults
def _add_promptkd_defaults(cfg: CN) -> None:
    cfg.TRAINER.PROMPTKD = CN()
    cfg.TRAINER.PROMPTKD.N_CTX_VISION = 4
    cfg.TRAINER.PROMPTKD.N_CTX_TEXT = 4
    cfg.TRAINER.PROMPTKD.CTX_INIT = "a photo of a"
    cfg.TRAINER.PROMPTKD.PREC = "fp16"
    cfg.TRAINER.PROMPTKD.PROMPT_DEPTH_VISION = 9
    cfg.TRAINER.PROMPTKD.PROMPT_DEPTH_TEXT = 9
    cfg.TRAINER.PROMPTKD.PROJECT_LAYER = 2  # accepted for YAML compatibility; only 2 is implemented
    cfg.TRAINER.PROMPTKD.CE_WEIGHT = 0.0  # accepted for YAML compatibility; labels are never used
    cfg.TRAINER.PROMPTKD.KD_WEIGHT = 1.0
    cfg.TRAINER.PROMPTKD.TEMPERATURE = 1.0
    cfg.TRAINER.PROMPTKD.TEACHER_NAME = "ViT-L/14"  # upstream's default has a typo ("ViT/L-14")
    cfg.TRAINER.PROMPTKD.TEACHER_CLIP = ""  # explicit teacher CLIP weights file (overrides TEACHER_NAME)
    cfg.TRAINER.PROMPTKD.TEACHER_CKPT = ""  # "" = upstream layout; a file or folder; "none" = zero-shot teacher
    cfg.TRAINER.PROMPTKD.SELECT_ON_TEST = False  # allow best_val selection on test images (upstream behaviour)


class StudentProjector(nn.Module):
    """Upstream's ``Feature_Trans_Module_two_layer``: 1x1 conv -> BN -> ReLU -> 1x1 conv (keys ``conv1.{0,1,3}``).

    Maps student image features ``[B, in_dim]`` into the teacher's embedding space ``[B, out_dim]``.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_dim, out_dim, 1),
            nn.BatchNorm2d(out_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_dim, out_dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(x[:, :, None, None]).flatten(1)  # (B, in) -> (B, in, 1, 1) -> (B, out)


class PromptKDStudent(nn.Module):
    """Prompted student visual tower + projector, classifying with the stored teacher text features.

    ``text_features [C, E_t]`` is a persistent buffer. When the teacher dimension is not known at build time
    (no teacher available, evaluation only), the projector and buffer are created from the loaded checkpoint
    by :meth:`materialize`.
    """

    def __init__(self, image_encoder: nn.Module, logit_scale: torch.Tensor, num_classes: int) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.logit_scale = nn.Parameter(logit_scale.detach().clone().float().reshape(()), requires_grad=False)
        self.num_classes = num_classes
        self.VPT_image_trans: StudentProjector | None = None
        self.register_buffer("text_features", None)

    @property
    def materialized(self) -> bool:
        return self.VPT_image_trans is not None

    def materialize(self, teacher_dim: int, text_features: torch.Tensor | None = None) -> None:
        """Create the projector ``in_dim -> teacher_dim`` and the text-feature buffer."""
        device = self.logit_scale.device
        self.VPT_image_trans = StudentProjector(self.image_encoder.output_dim, teacher_dim).to(device)
        if text_features is None:
            text_features = torch.zeros(self.num_classes, teacher_dim)
        if tuple(text_features.shape) != (self.num_classes, teacher_dim):
            raise ValueError(
                f"text features have shape {tuple(text_features.shape)}, expected ({self.num_classes}, {teacher_dim})"
            )
        self.text_features = text_features.detach().float().to(device)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """``normalize(P(f(x)))`` ``[B, E_t]``."""
        if not self.materialized:
            raise RuntimeError("The PromptKD student has no projector/text features yet (no teacher, no checkpoint)")
        return F.normalize(self.VPT_image_trans(self.image_encoder(image)), dim=-1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits over all classes ``[B, C]``."""
        features = self.encode_image(image)
        return self.logit_scale.exp() * features @ self.text_features.t().to(features.dtype)


def default_teacher_checkpoint(cfg: CN) -> str:
    """Upstream's teacher location, relative to the working directory."""
    if cfg.TRAINER.MODAL == "cross":
        return osp.join("teacher_model", "ImageNet-xd", "VLPromptLearner_large", "model.pth.tar-20")
    return osp.join("teacher_model", cfg.DATASET.NAME, "VLPromptLearner", "model-best.pth.tar")


@TRAINER_REGISTRY.register()
class PromptKD(CLIPPromptTrainer):
    """Distil a frozen teacher's class distribution into a prompted student on unlabeled images."""

    def check_cfg(self, cfg: CN) -> None:
        super().check_cfg(cfg)
        node = cfg.TRAINER.PROMPTKD
        if cfg.TRAINER.MODAL not in VALID_MODALS:
            raise ValueError(f"TRAINER.MODAL is {cfg.TRAINER.MODAL!r}; allowed: {list(VALID_MODALS)}")
        if node.PROJECT_LAYER != 2:
            raise ValueError(f"TRAINER.PROMPTKD.PROJECT_LAYER={node.PROJECT_LAYER}: only the 2-layer projector exists")
        if float(node.CE_WEIGHT) != 0.0:
            raise ValueError(
                f"TRAINER.PROMPTKD.CE_WEIGHT={node.CE_WEIGHT}: PromptKD never uses labels (upstream ignores the key); "
                "set it to 0.0"
            )
        if float(node.TEMPERATURE) <= 0:
            raise ValueError(f"TRAINER.PROMPTKD.TEMPERATURE must be > 0, got {node.TEMPERATURE}")
        if cfg.TRAINER.MODAL == "base2novel" and cfg.DATASET.SUBSAMPLE_CLASSES != "all":
            raise ValueError(
                f"PromptKD base2novel distils on all classes and evaluates base and novel itself; "
                f"DATASET.SUBSAMPLE_CLASSES must be 'all', got {cfg.DATASET.SUBSAMPLE_CLASSES!r}"
            )
        selects_on_test = cfg.TRAINER.MODAL == "base2novel" or cfg.DATASET.get("VAL_SOURCE", "test") == "test"
        if cfg.TEST.FINAL_MODEL == "best_val" and not cfg.TEST.NO_TEST and selects_on_test and not node.SELECT_ON_TEST:
            raise ValueError(
                "TEST.FINAL_MODEL best_val would pick the PromptKD checkpoint by its accuracy on TEST images "
                "(upstream behaviour, optimistic). Use TEST.FINAL_MODEL last_step (default), or set "
                "TRAINER.PROMPTKD.SELECT_ON_TEST True to reproduce upstream's selection explicitly."
            )

    # ------------------------------------------------------------------ data
    def parse_batch_train(self, batch: dict) -> torch.Tensor:
        return batch["img"].to(self.device)  # labels are never used

    # ------------------------------------------------------------------ model
    def build_model(self) -> None:
        cfg, node = self.cfg, self.cfg.TRAINER.PROMPTKD
        classnames = self.dm.dataset.classnames
        student_sd = load_clip_state_dict(cfg)
        design = ivlp_design(node.PROMPT_DEPTH_VISION, 0, node.N_CTX_VISION, 0)
        visual = clip.build_visual(student_sd, design)
        check_input_size(cfg, visual.input_resolution, "student image encoder")
        student = PromptKDStudent(visual, student_sd["logit_scale"], len(classnames))
        del student_sd
        student.to(self.device)

        self.teachers: list[FrozenTeacher] = []
        self.teacher_missing: str | None = None
        try:
            checkpoint = resolve_teacher_checkpoint(
                node.TEACHER_CKPT, default_teacher_checkpoint(cfg), "TRAINER.PROMPTKD.TEACHER_CKPT"
            )
        except FileNotFoundError as error:
            self.teacher_missing = str(error)
            logger.warning(
                "No PromptKD teacher: %s -- building the student only (evaluation with a student checkpoint works; "
                "training will stop).",
                error,
            )
        else:
            weights = node.TEACHER_CLIP or node.TEACHER_NAME
            teacher = build_teacher(cfg, weights, checkpoint, classnames, node.CTX_INIT, self.device)
            self.teachers = [teacher]
            student.materialize(teacher.embed_dim, teacher.class_features)
            logger.info("Student projector: %d -> %d", visual.output_dim, teacher.embed_dim)

        freeze_by_name(student)
        log_trainable_parameters(student)
        self.register_prompt_model(student)

    def prepare_loaded_state(self, model: nn.Module, state_dict: dict) -> None:
        """Evaluation without a teacher: size the projector and feature buffer from the student checkpoint."""
        if model.materialized:
            return
        features = state_dict.get("text_features", state_dict.get("module.text_features"))
        if features is None:
            self.expected_load_keys(set(), state_dict)  # raises: no teacher and no stored features
            raise AssertionError("unreachable")
        model.materialize(int(features.shape[1]))
        model.VPT_image_trans.requires_grad_(True)

    def expected_load_keys(self, expected: set[str], state_dict: dict) -> set[str]:
        """Upstream student files lack the stored text features; the teacher's (computed at build) are used then."""
        if any(key.split("module.")[-1] == "text_features" for key in state_dict):
            return expected
        if not self.teachers:
            raise CheckpointMismatchError(
                "The student checkpoint has no 'text_features' (an upstream PromptKD file, which never stored the "
                "teacher's class features) and no teacher is available to compute them: set "
                "TRAINER.PROMPTKD.TEACHER_CKPT / TEACHER_CLIP to the teacher used for distillation."
            )
        logger.info("Checkpoint has no stored text features (upstream file): keeping the teacher's")
        return expected - {"text_features"}

    @property
    def prompt_model(self) -> PromptKDStudent:
        return self._models[self.MODEL_NAME]

    # ------------------------------------------------------------------ training
    def before_train(self) -> None:
        if not self.teachers:
            raise InputFileError(f"PromptKD training needs a teacher. {self.teacher_missing}")
        if self.cfg.TEST.FINAL_MODEL == "best_val" and not self.cfg.TEST.NO_TEST:
            data = "base-class TEST" if self.cfg.TRAINER.MODAL == "base2novel" else "val"
            logger.warning(
                "Model selection on %s images (TRAINER.PROMPTKD.SELECT_ON_TEST True, upstream behaviour): the "
                "reported accuracy is optimistic",
                data,
            )
        super().before_train()

    def teacher_logits(self, image: torch.Tensor) -> torch.Tensor:
        """Teacher logits ``s_t * normalize(g(x)) @ W^T`` in fp32, outside the autograd graph."""
        with self.autocast():
            return self.teachers[0].logits(image)

    def forward_backward(self, image: torch.Tensor | dict) -> dict:
        image = self.parse_batch_train(image)
        node = self.cfg.TRAINER.PROMPTKD
        teacher_logits = self.teacher_logits(image)
        with self.autocast():
            student_logits = self.model(image)
        loss = float(node.KD_WEIGHT) * kl_logit_loss(student_logits, teacher_logits, float(node.TEMPERATURE))
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item()}

    # ------------------------------------------------------------------ evaluation
    def test(self, split: str | None = None):
        """``base2novel``: base and novel classes of the test split scored by logit columns, then the HM block.

        ``split`` ``val`` (per-epoch selection, upstream): the base classes of the test split.
        """
        if self.cfg.TRAINER.MODAL != "base2novel":
            return super().test(split)
        split = split or self.cfg.TEST.SPLIT
        if split == "train":
            raise ValueError("PromptKD base2novel evaluates the base/novel test images; split 'train' has no classes")
        subsets = base_novel_subsets(self.num_classes)
        if split == "val":
            return evaluate_class_subsets(self, {"base": subsets["base"]}, split="val")["base"]
        accuracy = evaluate_class_subsets(self, subsets)
        report_base_novel(self, accuracy["base"], accuracy["new"])
        return accuracy["new"]
