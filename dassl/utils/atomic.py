"""Atomic file writes: temp file next to the target, then ``os.replace`` (project rule for checkpoints, caches,
results and configs).

A reader (a resuming run, a second worker, a crash-and-restart) sees either the previous file or the complete new
one, never a half-written file. A write that fails leaves the previous file untouched and removes its temp file.
The temp file lives in the target's directory (``os.replace`` is atomic only within one filesystem) and is hidden
(``.{name}.<random>.tmp``), so directory listings that skip dot files never see it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

import torch

__all__ = ["atomic_path", "atomic_write", "atomic_write_text", "atomic_torch_save", "atomic_copy_file"]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temp path next to ``path``; on a clean exit rename it over ``path``, on any error delete it.

    For writers that want a file name (``torch.save``, ``shutil.copyfile``, ``savefig``). Missing parent folders
    are created. The temp file already exists (empty) when the block starts.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600 files; give what open() would give
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str = "utf-8") -> Iterator[IO[Any]]:
    """Yield a file object (``mode`` ``"w"``: text in ``encoding``; ``"wb"``: bytes) that replaces ``path`` when the
    block ends without an error (see :func:`atomic_path`)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write got mode={mode!r}; allowed: 'w' (text) or 'wb' (bytes)")
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if mode == "wb" else encoding) as f:
            yield f


def atomic_write_text(text: str, path: str | os.PathLike, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path, "w", encoding=encoding) as f:
        f.write(text)


def write_json_atomic(
    payload: Any, path: str | os.PathLike, *, indent: int | None = None, default: Callable[[Any], Any] | None = None
) -> None:
    """``payload`` as JSON at ``path``, atomically: compact without ``indent`` (caches), ``", "`` / ``": "``
    separators with it (files people read). ``default`` converts values JSON cannot encode, as in `json.dump`."""
    separators = (",", ":") if indent is None else (",", ": ")
    with atomic_write(path) as f:
        json.dump(payload, f, indent=indent, separators=separators, default=default)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` atomically: an interrupted save never truncates the previous checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy ``src`` to ``dst`` (contents only) so that ``dst`` appears complete or not at all."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
