"""``build_optimizer`` driven by ``cfg.OPTIM``."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn

__all__ = ["AVAI_OPTIMS", "build_optimizer"]

logger = logging.getLogger(__name__)

AVAI_OPTIMS = ["adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw"]


def _staged_param_groups(model: Any, optim_cfg: Any) -> list[dict[str, Any]]:
    """Two groups: pre-trained children at ``LR * BASE_LR_MULT`` and ``NEW_LAYERS`` at ``LR``."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            "When OPTIM.STAGED_LR is True, build_optimizer needs an nn.Module (to find OPTIM.NEW_LAYERS by "
            f"child name), but got {type(model).__name__}"
        )
    if isinstance(model, nn.DataParallel):
        model = model.module
    new_layers = optim_cfg.NEW_LAYERS
    if isinstance(new_layers, str):
        new_layers = [new_layers]
    if not new_layers:
        logger.warning("OPTIM.STAGED_LR is True but OPTIM.NEW_LAYERS is empty: every layer gets the base lr")
    children = dict(model.named_children())
    unknown = [name for name in new_layers if name not in children]
    if unknown:
        raise ValueError(
            f"OPTIM.NEW_LAYERS names {unknown}, which are not direct children of the model; "
            f"available children: {list(children)}"
        )
    base_params, new_params = [], []
    for name, module in children.items():
        (new_params if name in new_layers else base_params).extend(module.parameters())
    return [
        {"params": base_params, "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT},
        {"params": new_params},
    ]


def build_optimizer(
    model: nn.Module | Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    optim_cfg: Any,
    param_groups: list[dict[str, Any]] | None = None,
) -> torch.optim.Optimizer:
    """Create the optimiser named by ``optim_cfg.NAME`` over ``model``'s parameters (or the given ones).

    ``model`` may be an ``nn.Module`` or an iterable of tensors / param-group dicts. ``param_groups``, when
    given, takes precedence over ``OPTIM.STAGED_LR``. Frozen parameters are passed too (they get no gradient).
    """
    name = optim_cfg.NAME
    if name not in AVAI_OPTIMS:
        raise ValueError(f"optim must be one of {AVAI_OPTIMS}, but got {name} (config key OPTIM.NAME)")
    lr = optim_cfg.LR
    weight_decay = optim_cfg.WEIGHT_DECAY
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)

    if param_groups is not None:
        if optim_cfg.STAGED_LR:
            logger.warning("STAGED_LR is ignored because explicit param_groups were given to build_optimizer")
        params: Any = param_groups
    elif optim_cfg.STAGED_LR:
        params = _staged_param_groups(model, optim_cfg)
    elif isinstance(model, nn.Module):
        params = model.parameters()
    else:
        params = model

    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=betas)
    if name == "amsgrad":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=betas, amsgrad=True)
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=optim_cfg.MOMENTUM,
            weight_decay=weight_decay,
            dampening=optim_cfg.SGD_DAMPNING,
            nesterov=optim_cfg.SGD_NESTEROV,
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=weight_decay, alpha=optim_cfg.RMSPROP_ALPHA
        )
    if name == "radam":
        return torch.optim.RAdam(params, lr=lr, weight_decay=weight_decay, betas=betas)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas)
