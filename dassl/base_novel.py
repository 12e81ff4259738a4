"""The base-to-novel summary shared by the trainers' evaluation and the result tables.

Torch-free on purpose: ``reporting`` (``parse_test_res.py``) imports it without loading torch.
"""

from __future__ import annotations

__all__ = ["harmonic_mean"]


def harmonic_mean(base: float, novel: float) -> float:
    """HM = 2·B·N / (B + N), the base-to-novel summary of CoCoOp and PromptKD Table 1 (0 when both are 0)."""
    return 0.0 if base + novel == 0 else 2.0 * base * novel / (base + novel)
