"""Multi-process (torchrun) support: process group, rank queries and DDP wrapping.

Upstream Dassl only knows ``nn.DataParallel``, chosen by ``torch.cuda.device_count() > 1`` even when
``USE_CUDA=False``. We use one device decision and, when launched by torchrun
(``WORLD_SIZE > 1``), DistributedDataParallel with one process per device.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dassl.utils.process_group import (
    env_rank,
    env_world_size,
    get_rank,
    get_world_size,
    is_distributed,
    is_main_process,
)

__all__ = [
    "env_rank",
    "env_world_size",
    "get_rank",
    "get_world_size",
    "is_distributed",
    "is_main_process",
    "select_device",
    "init_distributed",
    "TransparentDDP",
    "wrap_ddp",
    "wrap_registered_models",
    "all_reduce_gradients",
]

logger = logging.getLogger(__name__)


def select_device(use_cuda: bool) -> torch.device:
    """The one device decision: ``cuda:LOCAL_RANK`` when CUDA is available and wanted, else ``cpu``."""
    if use_cuda and torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device: torch.device) -> bool:
    """Join the process group when ``WORLD_SIZE > 1`` (nccl on CUDA, gloo on CPU); return whether distributed.

    Uses the ``env://`` rendezvous torchrun provides (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``,
    ``WORLD_SIZE``). A group initialised by the caller is reused.
    """
    if env_world_size() <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
        logger.info(
            "Initialised process group: backend=%s rank=%d world_size=%d", backend, get_rank(), env_world_size()
        )
    return dist.get_world_size() > 1


class TransparentDDP(DistributedDataParallel):
    """DDP wrapper that forwards unknown attribute reads to the wrapped module and skips DDP without grad.

    Upstream-style trainers read attributes of ``self.model`` (``self.model.prompt_learner``, ...); with a plain
    wrapper those reads fail. Forwards under ``torch.no_grad()`` (evaluation, frozen
    teacher passes) call the module directly: DDP would otherwise broadcast buffers at every forward, a
    collective that hangs when ranks hold evaluation shards with different numbers of batches.
    """

    def forward(self, *args, **kwargs):
        if not torch.is_grad_enabled():
            return self.module(*args, **kwargs)
        return super().forward(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def wrap_ddp(module: nn.Module, device: torch.device) -> TransparentDDP:
    """Wrap ``module`` for gradient averaging across ranks.

    ``find_unused_parameters=True`` because prompt learners may leave some trainable prompts out of a forward
    (e.g. a text-side prompt a student never uses).
    """
    device_ids = [device.index] if device.type == "cuda" else None
    return TransparentDDP(module, device_ids=device_ids, find_unused_parameters=True)


def wrap_registered_models(
    top: nn.Module | None, registered: Mapping[str, nn.Module | None], device: torch.device
) -> tuple[nn.Module | None, list[nn.Module]]:
    """DDP for a trainer: ``(top, modules whose gradients must be averaged explicitly)``.

    ``top`` (the trainer's ``self.model``) is wrapped in DDP when a trainable registered module is (inside) it.
    Registered modules stay unwrapped (checkpoints hold their plain keys). A trainable registered module that is
    not reachable from ``top`` gets its initial weights broadcast from rank 0 and is returned in the list, for
    :func:`all_reduce_gradients` after every backward.
    """
    wrapped = False
    grad_sync: list[nn.Module] = []
    for name, module in registered.items():
        if module is None or not any(p.requires_grad for p in module.parameters()):
            continue
        if isinstance(top, nn.Module) and any(m is module for m in top.modules()):
            if not wrapped:
                top = wrap_ddp(top, device)
                wrapped = True
                logger.info("DDP: wrapped self.model (contains registered model %r)", name)
        else:
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src=0)
            grad_sync.append(module)
            logger.info("DDP: registered model %r is outside self.model; gradients averaged explicitly", name)
    return top, grad_sync


def all_reduce_gradients(modules: list[nn.Module]) -> None:
    """Average the gradients of ``modules`` across ranks (for trainable modules whose forward bypasses DDP)."""
    world = get_world_size()
    for module in modules:
        for p in module.parameters():
            if p.requires_grad and p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad.div_(world)
