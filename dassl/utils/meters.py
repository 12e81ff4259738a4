"""Running averages for the iteration log line."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch

__all__ = ["AverageMeter", "MetricMeter"]


class AverageMeter:
    """Latest value and running mean; with ``ema=True`` the mean is ``0.9 * avg + 0.1 * val`` (from 0)."""

    def __init__(self, ema: bool = False) -> None:
        self.ema = ema
        self.reset()

    def reset(self) -> None:
        self.val = 0
        self.avg = 0
        self.sum = 0
        self.count = 0

    def update(self, val: float | torch.Tensor, n: int = 1) -> None:
        if isinstance(val, torch.Tensor):
            val = val.item()
        self.val = val
        self.sum += val * n
        self.count += n
        if self.ema:
            self.avg = self.avg * 0.9 + self.val * 0.1
        else:
            self.avg = self.sum / self.count


class MetricMeter:
    """One ``AverageMeter`` per named loss; ``str()`` gives ``"{name} {val:.4f} ({avg:.4f})"`` per meter."""

    def __init__(self, delimiter: str = " ") -> None:
        self.meters: defaultdict[str, AverageMeter] = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict: dict[str, Any] | None) -> None:
        if input_dict is None:
            return
        if not isinstance(input_dict, dict):
            raise TypeError(f"Input to MetricMeter.update() must be a dictionary, got {type(input_dict).__name__}")
        for key, value in input_dict.items():
            if isinstance(value, torch.Tensor):
                value = value.item()
            self.meters[key].update(value)

    def __str__(self) -> str:
        return self.delimiter.join(f"{name} {meter.val:.4f} ({meter.avg:.4f})" for name, meter in self.meters.items())
