"""Dassl-compatible engine for CLIP prompt learning (API of Dassl.pytorch 0.6.3, see docs/design.md)."""

__version__ = "0.6.3"
__author__ = "promptkd contributors"
__homepage__ = "https://github.com/KaiyangZhou/Dassl.pytorch"
