"""PromptKD: unsupervised prompt distillation (Li et al., CVPR 2024).

A frozen teacher -- a PromptSRC-prompted CLIP (default ViT-L/14), a zero-shot CLIP, or a weighted ensemble of
such teachers -- gives the class features ``W`` once (``trainers.common.teacher``); a prompted student learns
from the teacher's class distribution on unlabeled images and nothing else (labels are never read):

    loss = KD_WEIGHT * T^2 / (B*C) * sum_bc q (log q - log softmax(z_s / T)),   q = sum_k w_k softmax(z_k / T)

with ``z_k = s_k * normalize(g_k(x)) @ W_k^T`` the logits of teacher ``k`` on the same augmented batch (one
teacher: ``q`` is its softened distribution, the paper's loss). Evaluation never runs a teacher.

Student (``TRAINER.PROMPTKD.STUDENT_DESIGN``): ``vpt`` (the paper's) is the image tower of
``MODEL.BACKBONE.NAME`` with deep visual prompts (``PROMPT_DEPTH_VISION`` / ``N_CTX_VISION``) and the projector
``VPT_image_trans`` into the first teacher's space, classifying with that teacher's ``W`` (stored in the student as
``text_features``, so in every checkpoint): ``z_s = s * normalize(P(f(x))) @ W_1^T``. ``coop`` / ``ivlp`` /
``maple`` are those families' prompted CLIPs on the student backbone, classifying with their own (trained) text
tower; their class features are stored after training, so evaluation and prediction run no text tower either
(``trainers.common.students``).

Teachers: ``TEACHER_CKPT`` (empty = upstream's ``teacher_model/<DATASET.NAME>/VLPromptLearner/model-best.pth.tar``;
cross-dataset ``teacher_model/ImageNet-xd/VLPromptLearner_large/model.pth.tar-20``; a file; a run folder; ``none``
= zero-shot with the ``CTX_INIT`` template) on ``TEACHER_CLIP`` or ``TEACHER_NAME``. An ensemble: ``TEACHERS``
(list of such checkpoints), ``TEACHER_CLIPS`` (one CLIP per teacher; empty = ``TEACHER_CLIP``/``TEACHER_NAME``
for all) and ``TEACHER_WEIGHTS`` (empty = equal). A teacher's prompt design is read from its checkpoint keys.
Without a teacher file the trainer still builds the student (for ``--eval-only --model-dir``); training stops.

``TEACHER_CACHE DIR``: the first run stores each teacher's image features of every training view under ``DIR``
(``TEACHER_CACHE_DTYPE`` fp32, or fp16 for half the storage); a later run with the same views (same teachers,
dataset, seed, transforms, loader, precision and student initialisation; a longer run reads the shorter one's
epochs) reads them and skips the teachers' image towers, with the losses of an uncached run
(``trainers.common.teacher_cache``). The end of training logs ``teacher cache: N hits, M misses (X MiB in DIR)``.
``TEACHER_AUTOCAST_WEIGHTS`` (bf16/fp16 runs) keeps the teachers' matmul weights in the autocast dtype: no per-step
casts, the same losses. ``TRAIN.COMPILE`` compiles the student's training forward and the teachers' image towers.

``TRAINER.MODAL base2novel``: distils on all classes' training images; the final evaluation scores the base
classes (first ``ceil(C/2)``) and the novel classes of the test split and their harmonic mean
(``trainers.common.class_subsets``). ``cross``: all classes. Model selection is the last epoch by default;
upstream's selection on base-class test images needs ``TEST.FINAL_MODEL best_val`` and
``TRAINER.PROMPTKD.SELECT_ON_TEST True``.
"""

from __future__ import annotations

import contextlib
import logging
import os.path as osp
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

import clip
from dassl.config import register_cfg_defaults
from dassl.engine import TRAINER_REGISTRY
from dassl.engine.compilation import compiled_forward
from dassl.engine.evaluation import no_test_images
from dassl.engine.rng_state import preserved_rng_state
from dassl.engine.run_classnames import CLASSNAMES_FILE, read_classnames_file
from dassl.errors import CheckpointMismatchError, ConfigError, InputFileError
from dassl.utils import folder_creation_problem
from dassl.utils.checkpoint_files import strip_module_prefix
from dassl.utils.process_group import get_rank, get_world_size

