"""Checkpoint and weight helpers with upstream Dassl's names and file layout.

Which file of a model folder is loaded is decided in :mod:`dassl.utils.checkpoint_files`; here files are
written (atomically) and read (without executing pickled code). Where and why this differs from upstream is
listed in ``docs/upstream.md``.
"""

from __future__ import annotations

import errno
import logging
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn as nn

from dassl.errors import CheckpointError, InputFileError, UnsafePickleError

from ._safe_unpickle import restricted_torch_load
from .atomic import atomic_copy_file, atomic_torch_save, atomic_write_text
from .checkpoint_files import (
    BEST_FILE,
    POINTER_FILE,
    epoch_file_name,
    find_resume_file,
    strip_module_prefix,
)
from .tools import mkdir_if_missing

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "resume_from_checkpoint",
    "open_all_layers",
    "open_specified_layers",
    "count_num_param",
    "load_pretrained_weights",
    "init_network_weights",
]

logger = logging.getLogger(__name__)


def save_checkpoint(
    state: dict[str, Any],
    save_dir: str,
    is_best: bool = False,
    remove_module_from_keys: bool = True,
    model_name: str = "",
) -> str:
    """Save ``state`` (keys ``state_dict``, ``epoch``, ``optimizer``, ``scheduler``, ``val_result``) atomically.

    The file is ``model_name`` or ``model.pth.tar-{epoch}``. The ``checkpoint`` pointer is rewritten only for
    epoch files (not for a ``model_name`` such as ``model-best.pth.tar``), so it always names the latest epoch
    (upstream pointed it at the best copy too). ``is_best`` also writes ``model-best.pth.tar``. Returns the path.
    """
    mkdir_if_missing(save_dir)
    if remove_module_from_keys and "state_dict" in state:
        state = dict(state)
        state["state_dict"] = OrderedDict((strip_module_prefix(k), v) for k, v in state["state_dict"].items())

    fname = model_name or epoch_file_name(state["epoch"])
    fpath = os.path.join(save_dir, fname)
    atomic_torch_save(state, fpath)
    print(f"Checkpoint saved to {fpath}")

    is_epoch_file = not model_name or model_name.startswith("model.pth.tar-")
    if is_epoch_file:
        atomic_write_text(f"{os.path.basename(fpath)}\n", os.path.join(save_dir, POINTER_FILE))

    if is_best:
        best_fpath = os.path.join(os.path.dirname(fpath), BEST_FILE)
        atomic_copy_file(fpath, best_fpath)
        print(f'Best checkpoint saved to "{best_fpath}"')
    return fpath


