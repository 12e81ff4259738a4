"""Precision resolution (docs/design.md "Precision") and its use by the trainer on CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dassl.engine.precision import VALID_PRECISIONS, resolve_precision


@pytest.mark.parametrize(
    ("prec", "dtype", "scaler", "words"),
    [
        ("fp32", None, False, "fp32 (no autocast)"),
        ("bf16", torch.bfloat16, False, "bf16 autocast on cpu"),
        ("fp16", None, False, "fp16 requested on cpu: running fp32 math"),
        ("amp", None, False, "amp requested on cpu: running fp32 math"),
    ],
)
def test_cpu_resolution(prec, dtype, scaler, words):
    p = resolve_precision(prec, torch.device("cpu"))
    assert (p.name, p.device_type, p.autocast_dtype, p.use_grad_scaler) == (prec, "cpu", dtype, scaler)
    assert words in p.description
    assert p.make_grad_scaler() is None


@pytest.mark.parametrize("prec", ["fp16", "amp"])
def test_cuda_fp16_uses_autocast_and_grad_scaler(prec):
    # resolution is pure logic: no GPU needed to check what CUDA would get
    p = resolve_precision(prec, "cuda:0")
    assert p.autocast_dtype == torch.float16 and p.use_grad_scaler and p.device_type == "cuda"


def test_invalid_precision_lists_valid_values():
    with pytest.raises(ValueError, match=r"PREC='fp8'.*\['fp16', 'fp32', 'amp', 'bf16'\]"):
        resolve_precision("fp8", "cpu")
    assert VALID_PRECISIONS == ("fp16", "fp32", "amp", "bf16")


def test_bf16_autocast_really_lowers_cpu_matmul():
    torch.manual_seed(0)
    layer = nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with resolve_precision("bf16", "cpu").autocast():
        y_bf16 = layer(x)
    with resolve_precision("fp16", "cpu").autocast():
        y_fp32 = layer(x)
    assert y_bf16.dtype == torch.bfloat16
    assert y_fp32.dtype == torch.float32
    assert layer.weight.dtype == torch.float32  # parameters stay fp32
    torch.testing.assert_close(y_bf16.float(), y_fp32, atol=5e-2, rtol=5e-2)
    assert not torch.equal(y_bf16.float(), y_fp32)  # bf16 rounding is visible
