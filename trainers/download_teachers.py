"""``python -m trainers.download_teachers [DATASET ...] [--dest teacher_model]``: the released PromptKD teachers.

The PromptKD authors publish their PromptSRC ViT-L/14 teachers (one per base-to-novel dataset, plus the
ImageNet teacher of the cross-dataset setting) on Baidu Yun, TeraBox and, for some of them only, a public
Google Drive folder. This command fetches what the Drive folder holds, through ``gdown``:

1. lists the folder and picks the files whose names or folders name a requested teacher (when no file names
   any teacher, every file is fetched and sorted after unpacking);
2. downloads each into ``<dest>/.promptkd-download/`` (an interrupted transfer resumes on the next run) and
   unpacks archives there;
3. opens every checkpoint found (``model-best.pth.tar`` / ``model.pth.tar-N``) with the project's safe loader
   (no pickled code runs), reads its prompt design from its keys and accepts it only if it is the released
   design (PromptSRC, ViT-L/14 widths, vision and text depth 9, 4 + 4 context tokens) with one prompt row per
   training class of its dataset;
4. moves it to where PromptKD looks by default: ``<dest>/<DATASET.NAME>/VLPromptLearner/model-best.pth.tar``
   (cross-dataset: ``<dest>/ImageNet-xd/VLPromptLearner_large/model.pth.tar-20``). A refused file leaves
   nothing behind; a teacher already in place is only checked.

Folder names in the release that misspell the dataset (``FGVCaircraft``, ``StandfordCars``) are recognised and
placed under the names PromptKD reads.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from yacs.config import CfgNode as CN

from dassl.error_boundary import run_with_error_boundary
from dassl.utils import load_checkpoint
from dassl.utils.checkpoint_files import strip_module_prefix
from dassl.utils.transfer import (
    ARCHIVE_SUFFIXES,
    DownloadError,
    DriveFolderTransport,
    RemoteFile,
    Transport,
    cli_logging,
    extract_archive,
    fetch_verified,
    is_archive,
    remove_tree,
)

from .common import infer_teacher_design
from .promptkd import default_teacher_checkpoint

__all__ = [
    "TEACHER_FOLDER_ID",
    "OTHER_SOURCES",
    "RELEASED_DESIGN",
    "ReleasedTeacher",
    "TEACHERS",
    "resolve_teachers",
    "teacher_target",
    "check_teacher",
    "install_teachers",
    "main",
]

logger = logging.getLogger(__name__)

TEACHER_FOLDER_ID = "1OdQ9WauZmYAzVSUTTw7tIKKChyECIS5B"
OTHER_SOURCES = (
    "Baidu Yun https://pan.baidu.com/s/1KNJ1mhNKoxdSli4ZldeZUg (extraction code mjf4)",
    "TeraBox https://terabox.com/s/1X4mxJtSaR8W2lrK5bsrCkg",
)
#: (vision depth, text depth, vision tokens, text tokens) of the released teachers (PromptSRC's ViT-L/14 config)
RELEASED_DESIGN = (9, 9, 4, 4)
TEXT_WIDTH, VISION_WIDTH = 768, 1024  # ViT-L/14
STAGING_DIR = ".promptkd-download"
_CHECKPOINT_NAME = re.compile(r"^(model-best\.pth\.tar|model\.pth\.tar-\d+)$")


@dataclass(frozen=True)
class ReleasedTeacher:
    """One released teacher: its folder name, the protocol it serves and its number of training classes."""

    name: str
    modal: str
    classes: int
    aliases: tuple[str, ...] = ()

    def keys(self) -> set[str]:
        return {_key(self.name), *map(_key, self.aliases)}


DATASETS_DOC = "DATASETS.md"  # where the manual steps are described

TEACHERS: dict[str, ReleasedTeacher] = {
    t.name: t
    for t in (
        ReleasedTeacher("Caltech101", "base2novel", 50, ("caltech-101",)),
        ReleasedTeacher("DescribableTextures", "base2novel", 24, ("dtd",)),
        ReleasedTeacher("EuroSAT", "base2novel", 5),
        ReleasedTeacher("FGVCAircraft", "base2novel", 50, ("fgvc_aircraft", "aircraft")),
        ReleasedTeacher("Food101", "base2novel", 51, ("food-101",)),
        ReleasedTeacher("ImageNet", "base2novel", 500),
        ReleasedTeacher("OxfordFlowers", "base2novel", 51, ("oxford_flowers", "flowers102")),
        ReleasedTeacher("OxfordPets", "base2novel", 19, ("oxford_pets",)),
        ReleasedTeacher("StanfordCars", "base2novel", 98, ("stanford_cars", "StandfordCars")),
        ReleasedTeacher("SUN397", "base2novel", 199),
        ReleasedTeacher("UCF101", "base2novel", 51),
        ReleasedTeacher("ImageNet-xd", "cross", 1000, ("imagenet_xd", "cross")),
    )
}


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _strip_archive_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def resolve_teachers(names: Sequence[str]) -> list[ReleasedTeacher]:
    """Teachers for command-line names (folder names, dataset config names, any case); none or ``all`` = all."""
    if not names or any(n.lower() == "all" for n in names):
        return list(TEACHERS.values())
    chosen: list[ReleasedTeacher] = []
    for name in names:
        match = next((t for t in TEACHERS.values() if _key(name) in t.keys()), None)
        if match is None:
            raise DownloadError(f"no released teacher for {name!r}; choose from: all, {', '.join(TEACHERS)}")
        if match not in chosen:
            chosen.append(match)
    return chosen


def _teacher_of(path: str) -> ReleasedTeacher | None:
    """The teacher a remote or unpacked path belongs to: its deepest folder (or archive) naming one."""
    parts = [_strip_archive_suffix(p) for p in PurePosixPath(path.replace("\\", "/")).parts]
    for part in reversed(parts):
        for teacher in TEACHERS.values():
            if _key(part) in teacher.keys():
                return teacher
    return None


def teacher_target(teacher: ReleasedTeacher, dest: Path) -> Path:
    """Where PromptKD reads this teacher by default, with ``teacher_model/`` replaced by ``dest``."""
    cfg = CN({"TRAINER": CN({"MODAL": teacher.modal}), "DATASET": CN({"NAME": teacher.name})})
    relative = PurePosixPath(Path(default_teacher_checkpoint(cfg)).as_posix())
    return dest.joinpath(*relative.parts[1:])


def _state_dict(checkpoint: object) -> dict | None:
    if isinstance(checkpoint, dict):
        state = checkpoint.get("state_dict", checkpoint)
        return state if isinstance(state, dict) else None
    return None


def check_teacher(path: Path, teacher: ReleasedTeacher) -> str:
    """Open ``path`` with the safe loader and check the released design; a one-line summary or `DownloadError`."""
    try:
        state = _state_dict(load_checkpoint(path))
    except (OSError, ValueError, RuntimeError) as err:
        raise DownloadError(f"{path} is not a readable checkpoint ({str(err).splitlines()[0]})") from err
    if state is None:
        raise DownloadError(f"{path} holds no state_dict; not a PromptSRC teacher checkpoint")
    try:
        design, n_ctx_text = infer_teacher_design(state, str(path))
    except (KeyError, ValueError) as err:
        raise DownloadError(f"{path}: {str(err).strip(chr(34) + chr(39))}") from err
    got = (design.vision_depth, design.text_depth, design.vision_ctx, n_ctx_text)
    if got != RELEASED_DESIGN:
        raise DownloadError(
            f"{path} has prompt design vision/text depth {got[0]}/{got[1]} with {got[2]}+{got[3]} tokens; the "
            f"released {teacher.name} teacher has {RELEASED_DESIGN[0]}/{RELEASED_DESIGN[1]} with "
            f"{RELEASED_DESIGN[2]}+{RELEASED_DESIGN[3]}"
        )
    entries = {strip_module_prefix(key): value for key, value in state.items()}
    widths = (int(entries["prompt_learner.ctx"].shape[-1]), int(entries["image_encoder.VPT"].shape[-1]))
    if widths != (TEXT_WIDTH, VISION_WIDTH):
        raise DownloadError(
            f"{path} has text/vision prompt widths {widths[0]}/{widths[1]}; a ViT-L/14 teacher has "
            f"{TEXT_WIDTH}/{VISION_WIDTH}"
        )
    prefix = entries.get("prompt_learner.token_prefix")
    if prefix is not None and int(prefix.shape[0]) != teacher.classes:
        raise DownloadError(
            f"{path} was trained on {int(prefix.shape[0])} classes; the {teacher.name} teacher has {teacher.classes} "
            "(is it another dataset's teacher?)"
        )
    return f"PromptSRC ViT-L/14, depth {got[0]}/{got[1]}, {got[2]}+{got[3]} tokens, {teacher.classes} classes"


def _not_in_folder(teacher: ReleasedTeacher, dest: Path, source: str) -> str:
    return (
        f"{teacher.name}: not in {source} (the authors keep only some teachers there); download it from "
        f"{' or '.join(OTHER_SOURCES)} and unzip it so that {teacher_target(teacher, dest)} exists "
        f"(see {DATASETS_DOC}, section 'Released teachers')"
    )


def _is_checkpoint(name: str) -> bool:
    return bool(_CHECKPOINT_NAME.match(PurePosixPath(name).name))


def _is_teacher_archive(name: str) -> bool:
    return is_archive(name) and not _is_checkpoint(name)  # "model-best.pth.tar" is not a tar archive


def _select(listing: list[RemoteFile], wanted: list[ReleasedTeacher]) -> tuple[list[RemoteFile], bool]:
    """Archives and checkpoints naming a wanted teacher; all of them when none names any teacher (then True)."""
    candidates = [f for f in listing if _is_teacher_archive(f.name) or _is_checkpoint(f.name)]
    named = [(f, _teacher_of(f.name)) for f in candidates]
    if not any(t is not None for _, t in named):
        return candidates, True
    return [f for f, t in named if t in wanted], False


def _checkpoints_in(tree: Path, remote_name: str) -> list[tuple[Path, ReleasedTeacher | None]]:
    """Checkpoint files under ``tree`` with the teacher their path (or the remote file's name) names."""
    found = []
    for path in sorted(p for p in tree.rglob("*") if p.is_file() and _CHECKPOINT_NAME.match(p.name)):
        relative = path.relative_to(tree).as_posix()
        found.append((path, _teacher_of(relative) or _teacher_of(remote_name)))
    return found


def _preferred(paths: list[Path]) -> Path:
    """``model-best.pth.tar`` if present, else the highest ``model.pth.tar-N``."""
    best = [p for p in paths if p.name == "model-best.pth.tar"]
    if best:
        return best[0]
    return max(paths, key=lambda p: int(p.name.rsplit("-", 1)[1]))


def _install_from(
    remote: RemoteFile, transport: Transport, dest: Path, wanted: list[ReleasedTeacher], done: dict[str, str]
) -> None:
    """Fetch one remote file, check and place the wanted teachers it contains (updates ``done``)."""
    staging = dest / STAGING_DIR / re.sub(r"[^A-Za-z0-9._-]+", "_", remote.name)
    download_dir, unpacked = staging / "download", staging / "unpacked"
    url = transport.url_of(remote)
    logger.info("fetching %s (%s)", remote.name, url)
    fetched = fetch_verified(transport, remote, download_dir)  # a failed transfer keeps its partial file
    try:
        remove_tree(unpacked)
        if _is_teacher_archive(fetched.name):
            extract_archive(fetched, unpacked)
            tree = unpacked
        else:
            tree = fetched.parent
        by_teacher: dict[str, list[Path]] = {}
        for path, teacher in _checkpoints_in(tree, remote.name):
            if teacher is None:
                logger.warning("%s: %s names no known teacher; skipped", remote.name, path.relative_to(tree))
            elif teacher in wanted and teacher.name not in done:
                by_teacher.setdefault(teacher.name, []).append(path)
        for name, paths in by_teacher.items():
            teacher, source = TEACHERS[name], _preferred(paths)
            summary = check_teacher(source, teacher)
            target = teacher_target(teacher, dest)
            target.parent.mkdir(parents=True, exist_ok=True)
            source.replace(target)
            done[name] = summary
            logger.info("%s: installed %s (%s)", name, target, summary)
    except DownloadError as err:
        remove_tree(staging)
        raise DownloadError(f"{url} refused: {err}; it was not installed") from err
    remove_tree(staging)


def install_teachers(wanted: list[ReleasedTeacher], dest: Path, transport: Transport) -> tuple[dict[str, str], int]:
    """Check the teachers in place, fetch the others; returns ``({name: summary}, number of failures)``."""
    done: dict[str, str] = {}
    failures = 0
    for teacher in wanted:
        target = teacher_target(teacher, dest)
        if target.is_file():
            try:
                done[teacher.name] = check_teacher(target, teacher)
                logger.info("%s: present %s (%s)", teacher.name, target, done[teacher.name])
            except DownloadError as err:
                logger.error(
                    "error: %s exists but was refused (%s); it was left untouched: move it away and rerun", target, err
                )
                failures += 1
                done[teacher.name] = "refused"
    missing = [t for t in wanted if t.name not in done]
    if not missing:
        return done, failures
    try:
        listing = transport.list_files()
    except DownloadError as err:
        raise DownloadError(
            f"{err}; to do it by hand, download the teachers from {transport.source} or "
            f"{' or '.join(OTHER_SOURCES)} and unzip them into {dest} (see {DATASETS_DOC}, section 'Released "
            "teachers')"
        ) from err
    selected, unnamed = _select(listing, missing)
    if unnamed:
        logger.info("no file in %s names a teacher; fetching all %d file(s)", transport.source, len(selected))
    for remote in selected:
        try:
            _install_from(remote, transport, dest, missing, done)
        except DownloadError as err:
            logger.error("error: %s", err)
            failures += 1
    for teacher in missing:
        if teacher.name not in done:
            logger.warning("%s", _not_in_folder(teacher, dest, transport.source))
            failures += 1
    staging = dest / STAGING_DIR
    if staging.is_dir() and not any(staging.iterdir()):
        staging.rmdir()
    return done, failures


def _dry_run(wanted: list[ReleasedTeacher], dest: Path, transport: Transport) -> None:
    missing = [t for t in wanted if not teacher_target(t, dest).is_file()]
    for teacher in wanted:
        if teacher not in missing:
            logger.info("%s: %s exists; it would only be checked", teacher.name, teacher_target(teacher, dest))
    if not missing:
        return
    try:
        listing = transport.list_files()
    except DownloadError as err:
        logger.warning("%s", err)
        for teacher in missing:
            logger.info("%s: from %s -> %s", teacher.name, transport.source, teacher_target(teacher, dest))
        return
    selected, _ = _select(listing, missing)
    for remote in selected:
        teacher = _teacher_of(remote.name)
        where = teacher_target(teacher, dest) if teacher else f"{dest}/<teacher named inside>"
        logger.info("%s: %s -> %s", remote.name, transport.url_of(remote), where)
    named = {_teacher_of(r.name) for r in selected}
    if None not in named:
        for teacher in missing:
            if teacher not in named:
                logger.info("%s", _not_in_folder(teacher, dest, transport.source))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainers.download_teachers",
        description="Download the released PromptKD teachers into the layout PromptKD reads by default.",
    )
    parser.add_argument("names", nargs="*", help=f"teachers ({', '.join(TEACHERS)}) or dataset names; default all")
    parser.add_argument("--dest", default="teacher_model", help="teacher folder (default: ./teacher_model)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be fetched and where, fetch nothing")
    parser.add_argument("--folder-id", default=TEACHER_FOLDER_ID, help="Google Drive folder id of the release")
    parser.add_argument(
        "--debug", action="store_true", help="also print the traceback of an error (or PROMPTKD_DEBUG=1)"
    )
    return parser


def run(args: argparse.Namespace, transport: Transport, dest: Path) -> int:
    """The command behind `main` (exceptions propagate)."""
    wanted = resolve_teachers(args.names)
    if args.dry_run:
        _dry_run(wanted, dest, transport)
        return 0
    _, failures = install_teachers(wanted, dest, transport)
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None, transport: Transport | None = None) -> int:
    args = _parser().parse_args(argv)
    transport = transport or DriveFolderTransport(args.folder_id)
    dest = Path(args.dest).expanduser().absolute()
    with cli_logging(__name__, "dassl.utils.transfer"):
        return run_with_error_boundary(lambda: run(args, transport, dest), ["--debug"] if args.debug else [])


if __name__ == "__main__":
    sys.exit(main())