from .common import (
    CACHE_DTYPES,
    VALID_MODALS,
    CLIPPromptTrainer,
    TeacherCache,
    TeacherEnsemble,
    TeacherView,
    base_novel_subsets,
    build_teacher,
    check_input_size,
    check_same_classes,
    evaluate_class_subsets,
    freeze_by_name,
    ivlp_design,
    kl_target_loss,
    load_clip_state_dict,
    log_trainable_parameters,
    normalized_weights,
    report_base_novel,
    resolve_teacher_checkpoint,
    tensor_fingerprint,
)
from .common.inference import FixedClassifier, fixed_classifier
from .common.students import TEXT_STUDENT_DESIGNS, TextPromptedStudent, build_text_prompted_student

__all__ = ["STUDENT_DESIGNS", "PromptKD", "PromptKDStudent", "StudentProjector", "default_teacher_checkpoint"]

logger = logging.getLogger(__name__)

STUDENT_DESIGNS = ("vpt", *TEXT_STUDENT_DESIGNS)


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
    cfg.TRAINER.PROMPTKD.TEACHERS = []  # ensemble: checkpoints as TEACHER_CKPT takes them; empty = TEACHER_CKPT
    cfg.TRAINER.PROMPTKD.TEACHER_CLIPS = []  # one CLIP per teacher; empty = TEACHER_CLIP or TEACHER_NAME for all
    cfg.TRAINER.PROMPTKD.TEACHER_WEIGHTS = []  # mixture weights, >= 0, not all 0; empty = equal
    cfg.TRAINER.PROMPTKD.STUDENT_DESIGN = "vpt"  # vpt (the paper's) | coop | ivlp | maple
    cfg.TRAINER.PROMPTKD.SELECT_ON_TEST = False  # allow best_val selection on test images (upstream behaviour)
    cfg.TRAINER.PROMPTKD.TEACHER_CACHE = ""  # folder of stored teacher features of training views; "" = off
    cfg.TRAINER.PROMPTKD.TEACHER_CACHE_DTYPE = "fp32"  # fp32 (same losses as no cache) | fp16 (half the storage)
    cfg.TRAINER.PROMPTKD.TEACHER_AUTOCAST_WEIGHTS = False  # bf16/fp16 runs: teacher matmul weights in that dtype


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


def teacher_specs(cfg: CN) -> list[tuple[str, str, str]]:
    """``(clip weights, checkpoint value, config key)`` per teacher, from the single or the ensemble keys."""
    node = cfg.TRAINER.PROMPTKD
    default_clip = node.TEACHER_CLIP or node.TEACHER_NAME
    if not node.TEACHERS:
        return [(default_clip, node.TEACHER_CKPT, "TRAINER.PROMPTKD.TEACHER_CKPT")]
    clips = list(node.TEACHER_CLIPS) or [default_clip] * len(node.TEACHERS)
    return [
        (str(weights), str(checkpoint), f"TRAINER.PROMPTKD.TEACHERS[{i}]")
        for i, (weights, checkpoint) in enumerate(zip(clips, node.TEACHERS, strict=True))
    ]


def check_teacher_keys(node: CN) -> None:
    """One-line errors for inconsistent ``TEACHERS`` / ``TEACHER_CLIPS`` / ``TEACHER_WEIGHTS``."""
    teachers, clips, weights = list(node.TEACHERS), list(node.TEACHER_CLIPS), list(node.TEACHER_WEIGHTS)
    if not teachers:
        if clips or weights:
            raise ValueError(
                "TRAINER.PROMPTKD.TEACHER_CLIPS / TEACHER_WEIGHTS describe an ensemble but TRAINER.PROMPTKD.TEACHERS "
                "is empty; list the teacher checkpoints in TEACHERS (or use TEACHER_CKPT / TEACHER_CLIP alone)"
            )
        return
    if str(node.TEACHER_CKPT).strip():
        raise ValueError(
            f"TRAINER.PROMPTKD.TEACHER_CKPT={node.TEACHER_CKPT!r} and TRAINER.PROMPTKD.TEACHERS are both set; "
            "give the teachers in TEACHERS only"
        )
    if clips and len(clips) != len(teachers):
        raise ValueError(
            f"TRAINER.PROMPTKD.TEACHER_CLIPS has {len(clips)} entries but TEACHERS has {len(teachers)}; give one CLIP "
            "per teacher, or leave TEACHER_CLIPS empty to use TEACHER_CLIP / TEACHER_NAME for all"
        )
    normalized_weights(weights, len(teachers), "TRAINER.PROMPTKD.TEACHER_WEIGHTS")


