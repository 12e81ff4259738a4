"""Which checkpoint file a run resumes from (dassl-api.md section 3.4, section 11 #5 and #6)."""

from __future__ import annotations

import os.path as osp

from dassl.utils.torchtools import BEST_FILE, latest_epoch_file, read_pointer


def find_resume_file(model_dir: str) -> tuple[str | None, str]:
    """Pick the checkpoint in ``model_dir`` to resume from; return ``(path or None, reason)``.

    The latest ``model.pth.tar-N`` wins: upstream's ``checkpoint`` pointer is also rewritten when
    ``model-best.pth.tar`` is saved, so following it would resume from the best epoch instead of the last one
    (dassl-api.md section 11, #5), and a folder without the pointer must not crash (#6). Only when no epoch
    file exists is the pointer (or else ``model-best.pth.tar``) used.
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
