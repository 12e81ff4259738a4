"""Network builders. Only ``SimpleNet`` is kept (importable) for API compatibility (dassl-api.md section 1.3)."""

from .simple_net import SimpleNet

__all__ = ["SimpleNet"]
