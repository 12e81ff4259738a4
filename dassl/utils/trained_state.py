"""The trained state of a partly frozen model: what its checkpoints hold and how a resume restores it.

Prompt learning trains a few thousand values on top of a frozen backbone of ~86M; saving the backbone into every
epoch file (as upstream does) costs hundreds of MB per file and restores nothing. The trained state is every
parameter with ``requires_grad`` plus every persistent buffer (BatchNorm statistics, stored class features,
accumulators), so that a resumed run continues bit-identically.

The engine calls :func:`trained_state_dict` when it saves a model registered with ``trained_state_only=True`` and
:func:`load_trained_state_dict` when it resumes one; ``model.state_dict()`` itself is never changed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn

from .checkpoint_files import strip_module_prefix

__all__ = [
    "load_trained_state_dict",
    "persistent_buffer_names",
    "state_keys",
    "trained_state_dict",
    "trained_state_keys",
]


def persistent_buffer_names(model: nn.Module) -> list[str]:
    """Names of the buffers that ``state_dict()`` contains."""
    names = []
    for module_name, module in model.named_modules():
        for buffer_name, buffer in module._buffers.items():
            if buffer is not None and buffer_name not in module._non_persistent_buffers_set:
                names.append(f"{module_name}.{buffer_name}" if module_name else buffer_name)
    return names


def state_keys(model: nn.Module) -> set[str]:
    """Every key of the model's full state (parameters + persistent buffers)."""
    return {name for name, _ in model.named_parameters(remove_duplicate=False)} | set(persistent_buffer_names(model))


def trained_state_keys(model: nn.Module) -> set[str]:
    """Keys of the trained state: trainable parameters and persistent buffers."""
    trainable = {name for name, param in model.named_parameters() if param.requires_grad}
    return trainable | set(persistent_buffer_names(model))


def trained_state_dict(model: nn.Module) -> OrderedDict[str, torch.Tensor]:
    """``model.state_dict()`` restricted to :func:`trained_state_keys`, in the same order."""
    keep = trained_state_keys(model)
    return OrderedDict((key, value) for key, value in model.state_dict().items() if key in keep)


def load_trained_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """``model.load_state_dict(state_dict)`` that accepts exactly the frozen keys as missing.

    Any other missing key, and any unexpected key, raises ``RuntimeError`` naming it (as a strict load does).
    """
    entries = OrderedDict((strip_module_prefix(key), value) for key, value in state_dict.items())
    result = model.load_state_dict(entries, strict=False)
    frozen = state_keys(model) - trained_state_keys(model)
    missing = [key for key in result.missing_keys if key not in frozen]
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"Error(s) in loading the trained state of {type(model).__name__}: missing keys {missing}, "
            f"unexpected keys {result.unexpected_keys}; the checkpoint was written by a different model or "
            "prompt design."
        )
