"""``python -m datasets.download NAME [NAME ...] --root $DATA``: the benchmarks from the authors' Hugging Face mirror.

The PromptKD authors keep 14 of the 15 benchmarks (all but ImageNet), each with its published split file, in the
Hugging Face repository ``zhengli97/prompt_learning_dataset``: one zip archive per dataset at the top of the
repository, whose top-level folder is the dataset folder of DATASETS.md (``caltech-101.zip`` -> ``caltech-101/``).

For each requested dataset this command

1. skips it when ``$DATA/<folder>`` already exists and the project's reader accepts it (idempotent; a folder the
   reader refuses is reported and left untouched: it may be the user's own data);
2. downloads the archive into ``$DATA/.promptkd-download/<folder>/`` (an interrupted transfer resumes on the
   next run), checks its size and SHA-256 against the mirror's listing, unpacks it there and finds the dataset
   folder in it;
3. checks the files the reader needs (the split file, the image folder) and runs the reader itself over the
   unpacked folder: every image named by the split file must exist; the counts per split are reported and
   compared with the published sizes;
4. only then moves the folder to ``$DATA/<folder>`` (one rename on the same file system) and deletes the
   staging area. A refused archive leaves nothing behind.

ImageNet is not on the mirror (its licence requires registration): the command says what to do instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dassl.data.datasets import DATASET_REGISTRY
from dassl.error_boundary import run_with_error_boundary
from dassl.utils.transfer import (
    DownloadError,
    HubTransport,
    RemoteFile,
    Transport,
    cli_logging,
    extract_archive,
    fetch_verified,
    remove_tree,
    require_free_space,
)

from .common import DATASETS_DOC
from .reader_base import TestOnlyDataset

__all__ = [
    "MIRROR_REPO",
    "MIRROR_REPO_TYPE",
    "MirrorDataset",
    "CATALOG",
    "SplitCounts",
    "resolve_datasets",
    "verify_dataset",
    "install_dataset",
    "main",
]

logger = logging.getLogger(__name__)

MIRROR_REPO = "zhengli97/prompt_learning_dataset"
MIRROR_REPO_TYPE = "model"  # the authors' own command is `huggingface-cli download <repo>` (a model repository)
STAGING_DIR = ".promptkd-download"
IMAGENET_URL = "https://image-net.org/download.php"


@dataclass(frozen=True)
class MirrorDataset:
    """One benchmark: its command-line name (the config file name), its reader, its archive on the mirror.

    ``published`` holds the CoOp paper's split sizes ``(train, val, test)`` (None where a split does not exist).
    """

    name: str
    reader: str
    archive: str | None
    published: tuple[int | None, int | None, int]

    @property
    def reader_class(self) -> type:
        import datasets  # noqa: F401  (registers the readers)

        return DATASET_REGISTRY.get(self.reader)

    @property
    def folder(self) -> str:
        return self.reader_class.dataset_dir

    def required_entries(self) -> list[str]:
        """Files/folders (relative to the dataset folder) the reader needs, checked before it runs."""
        cls = self.reader_class
        entries = [cls.image_folder] if cls.image_folder else []
        if issubclass(cls, TestOnlyDataset):
            return ["classnames.txt", *entries]
        if cls.split_file_name:
            return [cls.split_file_name, *entries]
        return [*cls.raw_files, *entries]


CATALOG: dict[str, MirrorDataset] = {
    d.name: d
    for d in (
        MirrorDataset("imagenet", "ImageNet", None, (1_281_167, None, 50_000)),
        MirrorDataset("caltech101", "Caltech101", "caltech-101.zip", (4_128, 1_649, 2_465)),
        MirrorDataset("oxford_pets", "OxfordPets", "oxford_pets.zip", (2_944, 736, 3_669)),
        MirrorDataset("stanford_cars", "StanfordCars", "stanford_cars.zip", (6_509, 1_635, 8_041)),
        MirrorDataset("oxford_flowers", "OxfordFlowers", "oxford_flowers.zip", (4_093, 1_633, 2_463)),
        MirrorDataset("food101", "Food101", "food101.zip", (50_500, 20_200, 30_300)),
        MirrorDataset("fgvc_aircraft", "FGVCAircraft", "fgvc_aircraft.zip", (3_334, 3_333, 3_333)),
        MirrorDataset("sun397", "SUN397", "sun397.zip", (15_880, 3_970, 19_850)),
        MirrorDataset("dtd", "DescribableTextures", "dtd.zip", (2_820, 1_128, 1_692)),
        MirrorDataset("eurosat", "EuroSAT", "eurosat.zip", (13_500, 5_400, 8_100)),
        MirrorDataset("ucf101", "UCF101", "ucf101.zip", (7_639, 1_898, 3_783)),
        MirrorDataset("imagenetv2", "ImageNetV2", "imagenetv2.zip", (None, None, 10_000)),
        MirrorDataset("imagenet_sketch", "ImageNetSketch", "imagenet-sketch.zip", (None, None, 50_889)),
        MirrorDataset("imagenet_a", "ImageNetA", "imagenet-adversarial.zip", (None, None, 7_500)),
        MirrorDataset("imagenet_r", "ImageNetR", "imagenet-rendition.zip", (None, None, 30_000)),
    )
}


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def resolve_datasets(names: Sequence[str]) -> list[MirrorDataset]:
    """Catalog entries for command-line names: config names, reader names or folder names, any case; ``all``."""
    if any(n.lower() == "all" for n in names):
        return list(CATALOG.values())
    lookup: dict[str, MirrorDataset] = {}
    for d in CATALOG.values():
        for alias in (d.name, d.reader, d.folder):
            lookup[_key(alias)] = d
    lookup[_key("DTD")] = CATALOG["dtd"]
    chosen: list[MirrorDataset] = []
    for name in names:
        entry = lookup.get(_key(name))
        if entry is None:
            raise DownloadError(f"unknown dataset {name!r}; choose from: all, {', '.join(CATALOG)}")
        if entry not in chosen:
            chosen.append(entry)
    return chosen


@dataclass(frozen=True)
class SplitCounts:
    """What the reader returned: images per split and the number of classes."""

    train: int | None
    val: int | None
    test: int
    classes: int

    def as_tuple(self) -> tuple[int | None, int | None, int]:
        return (self.train, self.val, self.test)

    def describe(self) -> str:
        parts = [f"{k} {v:,}" for k, v in (("train", self.train), ("val", self.val), ("test", self.test)) if v]
        return ", ".join(parts) + f"; {self.classes} classes"


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()][:2]
    if not lines:
        return type(err).__name__
    return lines[0] + (" " if lines[0].endswith(":") else "; ") + lines[1] if len(lines) == 2 else lines[0]


def verify_dataset(root: Path, entry: MirrorDataset, cache_dir: Path) -> SplitCounts:
    """Run the project's reader over ``root/<folder>`` and return the split sizes; `DownloadError` if refused.

    The reader's cache goes to ``cache_dir`` (the user's cache is not touched). The checks before the reader
    make sure it reads the published split and never falls back to generating one.
    """
    from dassl.config import apply_cfg_defaults, get_cfg_default

    folder = root / entry.folder
    missing = [name for name in entry.required_entries() if not (folder / name).exists()]
    if missing:
        raise DownloadError(f"{folder} lacks {', '.join(missing)}")
    cfg = apply_cfg_defaults(get_cfg_default())
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = entry.reader
    cfg.DATASET.CACHE_DIR = str(cache_dir)
    cfg.DATASET.NUM_SHOTS = -1
    cfg.DATASET.VAL_SOURCE = "test" if entry.published[1] is None else "val"
    cfg.SEED = 1
    try:
        reader = entry.reader_class(cfg)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise DownloadError(f"the {entry.reader} reader refused {folder}: {_one_line(err)}") from err
    if issubclass(entry.reader_class, TestOnlyDataset):
        return SplitCounts(None, None, len(reader.test), reader.num_classes)
    val = len(reader.val) if entry.published[1] is not None else None
    return SplitCounts(len(reader.train_x), val, len(reader.test), reader.num_classes)


def _compare_with_published(entry: MirrorDataset, counts: SplitCounts) -> str:
    if counts.as_tuple() == entry.published:
        return "the published sizes"
    published = "/".join("-" if v is None else f"{v:,}" for v in entry.published)
    logger.warning(
        "%s: split sizes %s differ from the published train/val/test %s; results will not be comparable with the "
        "paper's",
        entry.name,
        counts.describe(),
        published,
    )
    return f"NOT the published sizes ({published})"


def _manual_hint(entry: MirrorDataset, url: str) -> str:
    return (
        f"to do it by hand, download {url} and unzip it into --root so that {entry.folder}/ appears "
        f"(see {DATASETS_DOC}, section `{entry.folder}`)"
    )


def _locate_dataset_folder(unpacked: Path, entry: MirrorDataset) -> Path:
    """The folder of the archive that holds the dataset: ``<folder>/``, the archive root, or its only folder."""
    if (unpacked / entry.folder).is_dir():
        return unpacked / entry.folder  # the mirror's layout; what it lacks is reported by the verification
    markers = entry.required_entries()[:1]
    top = sorted(p for p in unpacked.iterdir() if p.name != "__MACOSX")
    candidates = [unpacked]
    if len(top) == 1 and top[0].is_dir():
        candidates.append(top[0])
    for candidate in candidates:
        if candidate.is_dir() and all((candidate / m).exists() for m in markers):
            return candidate
    listed = ", ".join(p.name for p in top[:10]) or "nothing"
    raise DownloadError(f"{entry.archive}: no {entry.folder}/ folder holding {markers[0]} inside (top level: {listed})")


def _staging_root(root: Path) -> Path:
    return root / STAGING_DIR


def _drop_empty_staging(root: Path) -> None:
    staging = _staging_root(root)
    if staging.is_dir() and not any(staging.iterdir()):
        staging.rmdir()


def install_dataset(
    entry: MirrorDataset, root: Path, transport: Transport, listing: dict[str, RemoteFile]
) -> tuple[str, SplitCounts]:
    """Make ``root/<folder>`` hold the verified dataset; returns ``("present"|"installed", counts)``."""
    target = root / entry.folder
    if target.exists():
        with tempfile.TemporaryDirectory(prefix="promptkd-verify-") as cache:
            try:
                return "present", verify_dataset(root, entry, Path(cache))
            except DownloadError as err:
                raise DownloadError(
                    f"{target} exists but is incomplete ({err}); it was left untouched: move it away and rerun, "
                    f"or complete it by hand (see {DATASETS_DOC}, section `{entry.folder}`)"
                ) from err
    remote = listing.get(entry.archive)
    if remote is None:
        raise DownloadError(
            f"{transport.source} has no {entry.archive} (it lists: {', '.join(sorted(listing)[:20]) or 'nothing'}); "
            f"get {entry.folder}/ from its official source (see {DATASETS_DOC}, section `{entry.folder}`)"
        )
    url = transport.url_of(remote)
    staging = _staging_root(root) / entry.folder
    download_dir, unpacked, ready = staging / "archive", staging / "unpacked", staging / "ready"
    if remote.size:
        have = sum(p.stat().st_size for p in download_dir.rglob("*") if p.is_file()) if download_dir.exists() else 0
        require_free_space(root, 2 * remote.size - have, entry.archive)
    download_dir.mkdir(parents=True, exist_ok=True)
    logger.info("%s: fetching %s", entry.name, url)
    archive = fetch_verified(transport, remote, download_dir)  # a failed transfer keeps its partial file
    try:
        remove_tree(unpacked)
        remove_tree(ready)
        extract_archive(archive, unpacked)
        found = _locate_dataset_folder(unpacked, entry)
        ready.mkdir()
        found.rename(ready / entry.folder)
        with tempfile.TemporaryDirectory(prefix="promptkd-verify-") as cache:
            counts = verify_dataset(ready, entry, Path(cache))
        (ready / entry.folder).rename(target)
    except DownloadError as err:
        remove_tree(staging)
        _drop_empty_staging(root)
        reason = str(err).replace(str(ready / entry.folder), f"{entry.archive}:{entry.folder}")
        raise DownloadError(f"{url} refused: {reason}; nothing was installed; {_manual_hint(entry, url)}") from err
    except OSError as err:
        remove_tree(unpacked)
        remove_tree(ready)
        raise DownloadError(f"installing {entry.folder} from {archive} failed: {_one_line(err)}") from err
    remove_tree(staging)
    _drop_empty_staging(root)
    return "installed", counts


def _imagenet_instructions(root: Path) -> str:
    donors = [root / d / "classnames.txt" for d in ("imagenetv2", "imagenet-sketch", "imagenet-adversarial")]
    donor = next((p for p in donors if p.is_file()), None)
    copy = f" (a copy is in {donor})" if donor is not None else ""
    return (
        f"imagenet: not on the mirror (its licence requires registration). Download the ILSVRC-2012 train and "
        f"val images from {IMAGENET_URL}, unpack them into {root / 'imagenet'}/images/train/<wnid>/ and "
        f"images/val/<wnid>/ (sort val into wnid folders with the devkit labels), put classnames.txt in "
        f"{root / 'imagenet'}/{copy}; see {DATASETS_DOC}, section `imagenet`"
    )


def _plan_line(entry: MirrorDataset, root: Path, transport: Transport, listing: dict[str, RemoteFile] | None) -> str:
    target = root / entry.folder
    if entry.archive is None:
        return f"{entry.name}: manual download ({DATASETS_DOC}, section `{entry.folder}`) -> {target}"
    if target.exists():
        return f"{entry.name}: {target} exists; it would only be verified"
    remote = (listing or {}).get(entry.archive)
    if listing is not None and remote is None:
        return f"{entry.name}: {entry.archive} is NOT in {transport.source}"
    size = f"{remote.size / 1e9:.2f} GB" if remote is not None and remote.size else "size unknown"
    url = transport.url_of(remote or RemoteFile(entry.archive))
    return f"{entry.name}: {url} ({size}) -> {target}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m datasets.download",
        description="Download benchmarks from the Hugging Face mirror into the DATASETS.md layout and verify them.",
    )
    parser.add_argument("names", nargs="+", help=f"datasets ({', '.join(CATALOG)}) or 'all'")
    parser.add_argument("--root", default=os.environ.get("DATA"), help="the $DATA folder (default: $DATA)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be fetched and where, fetch nothing")
    parser.add_argument("--repo", default=MIRROR_REPO, help="Hugging Face repository of the mirror")
    parser.add_argument(
        "--repo-type",
        choices=("model", "dataset"),
        help=f"repository type of --repo (default: {MIRROR_REPO_TYPE}, then dataset if no such repository)",
    )
    parser.add_argument("--revision", default="main", help="branch, tag or commit of the mirror to use")
    parser.add_argument(
        "--debug", action="store_true", help="also print the traceback of an error (or PROMPTKD_DEBUG=1)"
    )
    return parser


def run(args: argparse.Namespace, transport: Transport) -> int:
    """The command behind `main` (exceptions propagate)."""
    if not args.root:
        raise DownloadError("no --root given and $DATA is not set: pass --root /path/to/data")
    root = Path(args.root).expanduser().absolute()
    entries = resolve_datasets(args.names)
    mirrored = [e for e in entries if e.archive is not None and not (root / e.folder).exists()]
    listing: dict[str, RemoteFile] | None = None
    if args.dry_run:
        if mirrored:
            try:
                listing = {f.name: f for f in transport.list_files()}
            except DownloadError as err:
                logger.warning("%s (sizes unknown)", err)
        for entry in entries:
            logger.info("%s", _plan_line(entry, root, transport, listing))
        return 0
    if mirrored:
        try:
            listing = {f.name: f for f in transport.list_files()}
        except DownloadError as err:
            # a refusal (401/403) of a public mirror means a bad token; anything else is the network
            check = "check or unset HF_TOKEN" if "failed: refused" in str(err) else "check the connection"
            raise DownloadError(
                f"{err}; {check} (or a proxy / HF_ENDPOINT), or download the archives by hand from "
                f"{transport.source} and unzip them into {root} (see {DATASETS_DOC})"
            ) from err
    root.mkdir(parents=True, exist_ok=True)
    failures = 0
    for entry in entries:
        if entry.archive is None and not (root / entry.folder).exists():
            logger.warning("%s", _imagenet_instructions(root))
            continue
        try:
            status, counts = install_dataset(entry, root, transport, listing or {})
        except DownloadError as err:
            logger.error("error: %s: %s", entry.name, err)
            failures += 1
            continue
        sizes = _compare_with_published(entry, counts)
        logger.info("%s: %s %s (%s: %s)", entry.name, status, root / entry.folder, counts.describe(), sizes)
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None, transport: Transport | None = None) -> int:
    args = _parser().parse_args(argv)
    if transport is None:
        fallback = "dataset" if args.repo_type is None else None
        transport = HubTransport(args.repo, args.repo_type or MIRROR_REPO_TYPE, args.revision, fallback)
    with cli_logging(__name__, "dassl.utils.transfer"):
        return run_with_error_boundary(lambda: run(args, transport), ["--debug"] if args.debug else [])


if __name__ == "__main__":
    sys.exit(main())
