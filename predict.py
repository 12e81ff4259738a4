"""Label images with a trained model alone, or export it to one file.

    python predict.py --model-dir RUN_DIR [--load-epoch N] PATH [PATH ...] [--output FILE.csv|FILE.jsonl]
        [--topk K] [--batch-size B] [--num-workers N] [--device auto|cpu|cuda] [--classnames FILE]
    python predict.py --model-dir RUN_DIR [--load-epoch N] --export FILE
    python predict.py --model FILE PATH [PATH ...] [...]

``PATH`` is an image or a folder (searched recursively; the extensions of the ``Folder`` dataset, any case). The
model is rebuilt from the run folder (``config.yaml``, its checkpoint, ``classnames.txt``) without a teacher or a
dataset, or loaded from an exported file; images go through the run's own test-time preprocessing and precision, so
the labels are the ones its evaluator counted. Output: CSV ``path,label,probability,label_2,probability_2,...``
(top K), JSON lines, or a table on stdout without ``--output``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dassl.error_boundary import run_with_error_boundary
from dassl.errors import ConfigError, ImageFileError, InputFileError, OutputDirError, UserError
from dassl.utils import atomic_write, git_commit

if TYPE_CHECKING:
    from dassl.engine import TrainerBase
    from trainers.common.trained_run import TrainedRun

logger = logging.getLogger("predict")

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
OUTPUT_FORMATS = (".csv", ".jsonl")


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Label images with a trained model, or export it to one file")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", type=str, help="OUTPUT_DIR of a train.py run")
    source.add_argument("--model", type=str, help="a file written by --export")
    parser.add_argument("paths", nargs="*", metavar="PATH", help="image files and folders (recursive)")
    parser.add_argument("--load-epoch", type=int, help="checkpoint epoch (default: the run's final model)")
    parser.add_argument("--output", type=str, default="", help="FILE.csv or FILE.jsonl (default: a table on stdout)")
    parser.add_argument("--topk", type=int, default=1, help="labels per image (default 1)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=0, help="image-loading worker processes")
    parser.add_argument("--device", type=str, default="auto", help="auto | cpu | cuda")
    parser.add_argument("--classnames", type=str, default="", help="class names, one per line (runs without them)")
    parser.add_argument("--export", type=str, default="", help="write the model to this file instead of predicting")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a user error too")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Every flag-level check, before any model or image is read."""
    from trainers.common.trained_run import select_device

    select_device(args.device)
    if args.export:
        if args.model:
            raise ConfigError("--export needs a run folder", "--model", "pass --model-dir RUN_DIR")
        if args.paths:
            raise ConfigError("--export writes a file and labels no images", f"PATH {args.paths[0]}", "drop the paths")
        check_writable(args.export, "--export")
        return
    if not args.paths:
        raise ConfigError("no images given", "PATH", "pass image files or folders after the options")
    if args.model and args.load_epoch is not None:
        raise ConfigError("--load-epoch needs a run folder", "--model", "the exported file holds one epoch")
    for flag, value, minimum in (("--topk", args.topk, 1), ("--batch-size", args.batch_size, 1),
                                 ("--num-workers", args.num_workers, 0)):  # fmt: skip
        if value < minimum:
            raise ConfigError(f"{flag} must be at least {minimum}", f"{flag} {value}", "pass a larger value")
    if args.output:
        if os.path.splitext(args.output)[1].lower() not in OUTPUT_FORMATS:
            raise ConfigError("unknown output format", f"--output {args.output}", "name the file *.csv or *.jsonl")
        check_writable(args.output, "--output")


