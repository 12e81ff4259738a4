"""Prompt-learning trainers; importing this package registers every trainer and its config defaults.

Registered names (``--trainer``): ZeroshotCLIP, ZeroshotCLIP2, CoOp, CoCoOp, IVLP, MaPLe, PromptSRC, PromptKD.
Shared pieces live in :mod:`trainers.common`.
"""

import importlib
import importlib.util

from . import common  # noqa: F401  (registers TRAINER.MODAL)

# Modules written in parallel by another engineer are imported only once they exist (guard removed later).
for _name in ("zsclip", "coop", "cocoop", "maple", "ivlp", "promptsrc", "promptkd"):
    if importlib.util.find_spec(f"{__name__}.{_name}") is not None:
        importlib.import_module(f"{__name__}.{_name}")
