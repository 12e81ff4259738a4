"""Network builders. Only ``SimpleNet`` is kept (importable) for API compatibility."""

from .simple_net import SimpleNet

__all__ = ["SimpleNet"]
