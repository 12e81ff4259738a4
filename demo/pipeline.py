"""The demo pipeline through the project's real entry points (issue #7).

1. ``demo.shapes`` writes the coloured-shapes benchmark in the Caltech101 layout (+ split_zhou JSON).
2. ``demo.pretrain`` pre-trains (or loads from the cache) a tiny teacher CLIP and a smaller student CLIP.
3. ``train.py`` + PromptSRC's real YAML: the teacher's prompts on the base classes, few-shot
   (``scripts/promptsrc/base2new_train.sh``), then its novel-class evaluation (``base2new_test.sh``).
4. The teacher checkpoint is placed in upstream's layout ``teacher_model/Caltech101/VLPromptLearner/``.
5. ``train.py`` + PromptKD's real YAML, ``TRAINER.MODAL base2novel``: the student learns from the teacher on
   the unlabeled train images of all classes (``scripts/promptkd/base2new_train.sh``).
6. ``parse_test_res.py`` prints the base/novel/HM table of the output tree.

Sizes, epochs and paths differ from the published runs (``configs/demo/*.yaml``, checked by ``demo.config``),
and so does the one setting a preset's ``DEMO_ONLY`` section names (:func:`demo_only_settings` says which, and
the demo prints it). Folder names follow the scripts, so the tree reads like a real experiment.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dassl.errors import ConfigError, FileContentError, InputFileError, UserError
from dassl.utils.atomic import atomic_copy_file, atomic_write_text
from reporting.runs import FINAL_PHASES, read_results_jsonl

from .config import REPO_ROOT, DemoPreset
from .pretrain import PretrainResult, pretrained_clips
from .progress import stage_bar, train_output
from .shapes import ShapesDataset, write_caltech_layout

__all__ = ["DemoResult", "demo_only_settings", "kd_loss_by_epoch", "published_kd_weight", "run_demo"]

logger = logging.getLogger(__name__)

DATASET_NAME = "Caltech101"  # the reader the demo data is written for
DATASET_KEY = "caltech101"  # configs/datasets/<key>.yaml, configs/kd_weights.yaml
TEACHER_CFG = "vit_b16_c2_ep20_batch4_4+4ctx"
STUDENT_CFG = "vit_b16_c2_ep20_batch8_4+4ctx"
MARKER = ".promptkd-demo"  # marks an output folder the demo owns (so re-runs may clear their own sub-folders)
OWNED = ("data", "base2new", "teacher_model", "cache", "results_table.txt", "summary.json")
RERUN_HINT = "re-run python -m demo (--verbose shows the training output)"
EPOCH_LOSS = re.compile(r"epoch \[(\d+)/\d+\] batch \[(\d+)/(\d+)\].*?loss [0-9.eE+-]+ \(([0-9.eE+-]+)\)")


@dataclass
class DemoResult:
    """Where everything went and what the runs measured (accuracies in %)."""

    output_dir: Path
    dataset: ShapesDataset
    clips: PretrainResult
    teacher_dir: Path
    teacher_novel_dir: Path
    teacher_checkpoint: Path
    student_dir: Path
    table: str
    table_file: Path
    teacher_base: float
    teacher_novel: float
    student_base: float
    student_novel: float
    student_hm: float
    kd_loss_first_epoch: float
    kd_loss_last_epoch: float
    kd_weight: float
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-ready numbers (also written to ``summary.json``)."""
        return {
            "teacher": {"base": self.teacher_base, "novel": self.teacher_novel},
            "student": {"base": self.student_base, "novel": self.student_novel, "hm": self.student_hm},
            "kd_loss": {"first_epoch": self.kd_loss_first_epoch, "last_epoch": self.kd_loss_last_epoch},
            "kd_weight": self.kd_weight,
            "pretrain": self.clips.metrics,
            "pretrain_cached": self.clips.cached,
            "seconds": self.seconds,
            "classes": {"base": self.dataset.num_base, "novel": len(self.dataset.classes) - self.dataset.num_base},
        }


def _prepare_output(output_dir: Path) -> None:
    """Create ``output_dir`` or reuse one the demo made before (clearing only the demo's own entries)."""
    if output_dir.exists() and any(output_dir.iterdir()) and not (output_dir / MARKER).exists():
        raise FileExistsError(
            errno.EEXIST,
            f"the output folder exists, is not empty and was not created by the demo (no {MARKER} file); "
            "pass an empty or new folder with --output-dir",
            str(output_dir),
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / MARKER).write_text("written by python -m demo; re-runs replace its sub-folders\n", encoding="utf-8")
    for name in OWNED:
        path = output_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise InputFileError("the run did not record its results", path, RERUN_HINT)
    return read_results_jsonl(str(path))


def _final_accuracy(output: Path, classes: str) -> float:
    records = [
        r
        for r in _read_jsonl(output / "results.jsonl")
        if r.get("event") == "eval"
        and r.get("split") == "test"
        and r.get("classes") == classes
        and r.get("phase") in FINAL_PHASES
    ]
    if not records:
        raise FileContentError(
            f"no final test result for the {classes!r} classes", output / "results.jsonl", RERUN_HINT
        )
    return float(records[-1]["metrics"]["accuracy"])


