"""Rank and world-size queries of the running ``torch.distributed`` process group (torchrun launches).

A leaf module so that the data loaders, the evaluator and the engine (``dassl.engine.distributed``) share one
definition without importing each other.
"""

from __future__ import annotations

import os

import torch.distributed as dist

__all__ = ["env_world_size", "env_rank", "is_distributed", "get_rank", "get_world_size", "is_main_process"]


def env_world_size() -> int:
    """World size announced by the launcher (torchrun sets ``WORLD_SIZE``); 1 when not launched that way."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    """Global rank announced by the launcher; 0 when not launched by torchrun."""
    env = os.environ.get("RANK", "0")
    try:
        return int(env)
    except ValueError as e:
        raise ValueError(f"environment variable RANK={env!r} is not an integer rank") from e


def is_distributed() -> bool:
    """True once a process group with more than one member is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """Global rank of this process (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else env_rank()


def get_world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Only rank 0 writes files (log.txt, results.jsonl, checkpoints, tensorboard) and prints results."""
    return get_rank() == 0
