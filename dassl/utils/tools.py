"""Small filesystem, JSON, seeding and environment helpers with upstream Dassl's names.

Fixes over upstream: ``write_json`` works for a bare file name and writes atomically;
``set_random_seed`` accepts seed 0 and has an optional deterministic mode.
"""

from __future__ import annotations

import difflib
import errno
import json
import logging
import os
import random
import subprocess
import urllib.request
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL
import torch
from PIL import Image

from dassl.errors import ImageFileError, InputFileError

from .atomic import atomic_write, write_json_atomic

__all__ = [
    "mkdir_if_missing",
    "folder_creation_problem",
    "check_isfile",
    "read_json",
    "write_json",
    "set_random_seed",
    "download_url",
    "read_image",
    "collect_env_info",
    "git_commit",
    "listdir_nohidden",
    "get_most_similar_str_to_a_from_b",
    "check_availability",
    "tolist_if_not",
]

logger = logging.getLogger(__name__)


def mkdir_if_missing(dirname: str | os.PathLike) -> None:
    """Create ``dirname`` (and parents) unless it exists; concurrent creation is not an error."""
    if not os.path.exists(dirname):
        try:
            os.makedirs(dirname)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise


def folder_creation_problem(path: str) -> tuple[str, str] | None:
    """Why the folder ``path`` could not be used or created, checked without writing anything: ``(problem,
    blocking path)`` with problem ``"not a folder"`` (``path`` is a file), ``"a file is in the way"`` (an
    ancestor is), ``"not writable"`` or ``"no permission to create"``; None when it can be used.

    Entry points call it while validating their inputs, so a bad output place fails before anything is written
    instead of after the first epoch."""
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        return "not a folder", path
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return "a file is in the way", existing
    if not os.access(existing, os.W_OK | os.X_OK):
        return ("not writable" if existing == path else "no permission to create"), existing
    return None


def check_isfile(fpath: str | os.PathLike) -> bool:
    """True if ``fpath`` is a file; otherwise warn (upstream text) and return False."""
    isfile = os.path.isfile(fpath)
    if not isfile:
        warnings.warn(f'No file found at "{fpath}"', stacklevel=2)
    return isfile


def read_json(fpath: str | os.PathLike) -> Any:
    """Load a JSON file."""
    with open(fpath, encoding="utf-8") as f:
        return json.load(f)


def write_json(obj: Any, fpath: str | os.PathLike) -> None:
    """Write ``obj`` as JSON with upstream's layout (indent 4), atomically (temp file + ``os.replace``).

    A bare file name writes into the current directory (upstream called ``makedirs("")`` and failed).
    """
    write_json_atomic(obj, fpath, indent=4)


def set_random_seed(seed: int, deterministic: bool = False) -> None:
    """Seed Python ``random``, NumPy's global RNG, torch CPU and every CUDA device, as upstream.

    Exactly these four generators, in this order and with no extra draws, so runs match upstream's RNG
    streams. ``seed`` 0 is valid; negative seeds mean "unseeded" and must not reach this function.
    ``deterministic=True`` (config ``TRAIN.DETERMINISTIC``) also turns cudnn benchmarking off and asks torch
    for deterministic algorithms (warning, not failing, where an op has none).
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"set_random_seed expects an int seed, got {seed!r} ({type(seed).__name__})")
    if seed < 0:
        raise ValueError(
            f"set_random_seed got seed={seed}; a negative SEED means 'do not seed', so skip the call instead"
        )
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def download_url(url: str, dst: str | os.PathLike) -> None:
    """Download ``url`` to ``dst`` with a progress bar; the file appears only when complete."""
    from tqdm import tqdm

    dst = os.fspath(dst)
    logger.info("Downloading %s to %s", url, dst)
    with atomic_write(dst, "wb") as out, urllib.request.urlopen(url) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=os.path.basename(dst)) as bar:
            while True:
                chunk = response.read(1 << 16)
                if not chunk:
                    break
                out.write(chunk)
                bar.update(len(chunk))


def read_image(path: str | os.PathLike) -> Image.Image:
    """Open an image as RGB; errors name the file."""
    if not os.path.exists(path):
        raise InputFileError(f'Image not found at "{path}"; check DATASET.ROOT and the dataset layout')
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except OSError as e:
        raise ImageFileError(f'Cannot read image "{path}": {e}') from e


def collect_env_info() -> str:
    """torch's environment report plus the Pillow version (upstream layout)."""
    from torch.utils.collect_env import get_pretty_env_info

    return get_pretty_env_info() + f"\n        Pillow ({PIL.__version__})"


def listdir_nohidden(path: str | os.PathLike, sort: bool = False) -> list[str]:
    """Entries of ``path`` not starting with ``.``; ``os.listdir`` order unless ``sort`` (readers sort)."""
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items


def get_most_similar_str_to_a_from_b(a: str, b: Sequence[str]) -> str:
    """The string in ``b`` with the highest difflib ratio to ``a`` (ties go to the later candidate)."""
    if not b:
        raise ValueError(f"get_most_similar_str_to_a_from_b: no candidates to compare {a!r} with")
    best, best_score = b[0], -1.0
    for candidate in b:
        score = difflib.SequenceMatcher(None, a, candidate).ratio()
        if score >= best_score:
            best, best_score = candidate, score
    return best


def check_availability(requested: str, available: Sequence[str]) -> None:
    """``ValueError`` with a "do you mean" suggestion if ``requested`` is not in ``available``."""
    if requested not in available:
        hint = ""
        if available:
            hint = f" (do you mean [{get_most_similar_str_to_a_from_b(str(requested), list(available))}]?)"
        raise ValueError(f"The requested one is expected to belong to {list(available)}, but got [{requested}]{hint}")


def tolist_if_not(x: Any) -> list:
    """Wrap ``x`` in a list unless it already is one."""
    if not isinstance(x, list):
        x = [x]
    return x


def git_commit(repo_dir: str | os.PathLike, short: bool = False) -> str:
    """The commit checked out in ``repo_dir`` (provenance of results and exported models), or ``unknown``."""
    cmd = ["git", "rev-parse", *(["--short"] if short else []), "HEAD"]
    try:
        out = subprocess.run(cmd, cwd=repo_dir, capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (out.stdout.strip() if out.returncode == 0 else "") or "unknown"
