"""Distillation losses shared by PromptSRC (logit consistency) and PromptKD (§3.6, §4.6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["kl_logit_loss"]


def kl_logit_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T^2 / (B*C) * sum_bc p_t (log p_t - log p_s)`` with ``p = softmax(z / T)`` (KL(teacher || student)).

    Upstream: ``kl_div(log_softmax(z_s/T), softmax(z_t/T), reduction="sum") * T*T / z_s.numel()``. Computed in
    fp32 whatever the autocast dtype of the logits, so the loss is the same formula in every precision; terms
    with ``p_t = 0`` contribute 0.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} "
            "must have the same shape [B, C]"
        )
    if temperature <= 0:
        raise ValueError(f"TEMPERATURE must be > 0, got {temperature}")
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    p_teacher = F.softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, p_teacher, reduction="sum")
    return kl * (temperature * temperature) / student_logits.numel()
