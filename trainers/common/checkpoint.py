"""Loading prompt-learning weights written by this code or by the official repositories.

Our checkpoints hold only the trained state (:mod:`dassl.utils.trained_state`); the official ones hold the whole
model, frozen CLIP backbone included, and the fixed token buffers of the prompt learner. :func:`load_trained_state`
reads both: frozen backbone keys in the file are ignored by name, the token buffers are dropped, named extra
prefixes (e.g. ``prompt_learner.ZS_image_encoder.``) are ignored, and everything else must match exactly: a
missing trained key, an unknown key or a shape mismatch is an error naming the key (a silent non-strict load
could leave prompts randomly initialised).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from dassl.errors import CheckpointError, CheckpointMismatchError
from dassl.utils.checkpoint_files import strip_module_prefix
from dassl.utils.trained_state import state_keys, trained_state_keys

__all__ = ["TOKEN_BUFFER_KEYS", "load_trained_state"]

logger = logging.getLogger(__name__)

# Buffers fixed by the class names (the embedded prompt prefix/suffix tokens) that official files store; the model
# rebuilds them from the class names, so they are dropped ("2": PromptKD's second text prompt).
TOKEN_BUFFER_KEYS = tuple(
    f"prompt_learner.{name}" for name in ("token_prefix", "token_suffix", "token_prefix2", "token_suffix2")
)


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
    entries = {strip_module_prefix(key): value for key, value in state_dict.items()}
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
        raise CheckpointMismatchError(
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
                raise CheckpointError(
                    f"{source}: tensor {key!r} has shape {tuple(value.shape)} but the model expects "
                    f"{tuple(target.shape)}; the file was produced with a different prompt design or class count."
                )
            target.copy_(value.to(device=target.device, dtype=target.dtype))
            loaded.append(key)
    logger.info(
        "Loaded %d trained tensors from %s (%d frozen/fixed keys ignored by name)", len(loaded), source, len(ignored)
    )
    return {"loaded": loaded, "ignored": ignored}
