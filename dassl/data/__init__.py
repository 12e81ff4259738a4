"""Data pipeline: datasets, transforms, samplers and the `DataManager`.

``DataManager`` and ``DatasetWrapper`` are resolved lazily (PEP 562) so that importing
``dassl.data.datasets`` (what dataset readers do) does not import torchvision and the loader code.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DataManager", "DatasetWrapper"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import data_manager

        return getattr(data_manager, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
