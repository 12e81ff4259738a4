"""Trainer engine: registry, trainer base classes, precision and DDP helpers."""

from dassl.modeling import SimpleNet

from .build import TRAINER_REGISTRY, build_trainer
from .precision import VALID_PRECISIONS, Precision, resolve_precision
from .trainer import SimpleTrainer, TrainerBase, TrainerX, TrainerXU

__all__ = [
    "TRAINER_REGISTRY",
    "VALID_PRECISIONS",
    "Precision",
    "SimpleNet",
    "SimpleTrainer",
    "TrainerBase",
    "TrainerX",
    "TrainerXU",
    "build_trainer",
    "resolve_precision",
]