def check_teacher_cache_keys(node: CN) -> None:
    """One-line errors for ``TEACHER_CACHE`` / ``TEACHER_CACHE_DTYPE`` (before anything is written)."""
    if node.TEACHER_CACHE_DTYPE not in CACHE_DTYPES:
        raise ConfigError(
            f"TRAINER.PROMPTKD.TEACHER_CACHE_DTYPE is {node.TEACHER_CACHE_DTYPE!r}",
            "config",
            f"use one of {list(CACHE_DTYPES)} (fp32 gives the losses of an uncached run, fp16 half the storage)",
        )
    folder = str(node.TEACHER_CACHE).strip()
    problem = folder_creation_problem(folder) if folder else None
    if problem is not None:  # found now, not at the first shard written after an epoch of training
        kind, where = problem
        what = "is a file" if kind == "not a folder" else f"cannot be used ({kind}: {where})"
        raise ConfigError(
            f"TRAINER.PROMPTKD.TEACHER_CACHE={folder!r} {what}",
            "config",
            "give a folder you can write (created when missing), or '' to run without the teacher cache",
        )


def teacher_cache_settings(trainer: PromptKD) -> dict:
    """Everything besides the teachers' weights that decides the training views or the teachers' answers (the
    compiler and CUDA's TF32 math change the features in their last bits)."""
    cfg = trainer.cfg
    return {
        "seed": cfg.SEED,
        "input": cfg.INPUT.dump(),
        "dataloader": cfg.DATALOADER.dump(),
        "dataset": cfg.DATASET.dump(),
        "precision": trainer.get_precision_name(),
        "device": trainer.device.type,
        "fp32_math": fp32_math_settings(trainer.device),
        "compile": [cfg.TRAIN.COMPILE, cfg.TRAIN.COMPILE_BACKEND] if cfg.TRAIN.COMPILE else "",
        "world_size": get_world_size(),
        "rank": get_rank(),  # each rank sees its own share of the views: per-rank caches under DDP
        "dtype": cfg.TRAINER.PROMPTKD.TEACHER_CACHE_DTYPE,
        "torch": torch.__version__,
        "train_items": [(item.impath, item.label) for item in trainer.train_loader_x.dataset.data_source],
    }


def fp32_math_settings(device: torch.device) -> list | None:
    """How CUDA computes fp32 matmuls and convolutions (TF32 or full fp32, ``TRAIN.TF32``), which changes a
    teacher's features; None on other devices, which have one fp32 math."""
    if device.type != "cuda":
        return None
    return [torch.get_float32_matmul_precision(), bool(torch.backends.cudnn.allow_tf32)]


def teacher_tensors(teachers: TeacherEnsemble) -> Iterator[tuple[str, torch.Tensor]]:
    """The named tensors that decide the teachers' features: image towers, logit scales, class features."""
    for k, teacher in enumerate(teachers):
        for name, tensor in teacher.image_encoder.state_dict().items():
            yield f"teacher{k}.{name}", tensor
        yield f"teacher{k}.class_features", teacher.class_features
        yield f"teacher{k}.logit_scale", torch.tensor(teacher.logit_scale, dtype=torch.float64)


