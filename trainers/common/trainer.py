"""``CLIPPromptTrainer``: what the CLIP prompt-learning trainers (CoOp, CoCoOp, IVLP, MaPLe, PromptSRC, PromptKD)
share.

- ``check_cfg``: ``TRAINER.<NAME>.PREC`` must be one of the engine's precisions.
- ``parse_batch_train`` / ``parse_batch_test``: ``(image, label)`` on the trainer's device.
- ``forward_backward``: the supervised cross-entropy step of CoOp, CoCoOp, IVLP and MaPLe (PromptSRC and
  PromptKD override it); ``REPORT_ACCURACY`` adds the batch accuracy.
- ``register_prompt_model``: freezing already done by the caller; moves the model to the device, builds SGD +
  scheduler over the model's parameters and registers it under ``MODEL_NAME`` with ``trained_state_only`` (its
  checkpoints hold the prompts, not the frozen CLIP). ``VLPromptLearner`` for IVLP, PromptSRC and PromptKD, as
  upstream; CoOp/CoCoOp register only their prompt learner, MaPLe uses ``MultiModalPromptLearner``.
- ``inference_model``: the model for prediction and export (``trainers.common.inference``).
- ``load_model`` is the engine's (same file rule, same console line); :meth:`load_model_state` reads our files and
  the official full ones through :func:`load_trained_state` (token buffers dropped, frozen keys ignored by name,
  everything else must match).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode

from dassl.engine import TrainerX
from dassl.engine.checkpointing import state_dict_of
from dassl.engine.precision import VALID_PRECISIONS
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_checkpoint
from dassl.utils.checkpoint_files import resolve_checkpoint_file
from dassl.utils.trained_state import trained_state_keys

from .checkpoint import TOKEN_BUFFER_KEYS, load_trained_state
from .config import trainer_node
from .inference import InferenceModel, fixed_classifier

__all__ = ["CLIPPromptTrainer", "resolve_checkpoint_file"]

logger = logging.getLogger(__name__)


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
        """One supervised step (CoOp, CoCoOp, IVLP, MaPLe): cross-entropy of the logits on the
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
        self.update_lr_after_last_batch()
        return summary

    def register_prompt_model(self, model: nn.Module, registered: nn.Module | None = None) -> None:
        """Load ``MODEL.INIT_WEIGHTS`` if set, move to device, build optimizer/scheduler, register with
        trained-state checkpoints.

        ``registered`` (default ``model``) is the part that is optimised, checkpointed and registered under
        ``MODEL_NAME`` (CoOp/CoCoOp: the prompt learner alone); ``self.model`` is always the whole ``model``.
        """
        registered = model if registered is None else registered
        if self.cfg.MODEL.INIT_WEIGHTS:
            self._load_file_into(registered, self.cfg.MODEL.INIT_WEIGHTS)
        model.to(self.device)
        self.model = model
        self.optim = build_optimizer(registered, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model(self.MODEL_NAME, registered, self.optim, self.sched, trained_state_only=True)

    def inference_model(self) -> InferenceModel:
        """The trained model as prediction runs it (``predict.py``): images -> the logits the evaluator counts.

        Default: a fixed classifier over ``self.model``'s image tower with its class features encoded once;
        methods whose classifier is not of that form override this."""
        self.set_model_mode("eval")
        return fixed_classifier(self.model)

    def load_model_state(self, name: str, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
        """Our trained-state files and the official full files, with exact key accounting."""
        self._load_state_into(self._models[name], state_dict, source)

    def _load_file_into(self, model: nn.Module, path: str) -> None:
        """Load ``MODEL.INIT_WEIGHTS`` (a file of ours or of the official code) into ``model``."""
        checkpoint = load_checkpoint(path)
        logger.info(
            'Loading weights to %s from "%s" (epoch = %s)', self.MODEL_NAME, path, checkpoint.get("epoch", "n/a")
        )
        self._load_state_into(model, state_dict_of(checkpoint), path)

    def _load_state_into(self, model: nn.Module, state_dict: Mapping[str, torch.Tensor], path: str) -> None:
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

    def expected_load_keys(self, expected: set[str], state_dict: dict) -> set[str]:
        """Hook: the keys a file must provide (default: every trained tensor outside ``IGNORE_PREFIXES``)."""
        return expected

    def prepare_loaded_state(self, model: nn.Module, state_dict: dict) -> None:
        """Hook run before a file is loaded by ``load_model`` (e.g. PromptKD sizes its stored features)."""
