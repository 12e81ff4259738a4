"""Download of the OpenAI CLIP weight files: streamed, resumable (HTTP Range), SHA-256 checked, atomic.

Upstream downloads into `~/.cache/clip/<basename of URL>` and checks the SHA-256 that is part of the URL;
an interrupted download starts again from zero. Here a partial download is kept as `<file>.part` and resumed
with a Range request; the final file appears (via `os.replace`) only after its checksum matched, so a cache
never holds a bad file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16


class ChecksumError(RuntimeError):
    """A downloaded (or cached) file's SHA-256 differs from the published value."""

    user_error = True  # shown as one line by the command-line error boundaries


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (OpenAI's ViT-L/14 file is ~890 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": "promptkd-clip"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _stream_to_part(url: str, part: Path, progress: bool, timeout: float) -> None:
    """Append the missing bytes of `url` to `part` (or restart it when the server ignores Range)."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left to fetch: the partial file is already complete
            logger.info("%s: server reports %s complete (%d bytes)", url, part, offset)
            return
        raise
    with response:
        resumed = offset > 0 and response.status == 206
        if offset and not resumed:
            logger.info("%s: server does not resume (HTTP %s); downloading from the start", url, response.status)
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        if resumed:
            logger.info("%s: resuming at byte %d", url, offset)
        with (
            open(part, "ab" if resumed else "wb") as f,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                disable=not progress,
                desc=part.name.removesuffix(".part"),
            ) as bar,
        ):
            while block := response.read(_CHUNK):
                f.write(block)
                bar.update(len(block))


def download(
    url: str,
    root: str | os.PathLike,
    expected_sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Fetch `url` into `root/<basename of url>` and return the path.

    An existing file whose checksum matches is reused; one that does not match is replaced (with a warning).
    After the transfer a mismatch deletes the partial file and raises `ChecksumError`.
    """
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    target = root / os.path.basename(url)
    part = target.with_name(target.name + ".part")
    if target.exists() and not target.is_file():
        raise RuntimeError(f"{target} exists and is not a regular file; remove it or choose another download_root")
    if target.is_file():
        if expected_sha256 is None or sha256_file(target) == expected_sha256:
            return target
        logger.warning("%s exists but its SHA-256 does not match %s; downloading it again", target, expected_sha256)

    _stream_to_part(url, part, progress, timeout)
    if expected_sha256 is not None:
        got = sha256_file(part)
        if got != expected_sha256:
            part.unlink(missing_ok=True)
            raise ChecksumError(
                f"checksum mismatch for {url}: expected SHA-256 {expected_sha256}, got {got}. The partial file "
                "was deleted; retry the download, or fetch the file by hand and pass its path."
            )
    os.replace(part, target)
    return target
