"""Pairwise distances between feature matrices."""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["compute_distance_matrix", "euclidean_squared_distance", "cosine_distance"]


def compute_distance_matrix(input1: torch.Tensor, input2: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    """``[m, n]`` distances between the rows of ``input1`` ``[m, d]`` and ``input2`` ``[n, d]``."""
    if input1.dim() != 2 or input2.dim() != 2:
        raise ValueError(
            f"compute_distance_matrix expects 2-D inputs, got {input1.dim()}-D and {input2.dim()}-D tensors"
        )
    if input1.size(1) != input2.size(1):
        raise ValueError(f"feature dimensions differ: {input1.size(1)} vs {input2.size(1)}")
    if metric == "euclidean":
        return euclidean_squared_distance(input1, input2)
    if metric == "cosine":
        return cosine_distance(input1, input2)
    raise ValueError(f'Unknown distance metric: {metric!r}. Please choose either "euclidean" or "cosine"')


def euclidean_squared_distance(input1: torch.Tensor, input2: torch.Tensor) -> torch.Tensor:
    """Squared L2 distances ``|a|^2 + |b|^2 - 2 a.b``."""
    m, n = input1.size(0), input2.size(0)
    mat1 = torch.pow(input1, 2).sum(dim=1, keepdim=True).expand(m, n)
    mat2 = torch.pow(input2, 2).sum(dim=1, keepdim=True).expand(n, m).t()
    distmat = mat1 + mat2
    return distmat.addmm(input1, input2.t(), beta=1, alpha=-2)


def cosine_distance(input1: torch.Tensor, input2: torch.Tensor) -> torch.Tensor:
    """``1 - cos`` of the L2-normalised rows."""
    input1_normed = F.normalize(input1, p=2, dim=1)
    input2_normed = F.normalize(input2, p=2, dim=1)
    return 1 - torch.mm(input1_normed, input2_normed.t())
