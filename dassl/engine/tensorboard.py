"""Optional TensorBoard scalars of a trainer (upstream Dassl's ``init_writer`` / ``write_scalar`` names).

TensorBoard is imported lazily: without it training goes on and scalars are not written.
"""

from __future__ import annotations

import logging

__all__ = ["TensorBoardMixin"]

logger = logging.getLogger(__name__)


class TensorBoardMixin:
    """``init_writer(log_dir)``, ``write_scalar(tag, value, step)``, ``close_writer()``; no-ops without a writer."""

    _writer = None

    def init_writer(self, log_dir: str) -> None:
        """Create a TensorBoard writer; training goes on without one when tensorboard is not installed."""
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:  # tensorboard is optional
                logger.warning("TensorBoard unavailable (%s); scalars are not written", err)
                return
            print(f"Initialize tensorboard (log_dir={log_dir})")
            self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_scalar(self, tag: str, scalar_value, global_step: int | None = None) -> None:
        if self._writer is None:
            return
        self._writer.add_scalar(tag, scalar_value, global_step)
