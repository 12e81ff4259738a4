"""A `dassl.utils.transfer.Transport` without a network, serving archives built from the synthetic fixtures.

`FakeTransport` behaves like the real clients where the commands depend on it: a listing with sizes (and
SHA-256 where the Hub gives one), a fetch that writes ``<name>.part`` and renames it when complete, resumes a
partial file left by an interrupted call (it records the byte offset it resumed from), returns a complete file
at once, and can be told to drop the connection after N bytes or to be offline.

`zip_tree` / `tar_tree` write archives in the mirror's layout: one top-level folder (``eurosat/...``).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from dassl.utils.transfer import DownloadError, RemoteFile


def zip_tree(folder: Path, archive: Path, arc_root: str | None = None, skip: tuple[str, ...] = ()) -> Path:
    """Zip ``folder`` as ``<arc_root or folder name>/...`` (sorted members); paths in ``skip`` are left out."""
    arc_root = folder.name if arc_root is None else arc_root
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder).as_posix()
            if relative in skip:
                continue
            name = f"{arc_root}/{relative}" if arc_root else relative
            if path.is_dir():
                zf.writestr(name + "/", b"")
            else:
                zf.write(path, name)
    return archive


def tar_tree(folder: Path, archive: Path, arc_root: str | None = None) -> Path:
    """``tar.gz`` of ``folder`` under ``<arc_root or folder name>/``."""
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname=folder.name if arc_root is None else arc_root)
    return archive


@dataclass
class FakeTransport:
    """Serves ``files`` (remote name -> bytes). ``drop_after[name] = n`` ends the next transfer after n bytes."""

    files: dict[str, bytes]
    source: str = "https://example.invalid/mirror"
    with_sha256: bool = True
    offline: bool = False
    drop_after: dict[str, int] = field(default_factory=dict)
    file_ids: dict[str, str] = field(default_factory=dict)
    served: dict[str, bytes] = field(default_factory=dict)  # bytes sent instead of the listed ones (corruption)
    fetches: list[tuple[str, int]] = field(default_factory=list)  # (name, offset the transfer started at)
    listings: int = 0

    @classmethod
    def from_paths(cls, paths: dict[str, Path], **kw) -> FakeTransport:
        return cls({name: Path(p).read_bytes() for name, p in paths.items()}, **kw)

    def url_of(self, remote: RemoteFile) -> str:
        return f"{self.source}/{remote.name}"

    def list_files(self) -> list[RemoteFile]:
        self.listings += 1
        if self.offline:
            raise DownloadError(f"listing {self.source} failed: unreachable (ConnectError: no network)")
        return [
            RemoteFile(
                name,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest() if self.with_sha256 else None,
                file_id=self.file_ids.get(name),
            )
            for name, data in self.files.items()
        ]

    def fetch(self, remote: RemoteFile, dest_dir: Path) -> Path:
        if self.offline:
            raise DownloadError(f"downloading {self.url_of(remote)} failed: unreachable (no network)")
        dest_dir.mkdir(parents=True, exist_ok=True)
        final = dest_dir / PurePosixPath(remote.name).name
        if final.is_file():
            return final
        part = final.with_name(final.name + ".part")
        data = self.served.get(remote.name, self.files[remote.name])
        offset = part.stat().st_size if part.exists() else 0
        self.fetches.append((remote.name, offset))
        stop = self.drop_after.pop(remote.name, None)
        with open(part, "ab") as f:
            if stop is not None and offset < stop < len(data):
                f.write(data[offset:stop])
                raise DownloadError(
                    f"downloading {self.url_of(remote)} failed: connection reset; rerun the same command to resume"
                )
            f.write(data[offset:])
        os.replace(part, final)
        return final
