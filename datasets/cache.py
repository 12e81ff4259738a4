"""The reader cache outside ``DATASET.ROOT`` (the data folder may be read-only) and upstream cache pickles.

Generated splits, few-shot samples and the ImageNet listing are stored as JSON under
``cache_dir(cfg)/<DatasetName>/``, written atomically, in files whose names carry the number of shots, the seed
and a hash of everything the content depends on (so a changed split file or data folder never reuses a stale
entry). Unseeded runs (``SEED < 0``) are never cached.

Upstream caches (``split_fewshot/shot_K-seed_S.pkl``, ImageNet ``preprocessed.pkl``) are pickles of
``dassl.data.datasets.base_dataset.Datum``. They are read with the project's restricted unpickler
(:mod:`dassl.utils._safe_unpickle`) admitting that class and nothing else, so a crafted pickle cannot run code,
and their absolute paths (written on another machine) are rebased onto the local dataset folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
from collections.abc import Iterable, Sequence
from typing import Any

from dassl.data.datasets import Datum
from dassl.utils._safe_unpickle import UnsafePickleError, restricted_pickle_load
from dassl.utils.atomic import write_json_atomic

from .split_io import SplitFileError, datums_to_items, items_to_datums, parse_split_items

__all__ = [
    "CACHE_FORMAT",
    "cache_dir",
    "default_cache_root",
    "fingerprint",
    "read_cache",
    "write_cache",
    "read_cached_lists",
    "write_cached_lists",
    "UnsafePickleError",
    "load_upstream_pickle",
    "read_upstream_lists",
    "rebase_path",
]

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
_ENV_VAR = "PROMPTKD_CACHE_DIR"


def default_cache_root() -> str:
    """``$PROMPTKD_CACHE_DIR``, else ``~/.cache/promptkd`` (absolute, expanded): the project's cache root."""
    path = os.environ.get(_ENV_VAR, "") or os.path.join("~", ".cache", "promptkd")
    return os.path.abspath(os.path.expanduser(path))


def cache_dir(cfg: Any) -> str:
    """``DATASET.CACHE_DIR`` (absolute, expanded), else :func:`default_cache_root`."""
    configured = str(getattr(cfg.DATASET, "CACHE_DIR", "") or "")
    return os.path.abspath(os.path.expanduser(configured)) if configured else default_cache_root()


def fingerprint(*parts: Any) -> str:
    """SHA-256 (hex, 16 chars) of JSON-serialisable parts; used in cache file names."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, separators=(",", ":")).encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def hash_files(paths: Iterable[str]) -> str:
    """SHA-256 of the named files' bytes (a folder: its sorted entry names), for keying caches on raw inputs."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.path.basename(path).encode("utf-8") + b"\0")
        if os.path.isdir(path):
            digest.update("\0".join(sorted(os.listdir(path))).encode("utf-8"))
            continue
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def read_cache(path: str) -> dict[str, Any] | None:
    """Load a cache entry; None if absent. A corrupt entry is logged and ignored (it will be rewritten)."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        logger.warning("Ignoring unreadable cache file %s (%s); it will be rebuilt", path, e)
        return None
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        logger.warning("Ignoring cache file %s written in another format; it will be rebuilt", path)
        return None
    return data


def write_cache(path: str, data: dict[str, Any]) -> None:
    """Write a cache entry atomically; a failure (read-only cache dir, full disk) is logged, not fatal."""
    payload = {"format": CACHE_FORMAT, **data}
    try:
        write_json_atomic(payload, path)
        logger.info("Saved cache %s", path)
    except OSError as e:
        logger.warning("Could not write cache file %s (%s); continuing without caching", path, e)


def read_cached_lists(
    path: str, keys: Sequence[str], folder: str, *, check: bool = True, with_rng_state: bool = False
) -> tuple[dict[str, list[Datum]], dict[str, Any]] | None:
    """The image lists of a cache entry (paths under ``folder``) and the entry itself, or None to rebuild.

    None when the entry is absent, unreadable or malformed (logged; the caller builds and writes it again).
    ``with_rng_state``: the entry must also hold a valid ``rng_state`` (a ``random.Random`` state as JSON lists).
    ``check``: every image must exist (a missing one is an error naming the cache file).
    """
    cached = read_cache(path)
    if cached is None:
        return None
    try:
        split = parse_split_items(cached["split"], path, keys=keys)
        if with_rng_state:
            random.Random().setstate(rng_state_from_json(cached["rng_state"]))
    except (KeyError, TypeError, ValueError, IndexError) as e:
        logger.warning("Ignoring malformed cache file %s (%s); it will be rebuilt", path, e)
        return None
    source = f"cache {path}"
    return {key: items_to_datums(split[key], folder, source, check=check) for key in split}, cached


def write_cached_lists(path: str, lists: dict[str, list[Datum]], folder: str, **meta: Any) -> None:
    """Write ``lists`` (paths relative to ``folder``) with the JSON-able ``meta`` as a cache entry."""
    write_cache(path, {**meta, "split": {key: datums_to_items(items, folder) for key, items in lists.items()}})


def rng_state_to_json(state: tuple) -> list:
    """``random.Random.getstate()`` as JSON lists."""
    return [state[0], list(state[1]), state[2]]


def rng_state_from_json(state: Sequence) -> tuple:
    """The inverse of :func:`rng_state_to_json`."""
    return (state[0], tuple(state[1]), state[2])


# ----------------------------------------------------------------------------------------------------------------
# Upstream pickles
# ----------------------------------------------------------------------------------------------------------------
class _PickledDatum:
    """Inert stand-in for upstream's ``Datum``: pickle fills ``__dict__``; no code from the file runs."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise UnsafePickleError(f"Datum state must be a dict, got {type(state).__name__}")
        self.__dict__.update(state)


