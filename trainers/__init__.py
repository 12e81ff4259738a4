"""Prompt-learning trainers; importing this package registers every trainer and its config defaults.

Registered names (``--trainer``): ZeroshotCLIP, ZeroshotCLIP2, CoOp, CoCoOp, IVLP, MaPLe, PromptSRC, PromptKD, ProDA.
Shared pieces live in :mod:`trainers.common`.
"""

from . import (  # noqa: F401  (registration side effects)
    cocoop,
    common,  # noqa: F401  (registers TRAINER.MODAL)
    coop,
    ivlp,
    maple,
    proda,
    promptkd,
    promptsrc,
    zsclip,
)
