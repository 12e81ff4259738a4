"""The download layer shared by ``python -m datasets.download`` and ``python -m trainers.download_teachers``.

Everything that talks to the network sits behind `Transport`, a two-method interface (list the remote files,
fetch one of them into a folder, resuming what an earlier interrupted call left there). The real transports
use the standard clients: `HubTransport` (``huggingface_hub``) for the Hugging Face mirror of the benchmarks,
`DriveFolderTransport` (``gdown``) for the Google Drive folder of the released teachers. Tests replace them by a
fake that serves archives built from synthetic fixtures, so placement, verification, resume and the error
messages are exercised without a network.

What this module adds on top of a transport: the size / SHA-256 check of a fetched file against the listing
(`fetch_verified`), safe archive extraction (no member may land outside the target folder), and the free-space
check. Every failure a user can act on is a `DownloadError` whose message is one line: what failed, which URL,
what to do by hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, Protocol

from tqdm import tqdm

from dassl.errors import UserError

__all__ = [
    "DownloadError",
    "RemoteFile",
    "Transport",
    "HubTransport",
    "DriveFolderTransport",
    "fetch_verified",
    "extract_archive",
    "is_archive",
    "require_free_space",
    "remove_tree",
    "cli_logging",
]

logger = logging.getLogger(__name__)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (archives are several GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


class DownloadError(UserError):
    """A download, an archive or a downloaded file was refused; the message is one actionable line (a user error:
    the commands' error boundary prints it as ``error: ...`` without a traceback)."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a remote listing. ``size``/``sha256`` are checked after the transfer when known.

    ``name`` is the path inside the remote repository or folder (``/``-separated); ``file_id`` is the
    transport's own handle when it is not the name (a Google Drive file id).
    """

    name: str
    size: int | None = None
    sha256: str | None = None
    file_id: str | None = None


class Transport(Protocol):
    """Where files come from. Implementations turn every client failure into a `DownloadError`."""

    #: human-readable address of the remote (shown in messages and by ``--dry-run``)
    source: str

    def list_files(self) -> list[RemoteFile]:
        """The files the remote holds."""
        ...

    def url_of(self, remote: RemoteFile) -> str:
        """The address of one file, for messages and manual downloads."""
        ...

    def fetch(self, remote: RemoteFile, dest_dir: Path) -> Path:
        """Download ``remote`` into ``dest_dir`` and return the complete file's path.

        A partial transfer left in ``dest_dir`` by an earlier interrupted call is resumed, not restarted; an
        interrupted call leaves its partial transfer there (and raises `DownloadError`).
        """
        ...


def _leaf(name: str) -> str:
    return PurePosixPath(name).name


def _classify(err: BaseException) -> str:
    """A short reason for a client exception: refused (permissions, not found) or unreachable (network)."""
    kind = type(err).__name__
    text = str(err).splitlines()[0][:200] if str(err) else kind
    status = getattr(getattr(err, "response", None), "status_code", None)
    if kind in ("RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError") or status in (401, 403):
        return f"refused ({kind}: {text})"
    if kind in ("EntryNotFoundError", "RemoteEntryNotFoundError") or status == 404:
        return f"not found ({kind}: {text})"
    if kind == "OfflineModeIsEnabled":
        return "offline mode is enabled (HF_HUB_OFFLINE=1)"
    if status == 429 or "too many users" in text.lower() or "quota" in text.lower():
        return f"refused: download quota exceeded ({text})"
    return f"unreachable ({kind}: {text})"


class HubTransport:
    """Files of a Hugging Face repository, through ``huggingface_hub`` (resumable ``hf_hub_download``)."""

    def __init__(
        self, repo_id: str, repo_type: str = "model", revision: str = "main", fallback_repo_type: str | None = None
    ) -> None:
        self.repo_id, self.revision, self.fallback_repo_type = repo_id, revision, fallback_repo_type
        self._set_repo_type(repo_type)

    def _set_repo_type(self, repo_type: str) -> None:
        self.repo_type = repo_type
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        self.source = f"https://huggingface.co/{prefix}{self.repo_id}"

    def url_of(self, remote: RemoteFile) -> str:
        return f"{self.source}/resolve/{self.revision}/{remote.name}"

    def list_files(self) -> list[RemoteFile]:
        logger.info("Listing %s", self.source)
        try:
            from huggingface_hub import HfApi
            from huggingface_hub.hf_api import RepoFile

            try:
                entries = list(HfApi().list_repo_tree(self.repo_id, repo_type=self.repo_type, revision=self.revision))
            except Exception as err:  # noqa: BLE001 - the mirror may be published under the other repository type
                if type(err).__name__ != "RepositoryNotFoundError" or not self.fallback_repo_type:
                    raise
                logger.info("%s not found; trying the %s repository of that name", self.source, self.fallback_repo_type)
                self._set_repo_type(self.fallback_repo_type)
                self.fallback_repo_type = None
                entries = list(HfApi().list_repo_tree(self.repo_id, repo_type=self.repo_type, revision=self.revision))
            files = []
            for entry in entries:
                if isinstance(entry, RepoFile):
                    lfs = entry.lfs
                    sha256 = getattr(lfs, "sha256", None) or (lfs.get("sha256") if isinstance(lfs, dict) else None)
                    files.append(RemoteFile(entry.path, entry.size, sha256))
            return files
        except Exception as err:  # noqa: BLE001 - every client failure becomes one message
            raise DownloadError(f"listing {self.source} failed: {_classify(err)}") from err

    def fetch(self, remote: RemoteFile, dest_dir: Path) -> Path:
        try:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(
                self.repo_id,
                remote.name,
                repo_type=self.repo_type,
                revision=self.revision,
                local_dir=str(dest_dir),
            )
            return Path(path)
        except Exception as err:  # noqa: BLE001
            raise DownloadError(
                f"downloading {self.url_of(remote)} failed: {_classify(err)}; rerun the same command to resume"
            ) from err


class DriveFolderTransport:
    """Files of a public Google Drive folder, through ``gdown`` (listing without download, resumable fetch)."""

    def __init__(self, folder_id: str) -> None:
        self.folder_id = folder_id
        self.source = f"https://drive.google.com/drive/folders/{folder_id}"

    def url_of(self, remote: RemoteFile) -> str:
        return f"https://drive.google.com/file/d/{remote.file_id}/view" if remote.file_id else self.source

    def list_files(self) -> list[RemoteFile]:
        logger.info("Listing %s", self.source)
        try:
            import gdown

            entries = gdown.download_folder(id=self.folder_id, skip_download=True, quiet=True)
            if not entries:
                raise RuntimeError("the folder lists no files")
            return [RemoteFile(str(entry.path).replace(os.sep, "/"), file_id=entry.id) for entry in entries]
        except Exception as err:  # noqa: BLE001
            raise DownloadError(f"listing {self.source} failed: {_classify(err)}") from err

    def fetch(self, remote: RemoteFile, dest_dir: Path) -> Path:
        try:
            import gdown

            dest_dir.mkdir(parents=True, exist_ok=True)
            output = dest_dir / _leaf(remote.name)
            path = gdown.download(id=remote.file_id, output=str(output), quiet=False, resume=True)
            if not path:
                raise RuntimeError("gdown returned no file")
            return Path(path)
        except Exception as err:  # noqa: BLE001
            raise DownloadError(
                f"downloading {self.url_of(remote)} failed: {_classify(err)}; rerun the same command to resume"
            ) from err


def fetch_verified(transport: Transport, remote: RemoteFile, dest_dir: Path) -> Path:
    """`Transport.fetch`, then the size and SHA-256 from the listing; a mismatching file is deleted."""
    path = transport.fetch(remote, dest_dir)
    problem = None
    if remote.size is not None and path.stat().st_size != remote.size:
        problem = f"{path.stat().st_size} bytes instead of {remote.size}"
    elif remote.sha256 is not None:
        logger.info("Checking the SHA-256 of %s", path.name)
        got = sha256_file(path)
        if got != remote.sha256:
            problem = f"SHA-256 {got} instead of {remote.sha256}"
    if problem:
        path.unlink(missing_ok=True)
        raise DownloadError(
            f"{transport.url_of(remote)} arrived corrupt ({problem}); the file was deleted, rerun to fetch it again"
        )
    return path


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def _safe_target(dest: Path, member: str) -> Path:
    """Where ``member`` lands under ``dest``; members with absolute paths or ``..`` are refused."""
    parts = PurePosixPath(member.replace("\\", "/")).parts
    if not parts or PurePosixPath(member).is_absolute() or ".." in parts or ":" in parts[0]:
        raise DownloadError(f"archive member {member!r} would be written outside the target folder; refused")
    return dest.joinpath(*parts)


def _archive_members(archive: Path, stack: contextlib.ExitStack) -> list[tuple[str, str, Callable[[], IO[bytes]]]]:
    """``(name, "dir"|"file"|"other", opener)`` for every member of a zip or tar archive."""
    if archive.name.lower().endswith(".zip"):
        zf = stack.enter_context(zipfile.ZipFile(archive))
        return [(i.filename, "dir" if i.is_dir() else "file", partial(zf.open, i)) for i in zf.infolist()]
    tf = stack.enter_context(tarfile.open(archive))
    kinds = {True: "dir", False: "file"}
    return [
        (m.name, kinds[m.isdir()] if m.isdir() or m.isfile() else "other", partial(tf.extractfile, m))
        for m in tf.getmembers()
    ]


def extract_archive(archive: Path, dest: Path) -> None:
    """Unpack a zip or tar archive into ``dest`` (progress bar per member). Links and devices are refused."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.ExitStack() as stack:
            for name, kind, opener in tqdm(
                _archive_members(archive, stack), desc=f"unpack {archive.name}", unit="file"
            ):
                target = _safe_target(dest, name)
                if kind == "dir":
                    target.mkdir(parents=True, exist_ok=True)
                elif kind == "file":
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with opener() as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                else:
                    raise DownloadError(f"{archive.name}: member {name!r} is a link or device; refused")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as err:
        raise DownloadError(f"{archive} is not a readable archive ({err}); delete it and rerun") from err


def require_free_space(folder: Path, needed: int, what: str) -> None:
    """Refuse before transferring when ``folder``'s file system has less than ``needed`` bytes free."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise DownloadError(
            f"{what} needs about {needed / 1e9:.1f} GB free in {folder}, only {free / 1e9:.1f} GB are; "
            "free some space or choose another --root"
        )


def remove_tree(path: Path) -> None:
    """Delete a file or folder if present (staging areas only; never a user's data)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def cli_logging(*names: str) -> Iterator[None]:
    """While a command runs: INFO lines of the named loggers on stdout, warnings and errors on stderr.

    Handlers and levels are restored afterwards, so calling a command's ``main`` in-process (tests, notebooks)
    leaves the caller's logging as it was.
    """
    out = logging.StreamHandler(sys.stdout)
    out.setLevel(logging.INFO)
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    levels = {"": logging.WARNING, **dict.fromkeys(names, logging.INFO)}
    # client retries are reported once, by the command's own error line
    levels.update(dict.fromkeys(("huggingface_hub", "urllib3", "filelock"), logging.ERROR))
    saved = {name: logging.getLogger(name or None).level for name in levels}
    root_logger = logging.getLogger()
    for handler in (out, err):
        handler.setFormatter(logging.Formatter("%(message)s"))
        root_logger.addHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
    try:
        yield
    finally:
        for handler in (out, err):
            root_logger.removeHandler(handler)
        for name, level in saved.items():
            logging.getLogger(name or None).setLevel(level)
