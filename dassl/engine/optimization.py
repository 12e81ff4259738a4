"""The optimisation step of a trainer: autocast, (scaled) backward, optimizer steps, lr steps, non-finite losses.

Precision comes from one resolved :class:`dassl.engine.precision.Precision` (``autocast()`` region and, for fp16
on CUDA, a ``GradScaler``); models are never cast. A non-finite loss stops training with the epoch and batch
named, whether it reaches ``model_backward`` or is only reported by ``forward_backward``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from dassl.errors import NonFiniteLossError

from . import distributed as ddp
from .precision import Precision

__all__ = ["OptimizationMixin"]


class OptimizationMixin:
    """Upstream's ``model_zero_grad`` / ``model_backward`` / ``model_update`` / ``update_lr`` family."""

    precision: Precision | None = None
    grad_scaler: torch.amp.GradScaler | None = None
    _optims: dict[str, Any]
    _scheds: dict[str, Any]
    _grad_sync_modules: list[nn.Module]

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast region of the run's precision (plain fp32 when no precision was resolved)."""
        if self.precision is None:
            return contextlib.nullcontext()
        return self.precision.autocast()

    def update_lr(self, names: str | list[str] | None = None) -> None:
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def is_last_batch(self) -> bool:
        """Whether the batch being trained is the last of its epoch."""
        return (self.batch_idx + 1) == self.num_batches

    def update_lr_after_last_batch(self, names: str | list[str] | None = None) -> bool:
        """Step the schedulers once per epoch, after its last batch (upstream trainers' rule, called from
        ``forward_backward``); returns whether this was the last batch (for other once-per-epoch work)."""
        last = self.is_last_batch()
        if last:
            self.update_lr(names)
        return last

    def _raise_non_finite(self, what: str, value: torch.Tensor) -> None:
        raise NonFiniteLossError(
            f"Loss is infinite or NaN! (epoch {getattr(self, 'epoch', 0) + 1}/{getattr(self, 'max_epoch', '?')}, "
            f"batch {getattr(self, 'batch_idx', 0) + 1}/{getattr(self, 'num_batches', '?')}, "
            f"{what}={value.detach().float().flatten()[:4].tolist()}). "
            "Lower OPTIM.LR, check the input data, or train with PREC fp32."
        )

    def detect_anomaly(self, loss: torch.Tensor) -> None:
        """Stop at the first non-finite loss, naming where it happened."""
        if not torch.isfinite(loss).all():
            self._raise_non_finite("loss", loss)

    def check_loss_summary(self, loss_summary: Any) -> None:
        """Stop on a non-finite reported loss even when the trainer did its own backward pass."""
        if not isinstance(loss_summary, dict):
            return
        for key, value in loss_summary.items():
            number = value.detach().float() if torch.is_tensor(value) else torch.tensor(float(value))
            if not torch.isfinite(number).all():
                self._raise_non_finite(key, number)

    def model_zero_grad(self, names: str | list[str] | None = None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss: torch.Tensor) -> None:
        """Backward pass (scaled under fp16 autocast); gradients of modules outside DDP are averaged."""
        self.detect_anomaly(loss)
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
        else:
            loss.backward()
        if self._grad_sync_modules:
            ddp.all_reduce_gradients(self._grad_sync_modules)

    def model_update(self, names: str | list[str] | None = None) -> None:
        scaler = self.grad_scaler
        stepped = False
        for name in self.get_model_names(names):
            optim = self._optims[name]
            if optim is None:
                continue
            if scaler is None:
                optim.step()
            elif any(p.grad is not None for group in optim.param_groups for p in group["params"]):
                scaler.step(optim)  # skips the step when the scaled gradients overflowed
                stepped = True
        if scaler is not None and stepped:
            scaler.update()

    def model_backward_and_update(self, loss: torch.Tensor, names: str | list[str] | None = None) -> None:
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)
