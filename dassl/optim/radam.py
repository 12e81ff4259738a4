"""RAdam / AdamW under Dassl's names, backed by torch's implementations.

Dassl shipped its own RAdam, PlainRAdam and AdamW written with deprecated tensor-op overloads. torch's
``RAdam`` implements the same rectified update (Liu et al., "On the Variance of the Adaptive Learning Rate
and Beyond", ICLR 2020), including the SGD-with-momentum-style step while the variance is not tractable
(rho_t <= 5), i.e. Dassl's default ``degenerated_to_sgd=True``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["RAdam", "PlainRAdam", "AdamW"]


class RAdam(torch.optim.RAdam):
    """torch ``RAdam`` accepting Dassl's constructor arguments."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        degenerated_to_sgd: bool = True,
    ) -> None:
        if not degenerated_to_sgd:
            raise ValueError(
                "RAdam(degenerated_to_sgd=False) is not supported: torch.optim.RAdam always takes the "
                "un-rectified momentum step while rho_t <= 5; use the default degenerated_to_sgd=True"
            )
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


class PlainRAdam(RAdam):
    """Dassl's RAdam without the per-step buffer cache; mathematically the same update as :class:`RAdam`."""


class AdamW(torch.optim.AdamW):
    """torch ``AdamW`` accepting Dassl's ``warmup`` argument (only 0, its default, is supported)."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        warmup: int = 0,
    ) -> None:
        if warmup != 0:
            raise ValueError(
                f"AdamW(warmup={warmup}) is not supported; use OPTIM.WARMUP_EPOCH for learning-rate warmup"
            )
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