def check_writable(path: str, flag: str) -> None:
    """An output file's place is checked before any model is built, so a bad path costs no model load."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise OutputDirError("the output is a folder", f"{flag} {path}", "name a file")
    if not os.path.isdir(folder):
        raise OutputDirError("the output's folder does not exist", f"{flag} {path}", "create it first")
    if not os.access(folder, os.W_OK):
        raise OutputDirError("the output's folder is not writable", f"{flag} {path}", "choose another place")


def collect_images(paths: Sequence[str]) -> list[str]:
    """Image files of ``paths`` (folders recursively, sorted), in the order given; duplicates kept once."""
    from datasets.folder import is_image_file, list_images

    images: list[str] = []
    skipped = 0
    for path in paths:
        if os.path.isdir(path):
            found, stray = list_images(path)
            images += found
            skipped += len(stray)
        elif os.path.isfile(path):
            if not is_image_file(path):
                raise InputFileError("not an image file (by its extension)", path, "pass images or folders")
            images.append(path)
        else:
            raise InputFileError("no such file or folder", path, "check the path")
    if skipped:
        logger.info("Skipped %d file(s) that are not images", skipped)
    unique = list(dict.fromkeys(images))
    if not unique:
        raise InputFileError("no images found", ", ".join(paths), "pass folders that hold images")
    return unique


class ImageFiles(Dataset):
    """Images read exactly as the evaluator reads them (``read_image``, then the run's test transform)."""

    def __init__(self, paths: Sequence[str], transform: Any) -> None:
        self.paths, self.transform = list(paths), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        from dassl.utils import read_image

        path = self.paths[index]
        try:
            image = read_image(path)
        except UserError:
            raise
        except Exception as err:  # PIL raises several types for corrupt or truncated files
            raise ImageFileError(f"cannot read the image ({type(err).__name__}: {err})", path, "remove it") from err
        return self.transform(image)


@dataclass
class Predictor:
    """A model ready to label images: the module, its class names, preprocessing and precision on a device."""

    model: Any
    classnames: list[str]
    transform: Any
    precision: Any
    device: torch.device

    @torch.no_grad()
    def predict(self, paths: Sequence[str], topk: int, batch_size: int, num_workers: int) -> list[list[tuple]]:
        """``[(class name, probability), ...]`` (top ``topk``, best first) per image."""
        loader = DataLoader(ImageFiles(paths, self.transform), batch_size=batch_size, num_workers=num_workers)
        self.model.eval()
        rows: list[list[tuple]] = []
        for images in tqdm(loader, desc="predict", disable=len(loader) <= 1, leave=False):
            with self.precision.autocast():
                logits = self.model(images.to(self.device))
            probabilities = logits.float().softmax(dim=-1)
            values, indices = probabilities.topk(topk, dim=-1)
            rows += [
                [(self.classnames[i], float(p)) for i, p in zip(idx.tolist(), val.tolist(), strict=True)]
                for idx, val in zip(indices, values, strict=True)
            ]
        return rows


def predictor_from_run(args: argparse.Namespace) -> tuple[Predictor, TrainerBase, TrainedRun]:
    """(predictor, trainer, run) rebuilt from ``--model-dir`` (engine console lines go to stderr)."""
    from dassl.engine import resolve_precision
    from trainers.common.inference import eval_transform
    from trainers.common.trained_run import TrainedRun, build_trained_trainer, run_classnames

    run = TrainedRun(args.model_dir)
    classnames = run_classnames(run.run_dir, args.classnames)
    trainer = build_trained_trainer(run, classnames, args.load_epoch, args.device)
    model = trainer.inference_model()
    if model.num_classes != len(classnames):
        raise InputFileError(
            f"{len(classnames)} class names for a model of {model.num_classes} classes",
            args.classnames or os.path.join(run.run_dir, "classnames.txt"),
            "give one name per class, in label order",
        )
    precision = resolve_precision(trainer.get_precision_name(), trainer.device)
    predictor = Predictor(model, classnames, eval_transform(run.cfg.INPUT), precision, trainer.device)
    return predictor, trainer, run


def predictor_from_export(args: argparse.Namespace) -> Predictor:
    """The predictor of an exported file (``--model``): its own preprocessing and precision, no run folder."""
    from dassl.engine import resolve_precision
    from trainers.common.inference import load_exported_model
    from trainers.common.trained_run import select_device

    use_cuda = select_device(args.device)
    device = torch.device("cuda" if use_cuda and torch.cuda.is_available() else "cpu")
    exported = load_exported_model(args.model, device)
    classnames = exported.classnames
    if args.classnames:
        from dassl.engine.run_classnames import read_classnames_file

        classnames = read_classnames_file(args.classnames)
        if len(classnames) != exported.model.num_classes:
            raise InputFileError(
                f"{len(classnames)} class names for a model of {exported.model.num_classes} classes",
                args.classnames,
                "give one name per class, in label order",
            )
    precision = resolve_precision(exported.precision, device)
    return Predictor(exported.model, classnames, exported.transform, precision, device)


def export_run(args: argparse.Namespace) -> str:
    """Write the run's inference model to ``--export`` with where it came from (config hash, commit, epoch)."""
    from trainers.common.inference import export_model

    predictor, trainer, run = predictor_from_run(args)
    provenance = {
        "trainer": run.cfg.TRAINER.NAME,
        "dataset": run.cfg.DATASET.NAME,
        "config_sha256": run.config_sha256,
        "git_commit": git_commit(REPO_ROOT),
        "run_dir": run.run_dir,
        "epoch": trainer.loaded_epoch,
    }
    export_model(predictor.model, predictor.classnames, run.cfg.INPUT, trainer.get_precision_name(), provenance,
                 args.export)  # fmt: skip
    logger.info("Exported %s (%s, %d classes) to %s", run.run_dir, run.cfg.TRAINER.NAME, len(predictor.classnames),
                args.export)  # fmt: skip
    return args.export


def write_results(paths: Sequence[str], rows: list[list[tuple]], output: str, topk: int) -> None:
    """``--output`` as CSV (one column pair per rank) or JSON lines, written atomically (never half a file)."""
    if output.lower().endswith(".csv"):
        header = ["path", "label", "probability"]
        for k in range(2, topk + 1):
            header += [f"label_{k}", f"probability_{k}"]
        with atomic_write(output) as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            for path, row in zip(paths, rows, strict=True):
                writer.writerow([path] + [v for label, p in row for v in (label, f"{p:.6f}")])
        return
    with atomic_write(output) as f:
        for path, row in zip(paths, rows, strict=True):
            record = {"path": path, "label": row[0][0], "probability": round(row[0][1], 6)}
            record["top"] = [{"label": label, "probability": round(p, 6)} for label, p in row]
            f.write(json.dumps(record) + "\n")


def format_table(paths: Sequence[str], rows: list[list[tuple]]) -> str:
    """The stdout table without ``--output``: path, the top labels and their probabilities, aligned."""
    header = ["path", "label", "probability"]
    lines = [[path, " | ".join(label for label, _ in row), " | ".join(f"{p:.4f}" for _, p in row)]
             for path, row in zip(paths, rows, strict=True)]  # fmt: skip
    widths = [max(len(r[c]) for r in [header, *lines]) for c in range(3)]
    rule = "  ".join("-" * w for w in widths)
    text = [("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True))).rstrip() for r in [header, *lines]]
    return "\n".join([text[0], rule, *text[1:]])


def main(argv: Sequence[str] | None = None) -> list[list[tuple]] | str:
    """Run predict.py with ``argv``; returns the rows (or the exported file) for in-process callers."""
    from train import import_plugin_packages

    args = build_arg_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    check_args(args)
    images = [] if args.export else collect_images(args.paths)
    with contextlib.redirect_stdout(sys.stderr):  # the engine's console lines; stdout is for the results
        import_plugin_packages()
        if args.export:
            return export_run(args)
        predictor = predictor_from_export(args) if args.model else predictor_from_run(args)[0]
        topk = min(args.topk, len(predictor.classnames))
        rows = predictor.predict(images, topk, args.batch_size, args.num_workers)
    if args.output:
        write_results(images, rows, args.output, topk)
        logger.info("Wrote %d predictions to %s", len(rows), args.output)
    else:
        print(format_table(images, rows))
    return rows


if __name__ == "__main__":
    sys.exit(run_with_error_boundary(main))