@TRAINER_REGISTRY.register()
class PromptKD(CLIPPromptTrainer):
    """Distil frozen teachers' class distributions into a prompted student on unlabeled images."""

    COMPILES_FORWARDS = True

    def check_cfg(self, cfg: CN) -> None:
        super().check_cfg(cfg)
        node = cfg.TRAINER.PROMPTKD
        if cfg.TRAINER.MODAL not in VALID_MODALS:
            raise ValueError(f"TRAINER.MODAL is {cfg.TRAINER.MODAL!r}; allowed: {list(VALID_MODALS)}")
        if node.STUDENT_DESIGN not in STUDENT_DESIGNS:
            raise ValueError(
                f"TRAINER.PROMPTKD.STUDENT_DESIGN is {node.STUDENT_DESIGN!r}; allowed: {list(STUDENT_DESIGNS)}"
            )
        if node.PROJECT_LAYER != 2:
            raise ValueError(f"TRAINER.PROMPTKD.PROJECT_LAYER={node.PROJECT_LAYER}: only the 2-layer projector exists")
        if float(node.CE_WEIGHT) != 0.0:
            raise ValueError(
                f"TRAINER.PROMPTKD.CE_WEIGHT={node.CE_WEIGHT}: PromptKD never uses labels (upstream ignores the key); "
                "set it to 0.0"
            )
        if float(node.TEMPERATURE) <= 0:
            raise ValueError(f"TRAINER.PROMPTKD.TEMPERATURE must be > 0, got {node.TEMPERATURE}")
        check_teacher_keys(node)
        check_teacher_cache_keys(node)
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

    def parse_batch_train(self, batch: dict) -> torch.Tensor:
        return batch["img"].to(self.device)  # labels are never used

    def build_data_loader(self) -> None:
        """A dataset with unlabeled images (``Folder``: ``unlabeled/`` plus ``train/``) is distilled on them."""
        super().build_data_loader()
        if self.train_loader_u is not None:
            self.train_loader_x = self.train_loader_u

    # ------------------------------------------------------------------ model
    def build_model(self) -> None:
        cfg, node = self.cfg, self.cfg.TRAINER.PROMPTKD
        classnames = self.dm.dataset.classnames
        self.teachers = self.build_teachers(classnames)
        if node.STUDENT_DESIGN == "vpt":
            student = self.build_vpt_student(classnames)
        else:
            student = build_text_prompted_student(node.STUDENT_DESIGN, cfg, classnames)
        # A text-prompted student's stored class features lag its prompts until stored (after loading: in sync).
        self._class_features_stale = isinstance(student, TextPromptedStudent)
        freeze_by_name(student)
        log_trainable_parameters(student)
        self.register_prompt_model(student)

    def build_teachers(self, classnames: list[str]) -> TeacherEnsemble | None:
        """The frozen teachers (``W`` computed once each), or None when a teacher file is missing (warned)."""
        self.teacher_missing: str | None = None
        if self.inference_only:
            self.teacher_missing = "built for prediction, which runs the student alone"
            return None
        specs = teacher_specs(self.cfg)
        try:
            checkpoints = [resolve_teacher_checkpoint(v, default_teacher_checkpoint(self.cfg), k) for _, v, k in specs]
        except FileNotFoundError as error:
            self.teacher_missing = str(error)
            logger.warning(
                "No PromptKD teacher: %s -- building the student only (evaluation with a student checkpoint works; "
                "training will stop).",
                error,
            )
            return None
        ctx_init = self.cfg.TRAINER.PROMPTKD.CTX_INIT
        teachers = []
        for (weights, _, _), checkpoint in zip(specs, checkpoints, strict=True):
            # Teachers after the first draw nothing from the run's generators: an ensemble of identical teachers
            # initialises the student and shuffles the data exactly like the single teacher.
            with preserved_rng_state() if teachers else contextlib.nullcontext():
                teachers.append(build_teacher(self.cfg, weights, checkpoint, classnames, ctx_init, self.device))
        ensemble = TeacherEnsemble(teachers, self.cfg.TRAINER.PROMPTKD.TEACHER_WEIGHTS)
        self.store_teacher_weights_in_autocast_dtype(ensemble)
        if len(ensemble) > 1:
            logger.info(
                "Teacher ensemble: %s",
                ", ".join(f"{w:.3g} x {t.source}" for t, w in zip(ensemble.teachers, ensemble.weights, strict=True)),
            )
        return ensemble

    def store_teacher_weights_in_autocast_dtype(self, teachers: TeacherEnsemble) -> None:
        """``TEACHER_AUTOCAST_WEIGHTS``: no per-step casts of the teachers' weights (same features, half the memory)."""
        if not self.cfg.TRAINER.PROMPTKD.TEACHER_AUTOCAST_WEIGHTS:
            return
        dtype = self.precision.autocast_dtype
        if dtype is None:
            logger.info("TRAINER.PROMPTKD.TEACHER_AUTOCAST_WEIGHTS: no autocast in this run (%s), weights stay fp32",
                        self.precision.description)  # fmt: skip
            return
        converted = sum(teacher.store_matmul_weights_in(dtype) for teacher in teachers)
        logger.info("Teacher matmul weights stored in %s (%s values)", dtype, f"{converted:,}")

    def build_vpt_student(self, classnames: list[str]) -> PromptKDStudent:
        """The paper's student; with a teacher, its projector and stored ``W`` are the first teacher's."""
        node = self.cfg.TRAINER.PROMPTKD
        student_sd = load_clip_state_dict(self.cfg)
        visual = clip.build_visual(student_sd, ivlp_design(node.PROMPT_DEPTH_VISION, 0, node.N_CTX_VISION, 0))
        check_input_size(self.cfg, visual.input_resolution, "student image encoder")
        student = PromptKDStudent(visual, student_sd["logit_scale"], len(classnames))
        del student_sd
        student.to(self.device)
        if self.teachers is not None:
            first = self.teachers.first
            student.materialize(first.embed_dim, first.class_features)
            logger.info("Student projector: %d -> %d", visual.output_dim, first.embed_dim)
        return student

    def prepare_loaded_state(self, model: nn.Module, state_dict: dict) -> None:
        """Evaluation without a teacher: size the projector and feature buffer from the student checkpoint."""
        if not isinstance(model, PromptKDStudent) or model.materialized:
            return
        stored = (value for key, value in state_dict.items() if strip_module_prefix(key) == "text_features")
        features = next(stored, None)
        if features is None:
            self.expected_load_keys(set(), state_dict)  # raises: no teacher and no stored features
            raise AssertionError("unreachable")
        model.materialize(int(features.shape[1]))
        model.VPT_image_trans.requires_grad_(True)

    def expected_load_keys(self, expected: set[str], state_dict: dict) -> set[str]:
        """Upstream student files lack the stored text features; the teacher's (computed at build) are used then."""
        if not isinstance(self.prompt_model, PromptKDStudent):
            return expected
        if any(strip_module_prefix(key) == "text_features" for key in state_dict):
            return expected
        if self.teachers is None:
            raise CheckpointMismatchError(
                "The student checkpoint has no 'text_features' (an upstream PromptKD file, which never stored the "
                "teacher's class features) and no teacher is available to compute them: set "
                "TRAINER.PROMPTKD.TEACHER_CKPT / TEACHER_CLIP to the teacher used for distillation."
            )
        logger.info("Checkpoint has no stored text features (upstream file): keeping the teacher's")
        return expected - {"text_features"}

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        self.check_student_classes(directory)
        super().load_model(directory, epoch)
        self._class_features_stale = self._class_features_stale and not directory  # loaded: the file's features

    def inference_model(self) -> FixedClassifier:
        """The student alone with its stored class features: no teacher, no text tower."""
        self.set_model_mode("eval")
        self.store_student_class_features()
        student = self.prompt_model
        if isinstance(student, TextPromptedStudent):
            return fixed_classifier(student.prompted, student.class_features)
        return FixedClassifier(
            student.image_encoder, student.text_features, student.logit_scale, projector=student.VPT_image_trans
        )

    def check_student_classes(self, directory: str) -> None:
        """A student's stored class features are indexed by the labels of its run: they must be this run's.

        The run folder's ``classnames.txt`` (written by ``train.py``) names the classes the student was distilled
        on; they have to be the classes the teachers encode here, in the same order, or every prediction would be
        read with the wrong names. Folders without the file (upstream's) are not checked.
        """
        path = osp.join(directory, CLASSNAMES_FILE) if directory else ""
        if not path or not osp.isfile(path):
            return
        if self.inference_only:
            here = "the class names given for prediction"
        else:
            here = f"the classes of DATASET.NAME {self.cfg.DATASET.NAME} under {self.cfg.DATASET.ROOT}"
        if self.teachers is not None:
            here += f", encoded by {self.teachers.first.source}"
        check_same_classes(
            read_classnames_file(path),
            f"the student in {directory}, distilled on the classes of {path}",
            self.dm.dataset.classnames,
            here,
            "evaluate the student on the dataset it was distilled on (same class names, same order), or distil "
            "a student for this one",
        )

    @property
    def prompt_model(self) -> PromptKDStudent | TextPromptedStudent:
        return self._models[self.MODEL_NAME]

    # ------------------------------------------------------------------ training
    def before_train(self) -> None:
        if self.teachers is None:
            raise InputFileError(f"PromptKD training needs a teacher. {self.teacher_missing}")
        if self.cfg.TEST.FINAL_MODEL == "best_val" and not self.cfg.TEST.NO_TEST:
            data = "base-class TEST" if self.cfg.TRAINER.MODAL == "base2novel" else "val"
            logger.warning(
                "Model selection on %s images (TRAINER.PROMPTKD.SELECT_ON_TEST True, upstream behaviour): the "
                "reported accuracy is optimistic",
                data,
            )
        super().before_train()
        self.attach_teacher_caches()
        self.compile_forwards()

    def attach_teacher_caches(self) -> None:
        """``TEACHER_CACHE`` set: one cache for the run, a folder per teacher, named by the views' fingerprint."""
        self.teacher_cache: TeacherCache | None = None
        node = self.cfg.TRAINER.PROMPTKD
        root = str(node.TEACHER_CACHE).strip()
        if not root:
            return
        if self.cfg.SEED < 0:
            logger.warning("SEED < 0: every run draws other training views, so the teacher cache can only miss")
        fingerprint = tensor_fingerprint(teacher_tensors(self.teachers), teacher_cache_settings(self))
        self.teacher_cache = TeacherCache(root, fingerprint, node.TEACHER_CACHE_DTYPE)
        for k, teacher in enumerate(self.teachers):
            teacher.attach_cache(self.teacher_cache, k)
        logger.info("Teacher cache: %s (%s)", self.teacher_cache.directory, node.TEACHER_CACHE_DTYPE)

    def compile_forwards(self) -> None:
        """``TRAIN.COMPILE``: the student's training forward and the teachers' image towers through torch.compile
        (evaluation stays eager: it runs once per epoch at another batch size)."""
        self.student_forward = compiled_forward(self.model, self.cfg, "PromptKD student")
        if self.cfg.TRAIN.COMPILE:
            for k, teacher in enumerate(self.teachers, start=1):
                teacher.image_forward = compiled_forward(teacher.image_encoder, self.cfg, f"teacher {k} image tower")
            logger.info("TRAIN.COMPILE %s (backend %s)", self.cfg.TRAIN.COMPILE, self.cfg.TRAIN.COMPILE_BACKEND)

    def after_train(self) -> None:
        cache = getattr(self, "teacher_cache", None)
        if cache is not None:
            cache.close()
            logger.info("%s", cache.summary())
        super().after_train()

    def teacher_target(self, image: torch.Tensor, view: TeacherView | None = None) -> torch.Tensor:
        """The distillation target ``q`` ``[B, C]``: the teachers' softened distributions, mixed (fp32)."""
        temperature = float(self.cfg.TRAINER.PROMPTKD.TEMPERATURE)
        return self.teachers.target(image, temperature, self.autocast, view)

    def forward_backward(self, batch: dict) -> dict:
        image = self.parse_batch_train(batch)
        node = self.cfg.TRAINER.PROMPTKD
        view = TeacherView(self.epoch, self.batch_idx, self.is_last_batch())
        target = self.teacher_target(image, view)
        with self.autocast():
            student_logits = getattr(self, "student_forward", self.model)(image)  # set in before_train
        loss = float(node.KD_WEIGHT) * kl_target_loss(student_logits, target, float(node.TEMPERATURE))
        self.model_backward_and_update(loss)
        self._class_features_stale = isinstance(self.prompt_model, TextPromptedStudent)
        self.update_lr_after_last_batch()
        return {"loss": loss.item()}

    def store_student_class_features(self) -> None:
        """A text-prompted student trained since its last store encodes its classes once (a no-op otherwise)."""
        if self._class_features_stale:
            self.prompt_model.store_class_features()
            self._class_features_stale = False

    def save_model(self, *args, **kwargs) -> None:
        self.store_student_class_features()  # every checkpoint holds the class features of its prompts
        super().save_model(*args, **kwargs)

    # ------------------------------------------------------------------ evaluation
    def test(self, split: str | None = None):
        """``base2novel``: base and novel classes of the test split scored by logit columns, then the HM block.

        ``split`` ``val`` (per-epoch selection, upstream): the base classes of the test split.
        """
        self.store_student_class_features()
        if self.cfg.TRAINER.MODAL != "base2novel":
            return super().test(split)
        if self.test_loader is None:
            raise no_test_images(self.cfg)
        split = split or self.cfg.TEST.SPLIT
        if split == "train":
            raise ValueError("PromptKD base2novel evaluates the base/novel test images; split 'train' has no classes")
        subsets = base_novel_subsets(self.num_classes)
        if split == "val":
            return evaluate_class_subsets(self, {"base": subsets["base"]}, split="val")["base"]
        accuracy = evaluate_class_subsets(self, subsets)
        report_base_novel(self, accuracy["base"], accuracy["new"])
        return accuracy["new"]
