"""What prompt-learning checkpoints hold, and how they are loaded (decisions 9 and 10).

Saving: a model passed to :func:`install_trained_state_checkpointing` returns from ``state_dict()`` only its
trained state -- parameters with ``requires_grad``, persistent buffers (BatchNorm statistics, stored teacher
text features, the GPA accumulator) -- never the frozen CLIP backbone (upstream saves ~86M frozen values per
file). ``load_state_dict(strict=True)`` on such a model (the engine's resume) accepts the missing frozen keys
by name; any other missing or unexpected key still fails.

Loading files (``load_model`` / a PromptKD teacher): :func:`load_trained_state` accepts our reduced files and
full upstream files. Frozen backbone keys in the file are ignored by name, fixed token buffers are dropped,
named extra prefixes (e.g. ``prompt_learner.ZS_image_encoder.``) are ignored, and everything else must match
exactly: a missing trained key, an unknown key or a shape mismatch is an error naming the key.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping

import torch
from torch import nn

__all__ = [
    "TOKEN_BUFFER_KEYS",
    "full_state_dict",
    "install_trained_state_checkpointing",
    "load_trained_state",
    "persistent_buffer_names",
    "state_keys",
    "trained_state_keys",
]

logger = logging.getLogger(__name__)

# Fixed token buffers upstream stores and deletes before loading (methods.md §3.0 table; "2" = PromptKD's).
TOKEN_BUFFER_KEYS = tuple(
    f"prompt_learner.{name}" for name in ("token_prefix", "token_suffix", "token_prefix2", "token_suffix2")
)


def persistent_buffer_names(model: nn.Module) -> list[str]:
    """Names of the buffers that ``state_dict()`` would contain."""
    names = []
    for module_name, module in model.named_modules():
        for buffer_name, buffer in module._buffers.items():
            if buffer is not None and buffer_name not in module._non_persistent_buffers_set:
                names.append(f"{module_name}.{buffer_name}" if module_name else buffer_name)
    return names


def state_keys(model: nn.Module) -> set[str]:
    """Every key of the model's unfiltered state (parameters + persistent buffers)."""
    return {name for name, _ in model.named_parameters(remove_duplicate=False)} | set(persistent_buffer_names(model))


def trained_state_keys(model: nn.Module) -> set[str]:
    """Keys a checkpoint holds: trainable parameters and persistent buffers."""
    trainable = {name for name, param in model.named_parameters() if param.requires_grad}
    return trainable | set(persistent_buffer_names(model))


def _strip_module_prefix(key: str) -> str:
    return key[len("module.") :] if key.startswith("module.") else key


_FULL_STATE = threading.local()


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The unfiltered ``state_dict()`` (frozen backbone included), e.g. to write an upstream-style file."""
    _FULL_STATE.active = True
    try:
        return model.state_dict()
    finally:
        _FULL_STATE.active = False


def _keep_trained_state(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    if getattr(_FULL_STATE, "active", False):
        return
    keep = {prefix + key for key in trained_state_keys(module)}
    for key in [k for k in state_dict if k.startswith(prefix) and k not in keep]:
        del state_dict[key]


def _allow_missing_frozen(module: nn.Module, incompatible_keys) -> None:
    frozen = state_keys(module) - trained_state_keys(module)
    incompatible_keys.missing_keys[:] = [
        key for key in incompatible_keys.missing_keys if _strip_module_prefix(key) not in frozen
    ]


def install_trained_state_checkpointing(model: nn.Module) -> nn.Module:
    """Make ``model.state_dict()`` hold only trained state and let strict loads skip frozen keys."""
    model.register_state_dict_post_hook(_keep_trained_state)
    model.register_load_state_dict_post_hook(_allow_missing_frozen)
    return model


def load_trained_state(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    expected_keys: Iterable[str] | None = None,
    drop_keys: Iterable[str] = TOKEN_BUFFER_KEYS,
    ignore_prefixes: Iterable[str] = (),
    source: str = "checkpoint",
) -> dict[str, list[str]]:
    """Copy the trained tensors of ``state_dict`` into ``model`` with exact key accounting.

    ``expected_keys`` (default :func:`trained_state_keys`) must all be present. Keys of the model outside that
    set (frozen backbone) are ignored by name; ``drop_keys`` and keys under ``ignore_prefixes`` are allowed
    extras; anything else raises. Values are cast to each tensor's dtype (upstream stores fp16 prompts).
    Returns the ``loaded`` / ``ignored`` key lists.
    """
    entries = {_strip_module_prefix(key): value for key, value in state_dict.items()}
    drop_keys = set(drop_keys)
    ignore_prefixes = tuple(ignore_prefixes)
    expected = set(trained_state_keys(model) if expected_keys is None else expected_keys)
    known = state_keys(model)
    ignored, unexpected = [], []
    for key in entries:
        if key in expected:
            continue
        if key in drop_keys or key.startswith(ignore_prefixes) or key in known:
            ignored.append(key)
        else:
            unexpected.append(key)
    missing = sorted(expected - set(entries))
    if missing or unexpected:
        raise KeyError(
            f"{source} does not match {type(model).__name__}: missing keys {missing}, unexpected keys "
            f"{sorted(unexpected)}. Missing trained tensors would stay randomly initialised, so loading stops; "
            "check that the file was produced by this method with the same prompt design (depth, N_CTX)."
        )
    targets = dict(model.named_parameters())
    targets.update(dict(model.named_buffers()))
    loaded = []
    with torch.no_grad():
        for key in sorted(expected):
            target, value = targets[key], entries[key]
            if tuple(target.shape) != tuple(value.shape):
                raise ValueError(
                    f"{source}: tensor {key!r} has shape {tuple(value.shape)} but the model expects "
                    f"{tuple(target.shape)}; the file was produced with a different prompt design or class count."
                )
            target.copy_(value.to(device=target.device, dtype=target.dtype))
            loaded.append(key)
    logger.info(
        "Loaded %d trained tensors from %s (%d frozen/fixed keys ignored by name)", len(loaded), source, len(ignored)
    )
    return {"loaded": loaded, "ignored": ignored}