def _summary_record(output: Path) -> dict:
    records = [r for r in _read_jsonl(output / "results.jsonl") if r.get("event") == "summary"]
    if not records:
        raise FileContentError("no PromptKD base/novel summary record", output / "results.jsonl", RERUN_HINT)
    return records[-1]


def kd_loss_by_epoch(log_file: str | os.PathLike) -> list[float]:
    """The running-average training loss at the last logged batch of every epoch, read from ``log.txt``.

    Upstream's iteration line prints ``loss <current> (<epoch average>)``; the average at an
    epoch's last logged line is that epoch's mean loss (the KD loss for PromptKD).
    """
    per_epoch: dict[int, float] = {}
    for line in Path(log_file).read_text(encoding="utf-8").splitlines():
        match = EPOCH_LOSS.search(line)
        if match:
            per_epoch[int(match.group(1))] = float(match.group(4))
    if not per_epoch:
        raise FileContentError(
            "no training iteration lines", log_file, "set TRAIN.PRINT_FREQ to at most the batches of one epoch"
        )
    return [per_epoch[e] for e in sorted(per_epoch)]


def published_kd_weight(dataset_key: str = DATASET_KEY) -> float:
    """``configs/kd_weights.yaml``'s value for the dataset, as the PromptKD scripts pass it."""
    for line in (REPO_ROOT / "configs" / "kd_weights.yaml").read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == dataset_key and not key.strip().startswith("#"):
            return float(value)
    raise ConfigError(
        f"no KD weight for the dataset {dataset_key!r}", "configs/kd_weights.yaml", f"add a line '{dataset_key}: <w>'"
    )


def _kd_weight(preset: DemoPreset) -> float:
    return published_kd_weight() if preset.kd_weight is None else preset.kd_weight


def demo_only_settings(preset: DemoPreset) -> list[str]:
    """One line per setting where this preset departs from the published recipe (printed at the demo's start).

    The teacher CLIP's embedding width is listed too: it is a model shape, not a method setting, but it is the
    demo's choice (ViT-L/14's 768, the paper's teacher) and the student's step size depends on it.
    """
    lines = [
        f"teacher CLIP embed_dim {preset.pretrain.teacher.embed_dim} (ViT-L/14, the paper's teacher: 768), "
        f"student CLIP embed_dim {preset.pretrain.student.embed_dim}"
    ]
    if preset.kd_weight is not None:
        lines.append(
            f"TRAINER.PROMPTKD.KD_WEIGHT {preset.kd_weight:g} (demo only; published for {DATASET_KEY}: "
            f"{published_kd_weight():g})"
        )
    return lines


def _run_train(argv: list[str], description: str, progress: bool, verbose: bool) -> None:
    """``train.main(argv)`` in this process, its console output turned into a progress bar."""
    import train  # the real entry point (imports datasets and trainers for their registrations)

    with stage_bar(description, None, enabled=progress) as bar:
        with train_output(bar, verbose):
            train.main(argv)
        if bar.total is None:  # evaluation only: no iteration lines
            bar.total = 1
        bar.n = bar.total
        bar.set_postfix_str("done", refresh=True)


