"""OpenAI-compatible CLIP with prompt-capable encoders, the BPE tokenizer and safe weight loading.

Public API (docs/design.md, section "CLIP"): `available_models`, `load`, `load_state_dict`, `build_model`,
`build_visual`, `tokenize`, `PromptDesign`; modules `clip.model` (CLIP, TextEncoder, ...), `clip.loading`,
`clip.download` (module: `download`, `sha256_file`), `clip.tokenizer`.
This package imports nothing from `dassl`, `trainers` or `datasets`.
"""

from .design import PromptDesign
from .download import ChecksumError
from .loading import (
    CLIPLoadError,
    NotACheckpointError,
    StateDictMismatchError,
    UnknownModelError,
    UntrustedArchiveError,
    available_models,
    build_model,
    build_visual,
    image_transform,
    infer_architecture,
    load,
    load_state_dict,
    resolve_checkpoint,
)
from .tokenizer import SimpleTokenizer, get_tokenizer, tokenize

__all__ = [
    "CLIPLoadError",
    "ChecksumError",
    "NotACheckpointError",
    "PromptDesign",
    "SimpleTokenizer",
    "StateDictMismatchError",
    "UnknownModelError",
    "UntrustedArchiveError",
    "available_models",
    "build_model",
    "build_visual",
    "get_tokenizer",
    "image_transform",
    "infer_architecture",
    "load",
    "load_state_dict",
    "resolve_checkpoint",
    "tokenize",
]
