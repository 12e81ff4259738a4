"""``TRAIN.COMPILE``: ``torch.compile`` of a trainer's per-step forwards, with a fallback to eager.

Off by default (``""``). ``default``, ``reduce-overhead`` (CUDA graphs: for small batches, where a step is bound
by kernel launches) and ``max-autotune`` are torch.compile's modes; ``TRAIN.COMPILE_BACKEND`` picks the compiler
(``inductor``; ``aot_eager`` traces without generating code and works everywhere, which is what the CPU tests
use). Compilation happens at the first call; when it fails (no C++/Triton toolchain, an unsupported operator) the
module runs eagerly from then on, said once in the log, with the buffers the failed call may have touched (e.g.
BatchNorm statistics) restored first, so the run is the eager run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dassl.errors import ConfigError

__all__ = ["COMPILE_MODES", "CompiledForward", "check_compile_cfg", "compiled_forward"]

logger = logging.getLogger(__name__)

COMPILE_MODES = ("", "default", "reduce-overhead", "max-autotune")


def check_compile_cfg(cfg: Any) -> None:
    """One-line errors for an unknown ``TRAIN.COMPILE`` mode or ``TRAIN.COMPILE_BACKEND``."""
    mode, backend = str(cfg.TRAIN.COMPILE), str(cfg.TRAIN.COMPILE_BACKEND)
    if mode not in COMPILE_MODES:
        raise ConfigError(f"TRAIN.COMPILE is {mode!r}", "config", f"use one of {list(COMPILE_MODES)} ('' = eager)")
    if mode:
        import torch._dynamo

        backends = torch._dynamo.list_backends(exclude_tags=())
        if backend not in backends:
            raise ConfigError(
                f"TRAIN.COMPILE_BACKEND is {backend!r}", "config", f"use one of {sorted(backends)} (default inductor)"
            )


class CompiledForward:
    """Calls ``module`` through ``torch.compile``; if the first call fails to compile, eagerly from then on."""

    def __init__(self, module: nn.Module, mode: str, backend: str, what: str) -> None:
        self.module = module
        self.what = what
        compile_mode = None if mode == "default" or backend != "inductor" else mode
        self._compiled = torch.compile(module, mode=compile_mode, backend=backend)
        self.state = "untried"  # -> "compiled" or "eager"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.state == "compiled":
            return self._compiled(*args, **kwargs)
        if self.state == "eager":
            return self.module(*args, **kwargs)
        saved = {name: buffer.detach().clone() for name, buffer in self.module.named_buffers()}
        try:
            out = self._compiled(*args, **kwargs)
        except Exception as error:  # any compiler failure: the eager module is the reference behaviour
            with torch.no_grad():
                for name, buffer in self.module.named_buffers():
                    buffer.copy_(saved[name])
            logger.warning(
                "TRAIN.COMPILE: torch.compile of the %s failed (%s); running it eagerly", self.what, _reason(error)
            )
            self.state = "eager"
            return self.module(*args, **kwargs)
        self.state = "compiled"
        return out


def _reason(error: BaseException) -> str:
    """``Type: first line`` of the innermost cause (the compiler's own error, not dynamo's wrapper)."""
    while True:  # dynamo keeps the backend's exception as ``inner_exception``
        inner = getattr(error, "inner_exception", None) or error.__cause__
        if inner is None:
            break
        error = inner
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0][:300]}" if lines else type(error).__name__


def compiled_forward(module: nn.Module, cfg: Any, what: str) -> Callable[..., Any]:
    """``module`` itself when ``TRAIN.COMPILE`` is off, else a :class:`CompiledForward` of it."""
    mode = str(cfg.TRAIN.COMPILE)
    if not mode:
        return module
    return CompiledForward(module, mode, str(cfg.TRAIN.COMPILE_BACKEND), what)