@contextlib.contextmanager
def _timed(seconds: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = round(time.perf_counter() - start, 1)


def _parse_table(directory: Path) -> str:
    """``parse_test_res.py DIR`` (the reporting CLI) captured as text."""
    from reporting.cli import main as parse_test_res_main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = parse_test_res_main([str(directory)])
    if status != 0:
        raise UserError(
            f"parse_test_res.py failed with status {status}", directory, "see its error line above; then re-run"
        )
    return buffer.getvalue()


def run_demo(
    preset: DemoPreset,
    output_dir: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 1,
    progress: bool = True,
    verbose: bool = False,
    on_stage: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the whole demo into ``output_dir`` (see the module docstring); returns paths and measured numbers."""
    output_dir = Path(output_dir).resolve()
    announce = on_stage or (lambda message: None)
    seconds: dict[str, float] = {}
    total_start = time.perf_counter()
    _prepare_output(output_dir)

    announce("[1/6] Writing the coloured-shapes dataset (Caltech101 layout)")
    with _timed(seconds, "dataset"):
        data = write_caltech_layout(
            output_dir / "data", seed=preset.generator_seed, per_class=preset.per_class, size=preset.image_size
        )

    announce("[2/6] Tiny teacher and student CLIPs: contrastive pre-training (skipped when cached)")
    with _timed(seconds, "pretrain"), stage_bar("pre-training", preset.pretrain.steps, enabled=progress) as bar:

        def advance(step: int, total: int, losses: dict) -> None:
            bar.n = step
            bar.set_postfix_str(" ".join(f"{k} {v:.3f}" for k, v in losses.items()), refresh=False)
            bar.refresh()

        clips = pretrained_clips(preset.pretrain, cache_dir, progress=advance)
        if clips.cached:
            bar.n = bar.total
            bar.set_postfix_str("cached", refresh=True)

    common = [
        "--root", str(data.root),
        "--seed", str(seed),
        "--dataset-config-file", str(REPO_ROOT / "configs" / "datasets" / f"{DATASET_KEY}.yaml"),
        "DATASET.CACHE_DIR", str(output_dir / "cache"),
    ]  # fmt: skip
    shots = preset.opt("TEACHER", "DATASET.NUM_SHOTS")
    rel = Path(DATASET_NAME) / f"shots_{shots}" / "PromptSRC" / TEACHER_CFG / f"seed{seed}"
    teacher_dir = output_dir / "base2new" / "train_base" / rel
    teacher_novel_dir = output_dir / "base2new" / "test_new" / rel
    teacher_cfg = str(REPO_ROOT / "configs" / "trainers" / "PromptSRC" / f"{TEACHER_CFG}.yaml")
    teacher_clip = ["MODEL.BACKBONE.NAME", str(clips.teacher_path)]

    announce("[3/6] Teacher: PromptSRC prompts on the base classes (train.py)")
    with _timed(seconds, "teacher"):
        _run_train(
            ["--trainer", "PromptSRC", "--config-file", teacher_cfg, "--output-dir", str(teacher_dir), *common,
             *preset.teacher_opts, *teacher_clip, "DATASET.SUBSAMPLE_CLASSES", "base"],
            "teacher (PromptSRC)", progress, verbose,
        )  # fmt: skip

    epochs = preset.opt("TEACHER", "OPTIM.MAX_EPOCH")
    announce("[4/6] Teacher on the novel classes (train.py --eval-only)")
    with _timed(seconds, "teacher_novel"):
        _run_train(
            ["--trainer", "PromptSRC", "--config-file", teacher_cfg, "--output-dir", str(teacher_novel_dir),
             "--eval-only", "--model-dir", str(teacher_dir), "--load-epoch", epochs, *common,
             *preset.teacher_opts, *teacher_clip, "DATASET.SUBSAMPLE_CLASSES", "new"],
            "teacher novel eval", progress, verbose,
        )  # fmt: skip
    teacher_checkpoint = output_dir / "teacher_model" / DATASET_NAME / "VLPromptLearner" / "model-best.pth.tar"
    atomic_copy_file(teacher_dir / "VLPromptLearner" / f"model.pth.tar-{epochs}", teacher_checkpoint)

    student_dir = output_dir / "base2new" / "train_base" / DATASET_NAME / "shots_0" / "PromptKD" / STUDENT_CFG
    student_dir = student_dir / f"seed_{seed}"
    announce("[5/6] Student: PromptKD distillation on unlabeled images of all classes (train.py)")
    with _timed(seconds, "student"):
        _run_train(
            ["--trainer", "PromptKD", "--output-dir", str(student_dir),
             "--config-file", str(REPO_ROOT / "configs" / "trainers" / "PromptKD" / f"{STUDENT_CFG}.yaml"),
             *common, *preset.student_opts,
             "DATASET.NUM_SHOTS", "0", "TRAINER.MODAL", "base2novel", "TRAINER.PROMPTKD.TEMPERATURE", "1.0",
             "TRAINER.PROMPTKD.KD_WEIGHT", str(_kd_weight(preset)),
             "MODEL.BACKBONE.NAME", str(clips.student_path),
             "TRAINER.PROMPTKD.TEACHER_CLIP", str(clips.teacher_path),
             "TRAINER.PROMPTKD.TEACHER_CKPT", str(teacher_checkpoint)],
            "student (PromptKD)", progress, verbose,
        )  # fmt: skip

    announce("[6/6] Results table (parse_test_res.py)")
    table = _parse_table(output_dir / "base2new")
    table_file = output_dir / "results_table.txt"
    atomic_write_text(table, table_file)
    kd_losses = kd_loss_by_epoch(student_dir / "log.txt")
    summary = _summary_record(student_dir)
    seconds["total"] = round(time.perf_counter() - total_start, 1)
    result = DemoResult(
        output_dir=output_dir,
        dataset=data,
        clips=clips,
        teacher_dir=teacher_dir,
        teacher_novel_dir=teacher_novel_dir,
        teacher_checkpoint=teacher_checkpoint,
        student_dir=student_dir,
        table=table,
        table_file=table_file,
        teacher_base=_final_accuracy(teacher_dir, "base"),
        teacher_novel=_final_accuracy(teacher_novel_dir, "new"),
        student_base=float(summary["base"]),
        student_novel=float(summary["novel"]),
        student_hm=float(summary["hm"]),
        kd_loss_first_epoch=kd_losses[0],
        kd_loss_last_epoch=kd_losses[-1],
        kd_weight=_kd_weight(preset),
        seconds=seconds,
    )
    atomic_write_text(json.dumps(result.summary(), indent=2) + "\n", output_dir / "summary.json")
    return result
