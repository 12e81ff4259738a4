"""Numeric precision of a training run, decided in one place (docs/design.md "Precision").

Upstream CLIP trainers implement ``PREC`` by casting whole models to fp16 (``half``) and training fp16
parameters directly, which makes CPU runs impossible and silently ignores the setting in places.
Here every mode keeps the parameters in fp32 and lowers the precision of
the *activations* through ``torch.autocast``; the GradScaler protects fp16 gradients from underflow on CUDA.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

VALID_PRECISIONS = ("fp16", "fp32", "amp", "bf16")


@dataclass(frozen=True)
class Precision:
    """What a ``PREC`` value means on a given device.

    ``autocast_dtype`` is None when no autocast region is opened (plain fp32 math); ``use_grad_scaler`` is True
    only for fp16 autocast on CUDA, the one case where small gradients underflow.
    """

    name: str
    device_type: str
    autocast_dtype: torch.dtype | None
    use_grad_scaler: bool
    description: str

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Open the autocast region of this precision (a no-op for fp32 math)."""
        if self.autocast_dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device_type, dtype=self.autocast_dtype):
            yield

    def make_grad_scaler(self) -> torch.amp.GradScaler | None:
        """A fresh GradScaler when this precision needs one, else None."""
        if not self.use_grad_scaler:
            return None
        return torch.amp.GradScaler(self.device_type)


def _cuda_supports_bf16() -> bool:
    try:
        return bool(torch.cuda.is_bf16_supported())
    except (AssertionError, RuntimeError):  # no usable CUDA runtime
        return False


def resolve_precision(prec: str, device: torch.device | str) -> Precision:
    """Map a ``PREC`` config value to what is actually run on ``device``.

    - ``fp32``: fp32 math everywhere.
    - ``bf16``: autocast to bfloat16 (CPU and CUDA; CUDA without bf16 support falls back to fp32 math).
    - ``fp16`` / ``amp`` (upstream's values): on CUDA autocast to float16 with a GradScaler; on CPU, where fp16
      kernels are slow or missing, fp32 math (every mode runs on CPU and the log says so).
    """
    if not isinstance(prec, str) or prec.lower() not in VALID_PRECISIONS:
        raise ValueError(
            f"Invalid precision PREC={prec!r}; valid values are {list(VALID_PRECISIONS)}. "
            "Set TRAINER.<NAME>.PREC in the method YAML or on the command line, e.g. 'TRAINER.COOP.PREC fp32'."
        )
    name = prec.lower()
    device_type = torch.device(device).type
    if name == "fp32":
        return Precision(name, device_type, None, False, f"fp32 (no autocast) on {device_type}")
    if name == "bf16":
        if device_type == "cuda" and not _cuda_supports_bf16():
            return Precision(name, device_type, None, False, "bf16 requested but unsupported by this GPU: fp32 math")
        return Precision(name, device_type, torch.bfloat16, False, f"bf16 autocast on {device_type}")
    # fp16 / amp
    if device_type == "cuda":
        return Precision(name, device_type, torch.float16, True, f"{name}: fp16 autocast with GradScaler on cuda")
    return Precision(name, device_type, None, False, f"{name} requested on {device_type}: running fp32 math")


def apply_tf32(precision: Precision, enabled: bool) -> bool:
    """``TRAIN.TF32``: let fp32 CUDA matmuls and convolutions use TF32 tensor cores (10-bit mantissa inputs, fp32
    accumulation; several times the full-fp32 rate on A100/H100/H200) when the run computes in fp32 there.

    Only for ``fp32`` math on CUDA: under autocast the matmuls are bf16/fp16 already, and CPUs have no TF32. Off
    (PyTorch's full-fp32 default) unless asked for. Returns whether TF32 was turned on; sets process-wide flags.
    """
    if not enabled or precision.device_type != "cuda" or precision.autocast_dtype is not None:
        return False
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    logger.info("TRAIN.TF32: TF32 matmuls and convolutions for the fp32 math on cuda")
    return True