# The only global an upstream dataset cache may name.
_ALLOWED = {"dassl.data.datasets.base_dataset.Datum": _PickledDatum}


def _to_item(obj: Any, source: str) -> tuple[str, int, str]:
    state = getattr(obj, "__dict__", None)
    if not isinstance(obj, _PickledDatum) or not isinstance(state, dict):
        raise UnsafePickleError(f"{source}: expected Datum objects, got {type(obj).__name__}")
    impath, label, cname = state.get("_impath"), state.get("_label"), state.get("_classname")
    if not isinstance(impath, str) or not isinstance(label, int) or not isinstance(cname, str):
        raise UnsafePickleError(f"{source}: Datum with unexpected state {sorted(state)}")
    return impath, int(label), cname


def load_upstream_pickle(path: str) -> dict[str, list[tuple[str, int, str]]]:
    """Read an upstream cache pickle ``{split: [Datum, ...]}`` as ``{split: [(abs path, label, classname)]}``.

    Only ``dassl.data.datasets.base_dataset.Datum`` may appear; any other global raises `UnsafePickleError`
    naming the file (so a crafted pickle cannot run code).
    """
    with open(path, "rb") as f:
        raw = f.read()
    try:
        data = restricted_pickle_load(io.BytesIO(raw), _ALLOWED)
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}. Delete the file if you do not trust it.") from None
    except Exception as e:  # truncated or otherwise malformed pickle
        raise SplitFileError(f"Cannot read upstream cache {path}: {type(e).__name__}: {e}") from e
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise SplitFileError(f"Upstream cache {path} must hold a dict of lists, got {type(data).__name__}")
    return {str(key): [_to_item(obj, path) for obj in value] for key, value in data.items()}


def read_upstream_lists(pickle_path: str, dataset_dir: str) -> dict[str, list[Datum]]:
    """An upstream cache pickle as image lists, its absolute paths rebased onto ``dataset_dir``."""
    data = load_upstream_pickle(pickle_path)
    folder = os.path.basename(dataset_dir)
    source = f"upstream cache {pickle_path}"
    return {
        key: items_to_datums([(rebase_path(p, folder, dataset_dir), y, c) for p, y, c in items], "", source)
        for key, items in data.items()
    }


def rebase_path(abs_path: str, dataset_folder: str, dataset_dir: str) -> str:
    """Map a path written on another machine onto ``dataset_dir``.

    The part after the last ``/<dataset_folder>/`` component is kept (upstream stores absolute paths such as
    ``/home/u/data/oxford_pets/images/x.jpg``); a path without that component is returned unchanged.
    """
    parts = abs_path.replace("\\", "/").split("/")
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == dataset_folder:
            return os.path.join(dataset_dir, *parts[i + 1 :])
    return abs_path
