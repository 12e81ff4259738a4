"""Distillation losses shared by PromptSRC (logit consistency) and PromptKD, single teacher or a mixture."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["kl_logit_loss", "kl_target_loss"]


def kl_target_loss(student_logits: torch.Tensor, target: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T^2 / (B*C) * sum_bc q (log q - log p_s)`` with ``p_s = softmax(z_s / T)``: KL(target || student).

    ``target`` ``[B, C]`` is a probability distribution per row (a softened teacher, or a mixture of them);
    computed in fp32 whatever the autocast dtype of the logits; terms with ``q = 0`` contribute 0.
    """
    if student_logits.shape != target.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher targets {tuple(target.shape)} "
            "must have the same shape [B, C]"
        )
    if temperature <= 0:
        raise ValueError(f"TEMPERATURE must be > 0, got {temperature}")
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, target.float(), reduction="sum")
    return kl * (temperature * temperature) / student_logits.numel()


def kl_logit_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T^2 / (B*C) * sum_bc p_t (log p_t - log p_s)`` with ``p = softmax(z / T)`` (KL(teacher || student)).

    Upstream: ``kl_div(log_softmax(z_s/T), softmax(z_t/T), reduction="sum") * T*T / z_s.numel()``.
    """
    if temperature <= 0:
        raise ValueError(f"TEMPERATURE must be > 0, got {temperature}")
    return kl_target_loss(student_logits, F.softmax(teacher_logits.float() / temperature, dim=-1), temperature)
