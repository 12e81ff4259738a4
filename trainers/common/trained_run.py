"""Rebuild a trained model from its run folder (``config.yaml``, ``classnames.txt``, the checkpoints) for prediction.

The trainer named in the run's config is built in its prediction mode (``classnames`` given to the engine): no
dataset is read, no loader exists and no training-only component is built (PromptKD: no teacher). The CLIP weights
the run was built on (``MODEL.BACKBONE.NAME``) are still needed: the checkpoints hold what was trained, not the
frozen backbone (an exported file holds both). The config keys of the dataset and trainer packages must be
registered first (``train.import_plugin_packages``, which ``predict.py`` calls).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence

import torch
from yacs.config import CfgNode

from dassl.config import apply_cfg_defaults, get_cfg_default
from dassl.engine import TRAINER_REGISTRY, TrainerBase
from dassl.engine.run_classnames import CLASSNAMES_FILE, read_classnames_file
from dassl.errors import CheckpointError, ConfigError, InputFileError

__all__ = [
    "CONFIG_FILE",
    "DEVICES",
    "TrainedRun",
    "build_trained_trainer",
    "load_run_config",
    "run_classnames",
    "select_device",
]

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
DEVICES = ("auto", "cpu", "cuda")


class TrainedRun:
    """A run folder's config (merged onto the defaults), its text and the path it came from."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = os.path.abspath(run_dir)
        path = os.path.join(self.run_dir, CONFIG_FILE)
        if not os.path.isdir(self.run_dir):
            raise CheckpointError("model folder not found", f"--model-dir {run_dir}", "pass the OUTPUT_DIR of a run")
        if not os.path.isfile(path):
            raise CheckpointError(
                f"not a run folder: no {CONFIG_FILE}", f"--model-dir {run_dir}", "pass the OUTPUT_DIR of a train.py run"
            )
        with open(path, encoding="utf-8") as f:
            self.config_text = f.read()
        self.cfg = load_run_config(path)

    @property
    def config_sha256(self) -> str:
        """SHA-256 of the run's ``config.yaml`` as written, recorded in an export's provenance."""
        return hashlib.sha256(self.config_text.encode("utf-8")).hexdigest()


def load_run_config(path: str) -> CfgNode:
    """The run's ``config.yaml`` merged onto the defaults of the registered packages (unfrozen)."""
    try:
        return _merged_run_config(path, allow_unknown=False)
    except Exception as err:  # yacs: an unknown key (another version, a plugin not loaded now), a type, YAML syntax
        message = " ".join(str(err.args[0] if err.args else err).split())
        if "Unknown config key" not in message:
            raise ConfigError(
                f"the run's config cannot be read: {message}", path, "re-create the run with train.py"
            ) from err
    # Keys this version does not define cannot matter to the trainer built from it (it reads only its own).
    logger.warning("%s has config keys this version does not define; they are ignored: %s", path, message)
    return _merged_run_config(path, allow_unknown=True)


def _merged_run_config(path: str, allow_unknown: bool) -> CfgNode:
    cfg = get_cfg_default()
    apply_cfg_defaults(cfg)
    cfg.set_new_allowed(allow_unknown)
    cfg.merge_from_file(path)
    cfg.set_new_allowed(False)
    return cfg


def run_classnames(run_dir: str, classnames_file: str | None) -> list[str]:
    """``--classnames FILE`` if given, else the run's ``classnames.txt`` (written by train.py)."""
    path = os.path.join(run_dir, CLASSNAMES_FILE)
    if classnames_file:
        names = read_classnames_file(classnames_file)
        if os.path.isfile(path) and len(saved := read_classnames_file(path)) != len(names):
            raise InputFileError(
                f"{len(names)} class names for a model of {len(saved)} classes",
                classnames_file,
                "give one name per class, in label order",
            )
        return names
    if not os.path.isfile(path):
        raise InputFileError(
            f"the run folder has no {CLASSNAMES_FILE} (runs before class names were saved with the model)",
            path,
            "pass --classnames FILE with the class names in label order, one per line (the dataset's class order)",
        )
    return read_classnames_file(path)


def select_device(device: str) -> bool:
    """``USE_CUDA`` for ``--device``: ``auto`` uses CUDA when present, ``cuda`` requires it."""
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}", "--device", f"use one of {list(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("no CUDA device is available", "--device cuda", "use --device cpu (or auto)")
    return device != "cpu"


def build_trained_trainer(
    run: TrainedRun, classnames: Sequence[str], load_epoch: int | None = None, device: str = "auto"
) -> TrainerBase:
    """The run's trainer in prediction mode with its trained weights loaded (the engine's file rule:
    ``--load-epoch N`` or the checkpoint the run's ``checkpoint`` pointer names)."""
    cfg = run.cfg.clone()
    cfg.OUTPUT_DIR = run.run_dir
    cfg.USE_CUDA = select_device(device)
    cfg.freeze()
    name = cfg.TRAINER.NAME
    if name not in TRAINER_REGISTRY:
        raise ConfigError(f"unknown trainer {name!r}", f"{run.run_dir}/{CONFIG_FILE}", "the run needs this trainer")
    if load_epoch is not None and load_epoch < 1:
        raise ConfigError(
            "--load-epoch must be a saved epoch (>= 1)", f"--load-epoch {load_epoch}", "pick model.pth.tar-N"
        )
    trainer = TRAINER_REGISTRY.get(name)(cfg, classnames=list(classnames))
    if trainer.get_model_names():
        trainer.load_model(run.run_dir, epoch=load_epoch)
    elif load_epoch is not None:
        raise ConfigError(f"{name} has no trained weights", f"--load-epoch {load_epoch}", "drop --load-epoch")
    return trainer
