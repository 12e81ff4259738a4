"""``CLIPPromptTrainer``: what IVLP, PromptSRC and PromptKD trainers share (methods.md §3.0).

- ``check_cfg``: ``TRAINER.<NAME>.PREC`` must be one of the engine's precisions (decision 11).
- ``parse_batch_train`` / ``parse_batch_test``: ``(image, label)`` on the trainer's device.
- ``forward_backward``: the supervised cross-entropy step of CoOp, CoCoOp, IVLP and MaPLe (PromptSRC and
  PromptKD override it); ``REPORT_ACCURACY`` adds the batch accuracy.
- ``register_prompt_model``: freezing already done by the caller; moves the model to the device, makes
  ``state_dict()`` hold only trained state (decision 9), builds SGD + scheduler over the model's parameters and
  registers it under ``MODEL_NAME`` (``VLPromptLearner`` for all three, as upstream; CoOp/CoCoOp register only
  their prompt learner, MaPLe uses ``MultiModalPromptLearner``).
- ``load_model(directory, epoch=None)``: upstream file names (``model-best.pth.tar`` / ``model.pth.tar-N``)
  loaded through :func:`load_trained_state` (token buffers dropped, frozen keys ignored by name, everything
  else must match). Without ``epoch`` and without a best file (our default ``TEST.FINAL_MODEL last_step``
  writes none) the file named by the ``checkpoint`` pointer is used.
"""

from __future__ import annotations

import logging
import os.path as osp

import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode

from dassl.engine import TrainerX
from dassl.engine.precision import VALID_PRECISIONS
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_checkpoint
from dassl.utils.torchtools import BEST_FILE, latest_epoch_file, read_pointer

from .checkpoint import (
    TOKEN_BUFFER_KEYS,
    install_trained_state_checkpointing,
    load_trained_state,
    trained_state_keys,
)
from .config import trainer_node

__all__ = ["CLIPPromptTrainer", "resolve_checkpoint_file"]

logger = logging.getLogger(__name__)


def resolve_checkpoint_file(folder: str, epoch: int | None = None) -> str:
    """Path of the checkpoint to load from a model folder (``OUTPUT_DIR/<model name>``).

    ``epoch`` given: ``model.pth.tar-<epoch>``. Otherwise ``model-best.pth.tar`` if present, else the file named
    in the ``checkpoint`` pointer, else the highest ``model.pth.tar-N``.
    """
    if epoch is not None:
        path = osp.join(folder, f"model.pth.tar-{epoch}")
        if not osp.isfile(path):
            raise FileNotFoundError(f'Model not found at "{path}" (--load-epoch {epoch})')
        return path
    best = osp.join(folder, BEST_FILE)
    if osp.isfile(best):
        return best
    name = read_pointer(folder) if osp.isdir(folder) else None
    if name and osp.isfile(osp.join(folder, name)):
        return osp.join(folder, name)
    latest = latest_epoch_file(folder) if osp.isdir(folder) else None
    if latest:
        return osp.join(folder, latest)
    raise FileNotFoundError(
        f'Model not found at "{best}": no {BEST_FILE}, no "checkpoint" pointer and no model.pth.tar-N in {folder}'
    )


