"""Contrastive pre-training of two tiny CLIPs (teacher and student) on captioned coloured shapes.

The demo needs CLIP backbones that "know" the generator's world, as OpenAI's CLIP knows photos: PromptSRC
then learns prompts for the base classes on top of the teacher, and PromptKD distils the teacher into the
smaller student. Both are ``clip.model.CLIP`` (OpenAI constructor and state-dict names), trained with the
standard symmetric CLIP loss (Radford et al. 2021, Fig. 3: cross-entropy over image->text and text->image
cosine logits scaled by a learned temperature) on image/caption pairs of the BASE classes only. Captions vary
(templates, synonyms, background words) so the text tower learns words, not 15 fixed sentences; the novel
classes (unseen colour x shape pairs) are never shown, so zero-shot accuracy on them measures composition.

Weights are saved as OpenAI-layout state dicts in a cache folder keyed by a hash of every setting, so a second
run loads them instead of training (:func:`pretrained_clips`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import clip
from clip.loading import CLIP_MEAN, CLIP_STD
from clip.model import CLIP, heads_for_width
from dassl.utils.atomic import atomic_torch_save, atomic_write_text
from datasets.cache import default_cache_root
from trainers.templates import IMAGENET_TEMPLATES

from .shapes import BACKGROUNDS, ShapeClass, class_list, render_pool

__all__ = [
    "CLIPSpec",
    "PretrainResult",
    "PretrainSettings",
    "build_clip",
    "clip_loss",
    "demo_cache_dir",
    "make_caption",
    "pretrain",
    "pretrained_clips",
    "zero_shot_accuracy",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the generator, captions or training loop change: it is part of the cache key
CONTEXT_LENGTH = 77  # clip.tokenize's length, which the prompt learners use
VOCAB_SIZE = 49408

COLOUR_SYNONYMS = {
    "red": ("crimson", "scarlet"),
    "green": ("emerald", "lime"),
    "blue": ("cobalt", "azure"),
    "yellow": ("golden", "lemon"),
    "purple": ("violet", "lilac"),
    "orange": ("amber", "tangerine"),
}
SHAPE_SYNONYMS = {
    "circle": ("disc", "dot"),
    "square": ("box", "block"),
    "triangle": ("trigon",),
    "cross": ("plus sign", "plus"),
    "ring": ("donut", "hoop"),
}
DEMO_TEMPLATES = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a {}.",
    "{}",
    "a picture of a {}.",
    "an image of a {}.",
    "a drawing of a {}.",
    "a {} shape.",
)
BACKGROUND_TEMPLATES = (
    "a photo of a {} on a {} background.",
    "a {} on a {} background.",
    "a {} in front of a {} pattern.",
)


@dataclass(frozen=True)
class CLIPSpec:
    """Architecture of one tiny ViT CLIP (arguments of ``clip.model.CLIP``; heads follow the width)."""

    embed_dim: int
    vision_width: int
    vision_layers: int
    vision_patch_size: int
    text_width: int
    text_layers: int


@dataclass(frozen=True)
class PretrainSettings:
    """Everything that determines the pre-trained weights (hashed into the cache key)."""

    teacher: CLIPSpec = CLIPSpec(64, 128, 2, 8, 64, 2)
    student: CLIPSpec = CLIPSpec(32, 64, 1, 8, 32, 1)
    image_size: int = 32
    seed: int = 0
    pool_per_class: int = 200
    steps: int = 600
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 30
    canonical_word_prob: float = 0.7
    crop_area_min: float = 0.7  # milder than 0.35: a crop that cuts the shape away teaches the wrong word
    colours: tuple[str, ...] = field(default=("red", "green", "blue", "yellow", "purple", "orange"))
    shapes: tuple[str, ...] = field(default=("circle", "square", "triangle", "cross", "ring"))

    def cache_key(self) -> str:
        payload = json.dumps({"version": FORMAT_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class PretrainResult:
    """Paths of the two state-dict files and the zero-shot accuracies measured right after training."""

    teacher_path: Path
    student_path: Path
    metrics: dict
    cached: bool


def demo_cache_dir(override: str | os.PathLike | None = None) -> Path:
    """``override``, else ``demo`` under the project's cache root (``$PROMPTKD_CACHE_DIR`` or ``~/.cache/promptkd``)."""
    if override:
        return Path(override).expanduser()
    return Path(default_cache_root()) / "demo"


