"""``build_lr_scheduler`` and the warmup wrappers.

The schedule values match upstream exactly because the inner schedulers are torch's own ``StepLR``,
``MultiStepLR`` and ``CosineAnnealingLR``, whose recursive updates read the lr the warmup wrapper leaves in
the optimizer. Differences from upstream: no ``verbose`` positional argument (removed from torch), and the
wrapper's ``state_dict`` holds the inner scheduler's *state dict* (plain data) instead of the scheduler
object, so a resumed run keeps stepping the live inner scheduler. Upstream's layout (``successor`` = pickled
scheduler object, read back as a placeholder by ``load_checkpoint``) is still accepted when loading.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, MultiStepLR, StepLR

from ..utils._safe_unpickle import PickledObject

__all__ = ["AVAI_SCHEDS", "ConstantWarmupScheduler", "LinearWarmupScheduler", "build_lr_scheduler"]

logger = logging.getLogger(__name__)

AVAI_SCHEDS = ["single_step", "multi_step", "cosine"]

_INNER_KEY = "inner"


def _inner_state_from_old_layout(successor: Any) -> dict[str, Any]:
    """State dict of an upstream ``successor`` entry: placeholder object, live scheduler or plain dict."""
    if isinstance(successor, PickledObject):
        state = successor.state if isinstance(successor.state, dict) else {}
        if "last_epoch" not in state:
            raise ValueError(
                f"cannot recover the inner scheduler state from the upstream checkpoint entry {successor!r} "
                "(no 'last_epoch' in its pickled state); resume from a checkpoint written by this engine or "
                "start the schedule afresh"
            )
    elif isinstance(successor, LRScheduler):
        state = successor.state_dict()
    elif isinstance(successor, dict):
        state = successor
    else:
        raise TypeError(
            f"scheduler state has an unexpected 'successor' entry of type {type(successor).__name__}; "
            "expected an upstream scheduler object or a state dict"
        )
    return {k: v for k, v in state.items() if k != "optimizer"}


class _BaseWarmupScheduler(LRScheduler):
    """Runs its own warmup lrs for ``warmup_epoch`` steps, then delegates every step to ``successor``."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, successor: LRScheduler, warmup_epoch: int, last_epoch: int = -1
    ) -> None:
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        raise NotImplementedError

    def step(self, epoch: int | None = None) -> None:
        if epoch is not None:
            raise TypeError("warmup schedulers do not accept an explicit epoch; call step() once per epoch")
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step()
            self._last_lr = self.successor.get_last_lr()
        else:
            super().step()

    def state_dict(self) -> dict[str, Any]:
        """Plain data: the wrapper's counters plus the inner scheduler's own state dict."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "successor")}
        state[_INNER_KEY] = self.successor.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Accept our layout (``inner``) and upstream's (``successor`` = pickled scheduler object)."""
        state = dict(state_dict)
        if _INNER_KEY in state:
            inner_state = state.pop(_INNER_KEY)
        elif "successor" in state:
            inner_state = _inner_state_from_old_layout(state.pop("successor"))
        else:
            raise KeyError(
                "scheduler state has neither 'inner' (this engine) nor 'successor' (upstream Dassl); "
                f"keys received: {sorted(state_dict)}"
            )
        state.pop("optimizer", None)
        self.__dict__.update(state)
        self.successor.load_state_dict(inner_state)


class ConstantWarmupScheduler(_BaseWarmupScheduler):
    """lr = ``cons_lr`` for the first ``warmup_epoch`` epochs."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        successor: LRScheduler,
        warmup_epoch: int,
        cons_lr: float,
        last_epoch: int = -1,
    ) -> None:
        self.cons_lr = cons_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        return [self.cons_lr for _ in self.base_lrs]


class LinearWarmupScheduler(_BaseWarmupScheduler):
    """lr = ``min_lr`` in epoch 0, then ``base_lr * epoch / warmup_epoch`` until the warmup ends."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        successor: LRScheduler,
        warmup_epoch: int,
        min_lr: float,
        last_epoch: int = -1,
    ) -> None:
        self.min_lr = min_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        if self.last_epoch == 0:
            return [self.min_lr for _ in self.base_lrs]
        return [lr * self.last_epoch / self.warmup_epoch for lr in self.base_lrs]


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: Any) -> LRScheduler:
    """Scheduler named by ``optim_cfg.LR_SCHEDULER``, wrapped in a warmup when ``WARMUP_EPOCH > 0``.

    Stepped once per epoch by the trainers; the lr in 0-based epoch ``e`` equals upstream Dassl's,
    including its warm-up wrappers and ``WARMUP_RECOUNT``.
    """
    lr_scheduler = optim_cfg.LR_SCHEDULER
    stepsize = optim_cfg.STEPSIZE
    gamma = optim_cfg.GAMMA
    max_epoch = optim_cfg.MAX_EPOCH
    if lr_scheduler not in AVAI_SCHEDS:
        raise ValueError(
            f"scheduler must be one of {AVAI_SCHEDS}, but got {lr_scheduler} (config key OPTIM.LR_SCHEDULER)"
        )

    if lr_scheduler == "single_step":
        if isinstance(stepsize, (list, tuple)):
            stepsize = stepsize[-1]
        if not isinstance(stepsize, int) or isinstance(stepsize, bool):
            raise TypeError(
                f"For single_step lr_scheduler, OPTIM.STEPSIZE must be an integer, but got {type(stepsize).__name__}"
            )
        if stepsize <= 0:
            stepsize = max_epoch
        scheduler: LRScheduler = StepLR(optimizer, step_size=stepsize, gamma=gamma)
    elif lr_scheduler == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise TypeError(
                f"For multi_step lr_scheduler, OPTIM.STEPSIZE must be a list, but got {type(stepsize).__name__}"
            )
        scheduler = MultiStepLR(optimizer, milestones=list(stepsize), gamma=gamma)
    else:
        scheduler = CosineAnnealingLR(optimizer, T_max=float(max_epoch))

    if optim_cfg.WARMUP_EPOCH > 0:
        if not optim_cfg.WARMUP_RECOUNT:
            scheduler.last_epoch = optim_cfg.WARMUP_EPOCH
        if optim_cfg.WARMUP_TYPE == "constant":
            scheduler = ConstantWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_CONS_LR)
        elif optim_cfg.WARMUP_TYPE == "linear":
            scheduler = LinearWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_MIN_LR)
        else:
            raise ValueError(f"OPTIM.WARMUP_TYPE must be 'constant' or 'linear', but got {optim_cfg.WARMUP_TYPE!r}")
    return scheduler
