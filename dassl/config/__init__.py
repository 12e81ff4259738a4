"""Configuration: upstream's default tree plus an extension point for method packages (docs/design.md)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from yacs.config import CfgNode

from .config_node import ConfigNode, UnknownConfigKeyError
from .defaults import _C

__all__ = [
    "ConfigNode",
    "UnknownConfigKeyError",
    "apply_cfg_defaults",
    "clean_cfg",
    "get_cfg_default",
    "register_cfg_defaults",
    "registered_cfg_defaults",
]

logger = logging.getLogger(__name__)

CfgDefaultsFn = Callable[[CfgNode], None]
_REGISTERED_DEFAULTS: list[CfgDefaultsFn] = []


def get_cfg_default() -> ConfigNode:
    """A fresh deep copy of the default tree (upstream's keys and defaults, plus engine keys).

    Mutating the copy never leaks into the next call.
    """
    return _C.clone()


def clean_cfg(cfg: CfgNode, trainer: str) -> None:
    """Drop every ``cfg.TRAINER`` child except ``NAME`` and ``trainer.upper()`` (upstream semantics)."""
    keep = {"NAME", trainer.upper()}
    for key in [k for k in cfg.TRAINER.keys() if k not in keep]:
        del cfg.TRAINER[key]


def register_cfg_defaults(fn: CfgDefaultsFn) -> CfgDefaultsFn:
    """Decorator: register ``fn(cfg)`` that adds a package's keys; applied by ``apply_cfg_defaults``.

    Functions run in registration order. Registering the same function object again is ignored, so a
    package imported twice (or re-decorated) never applies its defaults twice.
    """
    if not callable(fn):
        raise TypeError(f"register_cfg_defaults expects a function fn(cfg), got {fn!r} ({type(fn).__name__})")
    if any(existing is fn for existing in _REGISTERED_DEFAULTS):
        logger.debug("config defaults %s already registered; ignored", getattr(fn, "__qualname__", fn))
        return fn
    _REGISTERED_DEFAULTS.append(fn)
    return fn


def registered_cfg_defaults() -> list[CfgDefaultsFn]:
    """The registered default functions, in the order ``apply_cfg_defaults`` calls them."""
    return list(_REGISTERED_DEFAULTS)


def apply_cfg_defaults(cfg: CfgNode) -> CfgNode:
    """Call every registered defaults function on ``cfg`` (in place) and return it.

    Must run before any YAML/opts merge, because yacs only accepts keys that already exist.
    """
    if cfg.is_frozen():
        raise RuntimeError(
            "apply_cfg_defaults received a frozen config; call it on get_cfg_default() before merging files "
            "and before cfg.freeze()"
        )
    for fn in _REGISTERED_DEFAULTS:
        fn(cfg)
    return cfg