def load_checkpoint(fpath: str | os.PathLike | None, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint without executing pickled code (a checkpoint from the internet must not run code).

    ``torch.load(weights_only=True)`` first. Files that pickle other objects (every upstream Dassl checkpoint
    stores scheduler objects) are then read by a restricted unpickler that rebuilds tensors and plain
    containers and turns optimizer/scheduler objects into inert :class:`PickledObject` placeholders. A file
    that pickles any other global (``posix.system`` ...) is refused with :class:`UnsafePickleError` naming the
    file and the global. Tensors are mapped to ``map_location`` (CPU by default; trainers move models).
    """
    if fpath is None:
        raise ValueError("File path is None")
    fpath = os.fspath(fpath)
    if not os.path.exists(fpath):
        raise InputFileError("checkpoint file not found", fpath, "check the path")
    if os.path.isdir(fpath):
        raise IsADirectoryError(
            errno.EISDIR, "a checkpoint path is a folder; pass the file (model-best.pth.tar)", fpath
        )

    encoding = "ASCII"
    try:
        return torch.load(fpath, map_location=map_location, weights_only=True)
    except UnicodeDecodeError as e:
        encoding = "latin1"  # checkpoints written by Python 2; passed per call, pickle is never patched
        first_error: Exception = e
        try:
            return torch.load(fpath, map_location=map_location, weights_only=True, encoding=encoding)
        except Exception as e2:  # noqa: BLE001 - retried below with the restricted unpickler
            first_error = e2
    except Exception as e:  # noqa: BLE001 - weights-only refusal (or garbage); retried below
        first_error = e

    if isinstance(first_error, RuntimeError) and "TorchScript" in str(first_error):
        raise CheckpointError(
            f'"{fpath}" is a TorchScript archive, not a checkpoint; load CLIP archives with clip.load_state_dict'
        ) from first_error
    try:
        checkpoint = restricted_torch_load(fpath, encoding=encoding)
    except UnsafePickleError as e:
        raise UnsafePickleError(
            f"refused to load a tampered or foreign checkpoint: {e}; nothing in it was run",
            fpath,
            "delete the file, or re-create it with torch.save of tensors and plain containers",
        ) from None
    except Exception as e:  # noqa: BLE001 - any failure here means the bytes are not a usable checkpoint
        raise CheckpointError(
            f'"{fpath}" is not a readable PyTorch checkpoint ({" ".join(str(e).split())}); expected a file written '
            "by torch.save (e.g. model.pth.tar-N or model-best.pth.tar)"
        ) from first_error
    logger.info('Loaded "%s" with the restricted unpickler: optimizer/scheduler objects kept as inert records', fpath)
    if map_location not in (None, "cpu", torch.device("cpu")):
        checkpoint = _to_device(checkpoint, map_location)
    return checkpoint


def _to_device(obj: Any, device: str | torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return type(obj)((k, _to_device(v, device)) for k, v in obj.items())
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_device(v, device) for v in obj)
    return obj


def resume_from_checkpoint(
    fdir: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
) -> int:
    """Restore model/optimizer/scheduler from the file resume picks in ``fdir``; return its ``epoch``.

    The file is chosen by :func:`dassl.utils.checkpoint_files.find_resume_file` (latest ``model.pth.tar-N``
    first), the rule the engine's auto-resume uses too.
    """
    fpath, reason = find_resume_file(fdir)
    if fpath is None:
        raise FileNotFoundError(f'Nothing to resume from in "{fdir}": {reason}')
    return restore_checkpoint_file(fpath, model, optimizer, scheduler)["epoch"]


def restore_checkpoint_file(
    fpath: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    load_state: Callable[[nn.Module, Mapping[str, torch.Tensor]], Any] | None = None,
) -> dict[str, Any]:
    """Load the checkpoint ``fpath`` into ``model`` and, where both exist, ``optimizer``/``scheduler``.

    ``load_state(model, state_dict)`` puts the weights in (default: strict ``model.load_state_dict``; the engine
    passes :func:`dassl.utils.trained_state.load_trained_state_dict` for models saved as trained state).
    Prints upstream's console lines ("Loading checkpoint from ...", "Loaded model weights", ..., "Previous epoch:
    N"). Returns the whole checkpoint, so the trainer can also restore what it keeps there (best result, RNG).
    """
    print(f'Loading checkpoint from "{fpath}"')
    checkpoint = load_checkpoint(fpath)
    if load_state is None:
        model.load_state_dict(checkpoint["state_dict"])
    else:
        load_state(model, checkpoint["state_dict"])
    print("Loaded model weights")
    if optimizer is not None and checkpoint.get("optimizer") is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        print("Loaded optimizer")
    if scheduler is not None and checkpoint.get("scheduler") is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
        print("Loaded scheduler")
    print(f"Previous epoch: {checkpoint['epoch']}")
    return checkpoint


def adjust_learning_rate(
    optimizer: torch.optim.Optimizer,
    base_lr: float,
    epoch: int,
    stepsize: int = 20,
    gamma: float = 0.1,
    linear_decay: bool = False,
    final_lr: float = 0.0,
    max_epoch: int = 100,
) -> None:
    """Set every group's lr by step or linear decay (kept for upstream API completeness)."""
    if linear_decay:
        frac_done = epoch / max_epoch
        lr = frac_done * final_lr + (1.0 - frac_done) * base_lr
    else:
        lr = base_lr * (gamma ** (epoch // stepsize))
    for group in optimizer.param_groups:
        group["lr"] = lr


def set_bn_to_eval(m: nn.Module) -> None:
    """``model.apply(set_bn_to_eval)`` puts every BatchNorm layer in eval mode."""
    if m.__class__.__name__.find("BatchNorm") != -1:
        m.eval()


def open_all_layers(model: nn.Module) -> None:
    """Train mode and ``requires_grad=True`` for every parameter."""
    model.train()
    for p in model.parameters():
        p.requires_grad = True


def open_specified_layers(model: nn.Module, open_layers: str | list[str]) -> None:
    """Train/unfreeze the named direct children, eval/freeze the others."""
    if isinstance(model, nn.DataParallel):
        model = model.module
    if isinstance(open_layers, str):
        open_layers = [open_layers]
    for layer in open_layers:
        if not hasattr(model, layer):
            raise AttributeError(f'"{layer}" is not an attribute of the model, please provide the correct name')
    for name, module in model.named_children():
        is_open = name in open_layers
        module.train(is_open)
        for p in module.parameters():
            p.requires_grad = is_open


def count_num_param(model: nn.Module | None = None, params: Iterable | None = None) -> int:
    """Number of parameter elements (trainable or not) of ``model`` or of ``params``.

    ``params`` may hold tensors or optimizer-style groups ``{"params": [...]}`` (upstream's
    version counted only plain tensors).
    """
    if model is not None:
        return sum(p.numel() for p in model.parameters())
    if params is None:
        raise ValueError("count_num_param: pass a model or params (both were None)")
    total = 0
    for item in params:
        if isinstance(item, dict):
            group = item["params"]
            group = [group] if isinstance(group, torch.Tensor) else group
            total += sum(p.numel() for p in group)
        else:
            total += item.numel()
    return total


def load_pretrained_weights(model: nn.Module, weight_path: str) -> None:
    """Load the tensors of ``weight_path`` whose names and shapes match ``model``; report the rest.

    Lenient by design (upstream semantics, used for ``MODEL.INIT_WEIGHTS``): the ``state_dict`` entry is used
    when present, a leading ``module.`` is stripped, unmatched keys are listed.
    """
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint["state_dict"] if isinstance(checkpoint, dict) and "state_dict" in checkpoint else checkpoint
    if not isinstance(state_dict, dict):
        raise TypeError(f'"{weight_path}" holds a {type(state_dict).__name__}, expected a state dict of tensors')
    model_dict = model.state_dict()
    new_state_dict = OrderedDict()
    matched, discarded = [], []
    for k, v in state_dict.items():
        k = strip_module_prefix(k)
        if k in model_dict and isinstance(v, torch.Tensor) and model_dict[k].size() == v.size():
            new_state_dict[k] = v
            matched.append(k)
        else:
            discarded.append(k)
    model_dict.update(new_state_dict)
    model.load_state_dict(model_dict)
    if not matched:
        warnings.warn(f"Cannot load {weight_path} (check the key names manually)", stacklevel=2)
    else:
        print(f"Successfully loaded pretrained weights from {weight_path}")
        if discarded:
            print(f"Layers discarded due to unmatched keys or size: {discarded}")


def init_network_weights(model: nn.Module, init_type: str = "normal", gain: float = 0.02) -> None:
    """Initialise Conv/Linear weights (normal/xavier/kaiming/orthogonal) and set norm layers to 1/0."""
    allowed = ("normal", "xavier", "kaiming", "orthogonal")
    if init_type not in allowed:
        raise ValueError(f"init_network_weights: init_type must be one of {allowed}, got {init_type!r}")

    def _init_func(m: nn.Module) -> None:
        classname = m.__class__.__name__
        weight = getattr(m, "weight", None)
        bias = getattr(m, "bias", None)
        if isinstance(weight, torch.Tensor) and ("Conv" in classname or "Linear" in classname):
            if init_type == "normal":
                nn.init.normal_(weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(weight, gain=gain)
            if isinstance(bias, torch.Tensor):
                nn.init.constant_(bias, 0.0)
        elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)):
            if isinstance(weight, torch.Tensor):
                nn.init.constant_(weight, 1.0)
            if isinstance(bias, torch.Tensor):
                nn.init.constant_(bias, 0.0)

    model.apply(_init_func)