def build_clip(spec: CLIPSpec, image_size: int) -> CLIP:
    """A randomly initialised ``clip.model.CLIP`` of this architecture (OpenAI's constructor)."""
    return CLIP(
        embed_dim=spec.embed_dim,
        image_resolution=image_size,
        vision_layers=spec.vision_layers,
        vision_width=spec.vision_width,
        vision_patch_size=spec.vision_patch_size,
        context_length=CONTEXT_LENGTH,
        vocab_size=VOCAB_SIZE,
        transformer_width=spec.text_width,
        transformer_heads=heads_for_width(spec.text_width),
        transformer_layers=spec.text_layers,
    )


def make_caption(colour: str, shape: str, rng: random.Random, canonical_prob: float = 0.7) -> str:
    """A varied caption for one image: canonical words with probability ``canonical_prob``, else a synonym;
    a demo template, one of PromptSRC's 60 ImageNet templates, or a sentence naming the background."""
    c = colour if rng.random() < canonical_prob else rng.choice(COLOUR_SYNONYMS[colour])
    s = shape if rng.random() < canonical_prob else rng.choice(SHAPE_SYNONYMS[shape])
    name = f"{c} {s}"
    draw = rng.random()
    if draw < 0.45:
        return rng.choice(DEMO_TEMPLATES).format(name)
    if draw < 0.8:
        return rng.choice(IMAGENET_TEMPLATES).format(name)
    return rng.choice(BACKGROUND_TEMPLATES).format(name, rng.choice(BACKGROUNDS))


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP (Radford et al. 2021, Fig. 3): pair i is the positive of row/column i."""
    image_features = F.normalize(image_features, dim=-1)
    text_features = F.normalize(text_features, dim=-1)
    logits = logit_scale.exp() * image_features @ text_features.t()  # (B, B)
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> normalised float ``[N, 3, H, W]`` (the dataset YAMLs' normalisation)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _augment(x: torch.Tensor, gen: torch.Generator, area_min: float = 0.7) -> torch.Tensor:
    """Batched random resized crop (area ``area_min``-100 %, aspect 3/4-4/3) + horizontal flip, one affine resample.

    Mirrors the trainers' ``random_resized_crop``/``random_flip`` in spirit, so the frozen towers already
    cope with crops when the prompts are trained.
    """
    n = x.shape[0]
    area = torch.empty(n).uniform_(area_min, 1.0, generator=gen)
    log_ratio = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen)
    ratio = log_ratio.exp()
    sx = (area * ratio).sqrt().clamp(max=1.0)
    sy = (area / ratio).sqrt().clamp(max=1.0)
    tx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - sx)
    ty = (torch.rand(n, generator=gen) * 2 - 1) * (1 - sy)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sx * flip, tx
    theta[:, 1, 1], theta[:, 1, 2] = sy, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _cosine_lr(step: int, settings: PretrainSettings) -> float:
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    return settings.lr * 0.5 * (1 + math.cos(math.pi * progress))


def _tokenize_cached(captions: Sequence[str], cache: dict[str, torch.Tensor]) -> torch.Tensor:
    """``clip.tokenize(captions)`` with each distinct caption encoded once: the captions repeat (a few thousand
    distinct sentences), and BPE-encoding 128 of them per step was a visible part of pre-training on 2 cores."""
    missing = sorted({c for c in captions if c not in cache})
    if missing:
        cache.update(zip(missing, clip.tokenize(missing), strict=True))
    return torch.stack([cache[c] for c in captions])


def _class_prompts(classes: Sequence[ShapeClass]) -> torch.Tensor:
    return clip.tokenize([f"a photo of a {c.name}." for c in classes])


@torch.no_grad()
def zero_shot_accuracy(model: CLIP, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[ShapeClass]) -> float:
    """Top-1 accuracy (%) of ``model`` choosing among ``classes`` with the prompt "a photo of a {name}."."""
    model.eval()
    text = F.normalize(model.encode_text(_class_prompts(classes)), dim=-1)
    index = {c.label: i for i, c in enumerate(classes)}
    target = torch.tensor([index[int(y)] for y in labels])
    correct = 0
    for start in range(0, len(images), 256):
        feats = F.normalize(model.encode_image(images[start : start + 256]), dim=-1)
        correct += (feats @ text.t()).argmax(1).eq(target[start : start + 256]).sum().item()
    return 100.0 * correct / max(1, len(images))


def pretrain(
    settings: PretrainSettings, progress: Callable[[int, int, dict], None] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """Train teacher and student on the same batches; returns their state dicts and zero-shot metrics.

    ``progress(step, total, info)`` is called after every step (the demo's progress bar).
    """
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    classes = class_list(settings.colours, settings.shapes)
    base = [c for c in classes if c.base]
    novel = [c for c in classes if not c.base]
    images, labels = render_pool(base, settings.pool_per_class, settings.seed, settings.image_size)
    pool = _to_tensor(images)
    by_label = {c.label: c for c in classes}

    models = {
        "teacher": build_clip(settings.teacher, settings.image_size),
        "student": build_clip(settings.student, settings.image_size),
    }
    params = [p for m in models.values() for p in m.parameters()]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:  # the fused kernel is ~9x faster here: the 49408-row token embeddings dominate the update
        optimizer = torch.optim.AdamW(groups, lr=settings.lr, betas=(0.9, 0.98), eps=1e-6, fused=True)
    except (RuntimeError, TypeError):
        optimizer = torch.optim.AdamW(groups, lr=settings.lr, betas=(0.9, 0.98), eps=1e-6)
    for model in models.values():
        model.train()
    losses: dict[str, float] = {}
    token_cache: dict[str, torch.Tensor] = {}
    for step in range(settings.steps):
        for group in optimizer.param_groups:
            group["lr"] = _cosine_lr(step, settings)
        index = torch.randint(len(pool), (settings.batch_size,), generator=gen)
        batch = _augment(pool[index], gen, settings.crop_area_min)
        captions = [
            make_caption(by_label[int(y)].colour, by_label[int(y)].shape, rng, settings.canonical_word_prob)
            for y in labels[index.numpy()]
        ]
        tokens = _tokenize_cached(captions, token_cache)
        total = 0.0
        for name, model in models.items():
            loss = clip_loss(model.encode_image(batch), model.encode_text(tokens), model.logit_scale)
            total = total + loss
            losses[name] = loss.item()
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        with torch.no_grad():
            for model in models.values():
                model.logit_scale.clamp_(0, math.log(100))  # CLIP's clipping of the temperature
        if progress is not None:
            progress(step + 1, settings.steps, losses)

    test_images, test_labels = render_pool(classes, 20, settings.seed + 1, settings.image_size)
    test = _to_tensor(test_images)
    metrics: dict = {"final_loss": dict(losses)}
    for name, model in models.items():
        is_base = np.isin(test_labels, [c.label for c in base])
        metrics[name] = {
            "zero_shot_base": zero_shot_accuracy(model, test[is_base], torch.from_numpy(test_labels[is_base]), base),
            "zero_shot_novel": zero_shot_accuracy(
                model, test[~is_base], torch.from_numpy(test_labels[~is_base]), novel
            ),
        }
    metrics["chance_novel"] = 100.0 / len(novel)
    return models["teacher"].state_dict(), models["student"].state_dict(), metrics


def pretrained_clips(
    settings: PretrainSettings,
    cache_dir: str | os.PathLike | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
) -> PretrainResult:
    """Teacher/student weight files for ``settings``: loaded from the cache, or pre-trained and cached.

    Files: ``<cache>/<key>/{teacher,student}.pt`` (plain OpenAI-layout state dicts, loadable by
    ``clip.load_state_dict``) and ``metrics.json``, written last, which marks the entry complete.
    """
    folder = demo_cache_dir(cache_dir) / f"clip-{settings.cache_key()}"
    teacher_path, student_path, metrics_path = folder / "teacher.pt", folder / "student.pt", folder / "metrics.json"
    if metrics_path.is_file() and teacher_path.is_file() and student_path.is_file():
        logger.info("Pre-trained demo CLIPs found in %s", folder)
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        return PretrainResult(teacher_path, student_path, metrics, cached=True)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    teacher, student, metrics = pretrain(settings, progress)
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    metrics["settings"] = dataclasses.asdict(settings)
    metrics = json.loads(json.dumps(metrics))  # the same plain-JSON form a cached run returns
    atomic_torch_save(teacher, teacher_path)
    atomic_torch_save(student, student_path)
    atomic_write_text(json.dumps(metrics, indent=2, sort_keys=True), metrics_path)
    logger.info("Pre-trained demo CLIPs written to %s", folder)
    return PretrainResult(teacher_path, student_path, metrics, cached=False)
