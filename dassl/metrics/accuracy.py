"""Top-k accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["compute_accuracy"]


def compute_accuracy(
    output: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor, topk: Sequence[int] = (1,)
) -> list[torch.Tensor]:
    """Percentage of rows whose target is among the ``k`` highest scores, for each ``k`` in ``topk``.

    Returns one 1-element float tensor per ``k`` (callers use ``[0].item()``). A tuple/list ``output`` uses
    its first element. Works for any ``k`` (upstream's ``.view`` on a non-contiguous slice crashed for k > 1).
    """
    if isinstance(output, (tuple, list)):
        output = output[0]
    if output.dim() != 2:
        raise ValueError(f"compute_accuracy expects scores of shape [batch, classes], got {tuple(output.shape)}")
    maxk = max(topk)
    if maxk > output.size(1):
        raise ValueError(
            f"compute_accuracy: topk={tuple(topk)} asks for more classes than the output has ({output.size(1)})"
        )
    batch_size = target.size(0)
    _, pred = output.topk(maxk, dim=1, largest=True, sorted=True)  # (B, maxk)
    correct = pred.t().eq(target.view(1, -1).expand_as(pred.t()))  # (maxk, B)
    res = []
    for k in topk:
        correct_k = correct[:k].reshape(-1).float().sum(0, keepdim=True)
        res.append(correct_k.mul_(100.0 / batch_size))
    return res
