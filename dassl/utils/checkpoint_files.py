"""Checkpoint file names and the two rules for picking a file in a model folder.

A model folder (``OUTPUT_DIR/<model name>/``) holds upstream Dassl's layout: ``model.pth.tar-N`` after epoch N,
``model-best.pth.tar`` (a copy of the epoch with the best validation result) and a one-line text file
``checkpoint`` naming the last file written. Upstream rewrote that pointer when it saved the best copy too, so in
official folders it may name ``model-best.pth.tar`` instead of the last epoch.

Two questions, two rules, both here and nowhere else:

- **Resume** (:func:`find_resume_file`): continue training where it stopped, so the highest ``model.pth.tar-N``
  wins; the pointer is used only when no epoch file exists, then ``model-best.pth.tar``.
- **Evaluation** (:func:`resolve_checkpoint_file`): ``model.pth.tar-<epoch>`` when an epoch is asked for;
  otherwise ``model-best.pth.tar`` when it exists (the selected model), else the file resume would pick.

Keys saved under ``DataParallel``/``DistributedDataParallel`` carry a leading ``module.``; :func:`strip_module_prefix`
is the one place that removes it.
"""

from __future__ import annotations

import os
import os.path as osp
import re

from dassl.errors import InputFileError

__all__ = [
    "BEST_FILE",
    "POINTER_FILE",
    "epoch_file_name",
    "find_resume_file",
    "latest_epoch_file",
    "read_pointer",
    "resolve_checkpoint_file",
    "saved_epochs",
    "strip_module_prefix",
]

POINTER_FILE = "checkpoint"
BEST_FILE = "model-best.pth.tar"
_EPOCH_FILE_RE = re.compile(r"^model\.pth\.tar-(\d+)$")
_MODULE_PREFIX = "module."


def strip_module_prefix(key: str) -> str:
    """``key`` without the leading ``module.`` that (Distributed)DataParallel adds to state-dict keys."""
    return key[len(_MODULE_PREFIX) :] if key.startswith(_MODULE_PREFIX) else key


def epoch_file_name(epoch: int) -> str:
    """File name of the checkpoint written after ``epoch`` (1-based, as stored in the file)."""
    return f"model.pth.tar-{epoch}"


def read_pointer(fdir: str) -> str | None:
    """The file name stored in ``fdir/checkpoint`` (None when the pointer file is missing or empty)."""
    pointer = osp.join(fdir, POINTER_FILE)
    if not osp.isfile(pointer):
        return None
    with open(pointer, encoding="utf-8") as f:
        name = f.readline().strip()
    return name or None


def saved_epochs(fdir: str) -> list[int]:
    """Epoch numbers N of the ``model.pth.tar-N`` files in ``fdir``, ascending (empty when there is none)."""
    if not osp.isdir(fdir):
        return []
    return sorted(int(m.group(1)) for m in map(_EPOCH_FILE_RE.match, os.listdir(fdir)) if m)


def latest_epoch_file(fdir: str) -> str | None:
    """Name of the highest ``model.pth.tar-N`` in ``fdir`` (None when there is none or no folder)."""
    if not osp.isdir(fdir):
        return None
    epochs = []
    for name in os.listdir(fdir):
        match = _EPOCH_FILE_RE.match(name)
        if match:
            epochs.append((int(match.group(1)), name))
    return max(epochs)[1] if epochs else None


def find_resume_file(model_dir: str) -> tuple[str | None, str]:
    """The file to resume training from, and why: ``(path or None, reason)``.

    Latest ``model.pth.tar-N``, else the file the ``checkpoint`` pointer names, else ``model-best.pth.tar``.
    """
    if not osp.isdir(model_dir):
        return None, f"no folder {model_dir}"
    epoch_file = latest_epoch_file(model_dir)
    if epoch_file is not None:
        return osp.join(model_dir, epoch_file), "latest model.pth.tar-N"
    named = read_pointer(model_dir)
    if named and osp.isfile(osp.join(model_dir, named)):
        return osp.join(model_dir, named), "file named by the 'checkpoint' pointer"
    best = osp.join(model_dir, BEST_FILE)
    if osp.isfile(best):
        return best, "model-best.pth.tar (no epoch file)"
    return None, f"no checkpoint file in {model_dir}"


def resolve_checkpoint_file(model_dir: str, epoch: int | None = None) -> str:
    """The file to evaluate (``load_model``): ``model.pth.tar-<epoch>``, else best, else the resume choice.

    Raises ``InputFileError`` (a ``FileNotFoundError``) naming the file or folder when nothing fits.
    """
    if epoch is not None:
        path = osp.join(model_dir, epoch_file_name(epoch))
        if not osp.isfile(path):
            saved = saved_epochs(model_dir)
            raise InputFileError(
                f"Model not found: no {epoch_file_name(epoch)} (--load-epoch {epoch})",
                path,
                f"pass one of the saved epochs {saved}" if saved else "no model.pth.tar-N was saved in that folder",
            )
        return path
    best = osp.join(model_dir, BEST_FILE)
    if osp.isfile(best):
        return best
    path, _ = find_resume_file(model_dir)
    if path is None:
        raise InputFileError(
            f'Model not found: no {BEST_FILE}, no model.pth.tar-N and no "checkpoint" pointer',
            model_dir,
            "pass --model-dir the OUTPUT_DIR of a finished training run",
        )
    return path
