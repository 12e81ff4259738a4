"""Image transforms built from ``cfg.INPUT``."""

from .transforms import AVAI_CHOICES, INTERPOLATION_MODES, build_transform, get_interpolation_mode

__all__ = ["AVAI_CHOICES", "INTERPOLATION_MODES", "build_transform", "get_interpolation_mode"]
