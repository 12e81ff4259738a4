"""Dataset registry and builder.

Readers register with ``@DATASET_REGISTRY.register()`` under their class name; ``cfg.DATASET.NAME`` picks one.
"""

from __future__ import annotations

from typing import Any

from dassl.utils import Registry, check_availability

__all__ = ["DATASET_REGISTRY", "build_dataset"]

DATASET_REGISTRY = Registry("DATASET")


def build_dataset(cfg: Any) -> Any:
    """Instantiate the reader named ``cfg.DATASET.NAME`` with ``cfg``.

    An unknown name raises ``ValueError`` listing the registered names and the closest match
    (`check_availability`). Prints ``Loading dataset: {NAME}`` when ``cfg.VERBOSE`` (upstream line).
    """
    available = DATASET_REGISTRY.registered_names()
    check_availability(cfg.DATASET.NAME, available)
    if cfg.VERBOSE:
        print(f"Loading dataset: {cfg.DATASET.NAME}")
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)
