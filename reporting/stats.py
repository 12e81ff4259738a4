"""Mean and spread over seeds (the base/novel harmonic mean is dassl.base_novel.harmonic_mean)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CI95_Z = 1.96  # normal approximation, as upstream's --ci95


@dataclass(frozen=True)
class Stat:
    """A value averaged over seeds.

    ``spread`` is the sample standard deviation (ddof=1) of ``values``, or with ``ci95`` the half-width
    ``1.96 * s / sqrt(n)``; None for a single seed, where neither is defined. ``partial`` marks a value
    computed over fewer seeds (or datasets) than expected.
    """

    mean: float
    spread: float | None
    n: int
    values: tuple[float, ...] = ()
    partial: bool = False


def spread_of(values: list[float] | tuple[float, ...], ci95: bool, ddof: int = 1) -> float | None:
    """NumPy's std of ``values`` with ``ddof``, or with ``ci95`` the 95% confidence half-width ``1.96 * s / sqrt(n)``.

    ``ddof=1`` (sample std) for our tables; ``ddof=0`` (population std) is what upstream's tool prints. None when
    there are not more than ``ddof`` values (a single seed has no sample std).
    """
    if len(values) <= ddof:
        return None
    std = float(np.std(values, ddof=ddof))
    return CI95_Z * std / math.sqrt(len(values)) if ci95 else std


def summarize(values: list[float], ci95: bool, expected: int | None = None) -> Stat | None:
    """Mean and spread of per-seed values; ``partial`` when fewer than ``expected`` seeds contributed."""
    if not values:
        return None
    partial = expected is not None and len(values) < expected
    return Stat(sum(values) / len(values), spread_of(values, ci95), len(values), tuple(values), partial)
