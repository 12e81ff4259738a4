"""Training progress of a trainer: upstream's iteration line, per-iteration TensorBoard scalars, tqdm bars."""

from __future__ import annotations

import datetime
import sys

from dassl.utils import AverageMeter, MetricMeter

__all__ = ["IterationLogMixin", "progress_disabled"]


def progress_disabled() -> bool:
    """tqdm bars only on an interactive terminal (they would clutter CI logs and redirected stderr)."""
    try:
        return not sys.stderr.isatty()
    except (AttributeError, ValueError):
        return True


class IterationLogMixin:
    """``get_current_lr`` and the line ``epoch [e/E] batch [b/B] time ... data ... <losses> lr ... eta ...``."""

    def get_current_lr(self, names: str | list[str] | None = None) -> float | None:
        """Learning rate of the first registered optimizer (None when nothing trainable is registered)."""
        for name in self.get_model_names(names):
            optim = self._optims[name]
            if optim is not None:
                return optim.param_groups[0]["lr"]
        return None

    def _log_iteration(self, batch_time: AverageMeter, data_time: AverageMeter, losses: MetricMeter) -> None:
        """Upstream's iteration line and the per-iteration TensorBoard scalars."""
        meet_freq = (self.batch_idx + 1) % self.cfg.TRAIN.PRINT_FREQ == 0
        only_few_batches = self.num_batches < self.cfg.TRAIN.PRINT_FREQ
        lr = self.get_current_lr()
        if meet_freq or only_few_batches:
            nb_remain = self.num_batches - self.batch_idx - 1
            nb_remain += (self.max_epoch - self.epoch - 1) * self.num_batches
            eta = str(datetime.timedelta(seconds=int(batch_time.avg * nb_remain)))
            info = [
                f"epoch [{self.epoch + 1}/{self.max_epoch}]",
                f"batch [{self.batch_idx + 1}/{self.num_batches}]",
                f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
                f"data {data_time.val:.3f} ({data_time.avg:.3f})",
                f"{losses}",
                f"lr {lr:.4e}" if lr is not None else "lr n/a",
                f"eta {eta}",
            ]
            print(" ".join(info))
        if self._writer is not None:
            n_iter = self.epoch * self.num_batches + self.batch_idx
            for name, meter in losses.meters.items():
                self.write_scalar("train/" + name, meter.avg, n_iter)
            if lr is not None:
                self.write_scalar("train/lr", lr, n_iter)
