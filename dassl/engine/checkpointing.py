"""The trainer's checkpoints: save every registered model, auto-resume, load a model for evaluation.

Which file is read is decided by :mod:`dassl.utils.checkpoint_files` (resume: latest epoch file; evaluation: the
asked epoch, else best, else the resume choice). What is written is a model's full ``state_dict()``, or its
trained state only (:mod:`dassl.utils.trained_state`) when it was registered with ``trained_state_only=True``.
Besides upstream's five keys (``state_dict``, ``epoch``, ``optimizer``, ``scheduler``, ``val_result``) every file
stores ``best_result``/``best_epoch`` and the RNG states, so that a resumed run is bit-identical.
"""

from __future__ import annotations

import logging
import math
import os.path as osp
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from dassl.utils import load_checkpoint, save_checkpoint
from dassl.utils.checkpoint_files import find_resume_file, resolve_checkpoint_file
from dassl.utils.torchtools import restore_checkpoint_file
from dassl.utils.trained_state import load_trained_state_dict, trained_state_dict

from . import distributed as ddp
from .rng_state import capture_rng_state, restore_rng_state

__all__ = ["CheckpointingMixin", "find_resume_file", "state_dict_of"]

logger = logging.getLogger(__name__)


def state_dict_of(checkpoint: Mapping[str, Any]) -> Mapping[str, Any]:
    """The weights of a loaded file: its ``state_dict`` entry, or the file itself when it is a bare state dict."""
    return checkpoint["state_dict"] if "state_dict" in checkpoint else checkpoint


class CheckpointingMixin:
    """Checkpoint methods of :class:`dassl.engine.TrainerBase` (upstream names and console lines)."""

    _models: dict[str, nn.Module]
    _optims: dict[str, Any]
    _scheds: dict[str, Any]
    _trained_state_only: set[str]

    def _checkpoint_extras(self) -> dict[str, Any]:
        """Keys added to every checkpoint beyond upstream's five (resume needs them)."""
        best = getattr(self, "best_result", None)
        return {
            "best_result": None if best is None or not math.isfinite(best) else float(best),
            "best_epoch": getattr(self, "best_epoch", None),
            "rng_state": capture_rng_state(),
        }

    def model_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        """What the checkpoint of registered model ``name`` holds (its trained state or its full state)."""
        model = self._models[name]
        return trained_state_dict(model) if name in self._trained_state_only else model.state_dict()

    def save_model(
        self, epoch: int, directory: str, is_best: bool = False, val_result: float | None = None, model_name: str = ""
    ) -> None:
        """Save every registered model to ``directory/<name>/`` (rank 0 only; other ranks wait)."""
        if ddp.is_main_process():
            extras = self._checkpoint_extras()
            for name in self.get_model_names():
                optim = self._optims[name]
                sched = self._scheds[name]
                state = {
                    "state_dict": self.model_state_dict(name),
                    "epoch": epoch + 1,
                    "optimizer": optim.state_dict() if optim is not None else None,
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "val_result": val_result,
                    **extras,
                }
                save_checkpoint(state, osp.join(directory, name), is_best=is_best, model_name=model_name)
        if ddp.is_distributed():
            torch.distributed.barrier()

    def resume_model_if_exist(self, directory: str) -> int:
        """Auto-resume from ``directory`` if every registered model has a checkpoint; return the start epoch."""
        names = self.get_model_names()
        chosen = {}
        for name in names:
            fpath, reason = find_resume_file(osp.join(directory, name))
            if fpath is None:
                print("No checkpoint found, train from scratch")
                logger.info("Not resuming: %s", reason)
                return 0
            chosen[name] = (fpath, reason)

        print(f"Found checkpoint at {directory} (will resume training)")
        logger.info(
            "Auto-resume: training continues from the checkpoints in %s (use a new OUTPUT_DIR to start over)",
            directory,
        )
        start_epoch = 0
        checkpoint: dict[str, Any] = {}
        for name in names:
            fpath, reason = chosen[name]
            logger.info("Resuming %s from %s (%s)", name, fpath, reason)
            load_state = load_trained_state_dict if name in self._trained_state_only else None
            checkpoint = restore_checkpoint_file(
                fpath, self._models[name], self._optims[name], self._scheds[name], load_state=load_state
            )
            start_epoch = checkpoint["epoch"]

        best = checkpoint.get("best_result")
        if best is not None:
            self.best_result = float(best)
            self.best_epoch = checkpoint.get("best_epoch")
        if checkpoint.get("rng_state") is not None:
            restore_rng_state(checkpoint["rng_state"])
            logger.info("Restored the RNG states saved at epoch %d", start_epoch)
        else:
            logger.warning("Checkpoint has no RNG state (upstream file?): the resumed run will not be bitwise equal")
        return start_epoch

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        """Load the evaluation file of every registered model from ``directory/<name>/``.

        ``model.pth.tar-{epoch}`` when ``epoch`` is given, else ``model-best.pth.tar``, else the latest epoch
        file; the weights go in through :meth:`load_model_state`.
        """
        if not directory:
            print(
                "Note that load_model() is skipped as no pretrained model is given "
                "(ignore this if it's done on purpose)"
            )
            return
        for name in self.get_model_names():
            model_path = resolve_checkpoint_file(osp.join(directory, name), epoch)
            checkpoint = load_checkpoint(model_path)
            loaded_epoch = checkpoint.get("epoch")
            val_result = checkpoint.get("val_result")
            shown = "n/a" if val_result is None else f"{val_result:.1f}"
            print(f"Load {model_path} to {name} (epoch={loaded_epoch}, val_result={shown})")
            self.load_model_state(name, state_dict_of(checkpoint), model_path)
            self.loaded_epoch = loaded_epoch

    def load_model_state(self, name: str, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
        """Put the weights read by ``load_model`` into registered model ``name``.

        Default: a strict ``load_state_dict`` (frozen keys may be missing for a ``trained_state_only`` model).
        CLIP prompt trainers override it to also accept the official repositories' full files.
        """
        model = self._models[name]
        if name in self._trained_state_only:
            load_trained_state_dict(model, state_dict)
        else:
            model.load_state_dict(state_dict)