class CLIPPromptTrainer(TrainerX):
    """Base of the CLIP prompt trainers; subclasses implement ``build_model`` (and, unless plain cross-entropy,
    ``forward_backward``)."""

    MODEL_NAME = "VLPromptLearner"
    # Keys of upstream files that are fixed functions of the class names (dropped before loading).
    DROP_KEYS: tuple[str, ...] = TOKEN_BUFFER_KEYS
    # Key prefixes that ``load_model`` neither requires nor loads (e.g. PromptSRC's GPA accumulator, which only
    # matters for resuming training) and that files may carry without the model having them.
    IGNORE_PREFIXES: tuple[str, ...] = ()
    # Whether the default ``forward_backward`` reports the batch accuracy next to the loss.
    REPORT_ACCURACY = False

    def check_cfg(self, cfg: CfgNode) -> None:
        prec = trainer_node(cfg).PREC
        if str(prec).lower() not in VALID_PRECISIONS:
            raise ValueError(
                f"TRAINER.{cfg.TRAINER.NAME.upper()}.PREC is {prec!r}; allowed: {list(VALID_PRECISIONS)} "
                "(fp16/amp run fp32 math on CPU)."
            )

    @property
    def method_cfg(self) -> CfgNode:
        """``cfg.TRAINER.<NAME>``."""
        return trainer_node(self.cfg)

    def parse_batch_train(self, batch: dict) -> tuple:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def parse_batch_test(self, batch: dict) -> tuple:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def forward_backward(self, batch: dict) -> dict[str, float]:
        """One supervised step (CoOp, CoCoOp, IVLP, MaPLe; methods.md §3.0): cross-entropy of the logits on the
        labels, backward and update; the lr scheduler steps after the epoch's last batch (upstream's rule).
        ``REPORT_ACCURACY`` adds the batch accuracy to the summary (CoOp's log line)."""
        image, label = self.parse_batch_train(batch)
        with self.autocast():
            output = self.model(image)
            loss = F.cross_entropy(output.float(), label)
        self.model_backward_and_update(loss)
        summary = {"loss": loss.item()}
        if self.REPORT_ACCURACY:
            summary["acc"] = compute_accuracy(output, label)[0].item()
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    def register_prompt_model(self, model: nn.Module, registered: nn.Module | None = None) -> None:
        """Load ``MODEL.INIT_WEIGHTS`` if set, move to device, restrict checkpoints to trained state, build
        optimizer/scheduler, register.

        ``registered`` (default ``model``) is the part that is optimised, checkpointed and registered under
        ``MODEL_NAME`` (CoOp/CoCoOp: the prompt learner alone); ``self.model`` is always the whole ``model``.
        """
        registered = model if registered is None else registered
        install_trained_state_checkpointing(registered)
        if self.cfg.MODEL.INIT_WEIGHTS:
            self._load_file_into(registered, self.cfg.MODEL.INIT_WEIGHTS)
        model.to(self.device)
        self.model = model
        self.optim = build_optimizer(registered, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model(self.MODEL_NAME, registered, self.optim, self.sched)

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        if not directory:
            logger.info("Note that load_model() is skipped as no pretrained model is given")
            return
        for name in self.get_model_names():
            path = resolve_checkpoint_file(osp.join(directory, name), epoch)
            checkpoint = self._load_file_into(self._models[name], path)
            self.loaded_epoch = checkpoint.get("epoch")

    def _load_file_into(self, model: nn.Module, path: str) -> dict:
        """Load a checkpoint file (ours or upstream's) into ``model``; returns the checkpoint dict."""
        checkpoint = load_checkpoint(path)
        state_dict = checkpoint["state_dict"] if "state_dict" in checkpoint else checkpoint
        logger.info(
            'Loading weights to %s from "%s" (epoch = %s)', self.MODEL_NAME, path, checkpoint.get("epoch", "n/a")
        )
        self.prepare_loaded_state(model, state_dict)
        expected = {key for key in trained_state_keys(model) if not key.startswith(self.IGNORE_PREFIXES)}
        load_trained_state(
            model,
            state_dict,
            expected_keys=self.expected_load_keys(expected, state_dict),
            drop_keys=self.DROP_KEYS,
            ignore_prefixes=self.IGNORE_PREFIXES,
            source=path,
        )
        return checkpoint

    def expected_load_keys(self, expected: set[str], state_dict: dict) -> set[str]:
        """Hook: the keys a file must provide (default: every trained tensor outside ``IGNORE_PREFIXES``)."""
        return expected

    def prepare_loaded_state(self, model: nn.Module, state_dict: dict) -> None:
        """Hook run before a file is loaded by ``load_model`` (e.g. PromptKD sizes its stored features)."""
