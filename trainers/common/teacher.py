"""A frozen distillation teacher: image tower, logit scale and class features ``W``, nothing else.

A teacher is CLIP weights plus either a prompt checkpoint (a PromptSRC/IVLP file or run folder, whose prompt
design is read from its keys) or ``none`` (zero-shot CLIP, text prompts ``"<CTX_INIT> <class>."``). Building it
encodes all class prompts through the text tower exactly once, in fp32 and outside autograd, keeps the
L2-normalised ``W [C, E]`` and lets the text tower and prompt learner go: during distillation only the image
tower runs, and evaluation never runs the teacher at all. ``text_tower_runs`` counts the text-tower passes made
while building (one), so callers and tests can check that ``W`` was never recomputed. A teacher with an attached
:class:`~trainers.common.teacher_cache.TeacherCache` reads the image features of training views stored by an
earlier run with the same views instead of running its tower.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os.path as osp
import re
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode

import clip
from dassl.errors import CheckpointMismatchError, ConfigError, InputFileError
from dassl.utils import load_checkpoint
from dassl.utils.checkpoint_files import resolve_checkpoint_file, strip_module_prefix

from .checkpoint import load_trained_state
from .clip_loading import check_input_size, load_clip_state_dict
from .freezing import is_prompt_parameter, store_matmul_weights_in
from .prompt_text import prompt_template
from .prompted_clip import PromptedCLIP, ivlp_design
from .teacher_cache import TeacherCache, TeacherView
from .zero_shot import ensemble_text_features

__all__ = [
    "TEACHER_IGNORE_PREFIXES",
    "ZERO_SHOT_TEACHER",
    "FrozenTeacher",
    "TeacherEnsemble",
    "TeacherView",
    "build_teacher",
    "check_same_classes",
    "mixture_target",
    "normalized_weights",
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
        self,
        image_encoder: nn.Module,
        logit_scale: float,
        class_features: torch.Tensor,
        classnames: Sequence[str],
        source: str,
        runs: int,
    ) -> None:
        super().__init__()
        if class_features.dim() != 2 or class_features.shape[0] != len(classnames):
            raise ValueError(
                f"teacher {source}: class features of shape {tuple(class_features.shape)} for {len(classnames)} classes"
            )
        self.image_encoder = image_encoder.requires_grad_(False).eval()
        self.logit_scale = float(logit_scale)  # exp(ln s), a constant
        self.register_buffer("class_features", class_features.detach().float(), persistent=False)
        self.classnames = tuple(classnames)
        self.source = source
        self.text_tower_runs = runs
        self.cache: TeacherCache | None = None
        self.cache_slot = 0
        self.image_forward: Callable[[torch.Tensor], torch.Tensor] | None = None  # e.g. compiled; None = the tower

    def store_matmul_weights_in(self, dtype: torch.dtype) -> int:
        """The image tower's matmul/convolution weights kept in the run's autocast ``dtype``
        (:func:`~trainers.common.freezing.store_matmul_weights_in`: same features, no per-step casts)."""
        return store_matmul_weights_in(self.image_encoder, dtype)

    def attach_cache(self, cache: TeacherCache | None, slot: int = 0) -> None:
        """Read and store this teacher's training-view features in ``cache`` (folder ``teacher<slot>``)."""
        self.cache, self.cache_slot = cache, slot

    @property
    def num_classes(self) -> int:
        return int(self.class_features.shape[0])

    @property
    def embed_dim(self) -> int:
        return int(self.class_features.shape[1])

    def image_features(self, image: torch.Tensor, view: TeacherView | None = None) -> torch.Tensor:
        """``normalize(g(x))`` ``[B, E]`` in fp32 (an inference tensor), outside the autograd graph.

        The tower runs in whatever autocast the caller opened. With a cache attached and the batch's training
        ``view`` given, the features are read from the cache when stored for this very batch (else computed and
        stored), rounded to the cache dtype either way.
        """
        if self.cache is None or view is None:
            return self._compute_features(image)
        return self.cache.features(self.cache_slot, view, image, lambda: self._compute_features(image))

    def _compute_features(self, image: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return F.normalize((self.image_forward or self.image_encoder)(image), dim=-1).float()

    def logits(self, image: torch.Tensor, view: TeacherView | None = None) -> torch.Tensor:
        """``s * normalize(g(x)) @ W^T`` ``[B, C]`` in fp32, outside the autograd graph.

        The product runs in whatever autocast the caller opened, from the fp32 features of :meth:`image_features`,
        so cached and uncached runs compute it from the same values. The result is a normal (non-inference) tensor.
        """
        features = self.image_features(image, view)
        with torch.inference_mode():
            logits = self.logit_scale * features @ self.class_features.t()
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
    scale = logit_scale.detach().exp().item()
    teacher = FrozenTeacher(image_encoder, scale, class_features, classnames, source, len(runs))
    logger.info("Teacher text features computed once for %d classes", len(classnames))
    return teacher  # the text tower and prompt learner go with ``model`` here


def check_same_classes(
    expected: Sequence[str], expected_source: str, found: Sequence[str], found_source: str, fix: str
) -> None:
    """ConfigError naming both sources when two class lists (label order included) differ.

    Class features and distributions are indexed by label, so two lists that differ anywhere (a class, the order,
    the count) mean that logits of one cannot be read with the other's labels.
    """
    expected, found = list(expected), list(found)
    if expected == found:
        return
    label = next((j for j, (a, b) in enumerate(zip(expected, found, strict=False)) if a != b), None)
    if label is None:
        difference = f"{len(expected)} vs {len(found)} classes"
    else:
        difference = f"label {label} is {expected[label]!r} vs {found[label]!r}"
    raise ConfigError(f"different class lists ({difference})", f"{expected_source} / {found_source}", fix)


def normalized_weights(weights: Sequence[float], count: int, key: str = "teacher weights") -> tuple[float, ...]:
    """Mixture weights summing to 1: ``weights`` (empty = equal) validated for ``count`` teachers.

    Raises ValueError (naming ``key``) for a length mismatch, a negative or non-finite weight, or all zeros.
    """
    values = [float(w) for w in weights] if len(weights) else [1.0] * count
    if len(values) != count:
        raise ValueError(f"{key} has {len(values)} values for {count} teachers; give one weight per teacher")
    if any(not math.isfinite(w) or w < 0 for w in values):
        raise ValueError(f"{key} must be finite and >= 0, got {values}")
    total = sum(values)
    if total <= 0:
        raise ValueError(f"{key} are all zero ({values}): at least one teacher needs a positive weight")
    return tuple(w / total for w in values)


def mixture_target(logits: Sequence[torch.Tensor], weights: Sequence[float], temperature: float) -> torch.Tensor:
    """``sum_k w_k softmax(z_k / T)`` ``[B, C]`` (fp32) for weights that sum to 1.

    Computed as ``p_r + sum_{k != r} w_k (p_k - p_r)`` around the first positively weighted teacher ``r``: equal
    to the weighted sum, and bit-identical to ``p_r`` when the other teachers agree with it exactly or weigh
    zero (a mixture of identical teachers is that teacher). Teachers of weight 0 are not evaluated at all.
    """
    if len(logits) != len(weights):
        raise ValueError(f"{len(logits)} teacher logits for {len(weights)} weights")
    used = [(z, w) for z, w in zip(logits, weights, strict=True) if w > 0]
    if not used:
        raise ValueError("mixture_target needs at least one positive weight")
    (reference, _), others = used[0], used[1:]
    target = F.softmax(reference.float() / temperature, dim=-1)
    if not others:
        return target
    mixed = target.clone()
    for z, w in others:
        mixed += w * (F.softmax(z.float() / temperature, dim=-1) - target)
    return mixed.clamp_(min=0.0)  # rounding can leave -1e-9 where a mixture of zeros is meant


class TeacherEnsemble(nn.Module):
    """Frozen teachers over the same classes and their mixture weights (normalised to sum 1).

    ``target(image, T)`` is the distillation target: the weighted mixture of the teachers' temperature-softened
    class distributions. The first teacher's class features are the ones a projecting student classifies with.
    """

    def __init__(self, teachers: Sequence[FrozenTeacher], weights: Sequence[float] = ()) -> None:
        super().__init__()
        if not teachers:
            raise ValueError("a teacher ensemble needs at least one teacher")
        first = teachers[0]
        for i, teacher in enumerate(teachers[1:], start=2):
            check_same_classes(
                first.classnames,
                f"teacher 1, {first.source}",
                teacher.classnames,
                f"teacher {i}, {teacher.source}",
                "build every teacher for the distillation dataset's classes; distributions over other classes "
                "cannot be mixed",
            )
        self.teachers = nn.ModuleList(teachers)
        self.weights = normalized_weights(weights, len(teachers))

    def __len__(self) -> int:
        return len(self.teachers)

    def __iter__(self) -> Iterator[FrozenTeacher]:
        return iter(self.teachers)

    @property
    def first(self) -> FrozenTeacher:
        return self.teachers[0]

    def target(
        self,
        image: torch.Tensor,
        temperature: float,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
        view: TeacherView | None = None,
    ) -> torch.Tensor:
        """The mixture of the positively weighted teachers' ``softmax(z_k / T)`` ``[B, C]``.

        Each teacher's logits are computed inside ``autocast()`` (the run's precision); the softmax and the
        mixture in fp32 outside it. ``view`` (the batch's place in training) lets attached caches answer.
        """
        logits, weights = [], []
        for teacher, weight in zip(self.teachers, self.weights, strict=True):
            if weight > 0:
                with autocast():
                    logits.append(teacher.logits(image, view))
                weights.append(weight)
        return mixture_target(logits, weights, temperature)
