"""The offline PromptKD demo, ``python -m demo`` (no downloads, no datasets, a few minutes on 2 CPU cores).

Teacher prompt learning (PromptSRC) on the base classes of a generated benchmark, unsupervised distillation
(PromptKD) into a smaller student on unlabeled images of all classes, and the base/novel/HM table -- all
through ``train.py`` and ``parse_test_res.py`` with the published configs (see demo/pipeline.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import torch

from dassl.error_boundary import run_with_error_boundary

from .config import load_preset
from .pipeline import DemoResult, demo_only_settings, run_demo
from .pretrain import demo_cache_dir

DEFAULT_THREADS = 2  # the tiny models stop scaling beyond a couple of cores; more threads only add overhead


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0].replace("``", ""))
    parser.add_argument(
        "--preset", default="default", help="configs/demo/<preset>.yaml or a YAML path; 'small' is the CI size"
    )
    parser.add_argument("--output-dir", default=os.path.join("output", "demo"), help="where runs, data and table go")
    parser.add_argument(
        "--cache-dir", default=None, help="pre-trained CLIP cache (default $PROMPTKD_CACHE_DIR/demo or ~/.cache/...)"
    )
    parser.add_argument("--seed", type=int, default=1, help="train.py --seed for both runs")
    parser.add_argument(
        "--data-seed",
        type=int,
        default=None,
        help="seed of the generated dataset and of the CLIP pre-training (default: the preset's, 0)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help=f"torch threads (default min({DEFAULT_THREADS}, CPU cores))"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (log files still written)")
    parser.add_argument("--verbose", action="store_true", help="also show train.py's full console output")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error too")
    return parser


def describe(result: DemoResult) -> str:
    """The closing report: the table, the learning signal and where everything was written."""
    s, m = result.seconds, result.clips.metrics
    teacher_zs = m["teacher"]
    lines = [
        "",
        result.table.rstrip(),
        "",
        f"Chance on the novel classes: {m['chance_novel']:.1f}%.",
        f"Teacher CLIP zero-shot after pre-training (fresh images): base {teacher_zs['zero_shot_base']:.1f}%, "
        f"novel {teacher_zs['zero_shot_novel']:.1f}%",
        f"Teacher (PromptSRC):  base {result.teacher_base:.1f}%  novel {result.teacher_novel:.1f}%",
        f"Student (PromptKD):   base {result.student_base:.1f}%  novel {result.student_novel:.1f}%  "
        f"HM {result.student_hm:.1f}%",
        f"KD loss (KD_WEIGHT {result.kd_weight:g}): first epoch {result.kd_loss_first_epoch:.4g} -> last epoch "
        f"{result.kd_loss_last_epoch:.4g}",
        "",
        "Written:",
        f"  dataset (Caltech101 layout)  {result.dataset.dataset_dir}",
        f"  pre-trained CLIPs            {result.clips.teacher_path.parent} "
        f"({'loaded from the cache' if result.clips.cached else 'new'})",
        f"  teacher run (PromptSRC)      {result.teacher_dir}",
        f"  teacher novel evaluation     {result.teacher_novel_dir}",
        f"  teacher checkpoint           {result.teacher_checkpoint}",
        f"  student run (PromptKD)       {result.student_dir}",
        f"  table                        {result.table_file}",
        f"  numbers                      {result.output_dir / 'summary.json'}",
        "",
        "Time: " + ", ".join(f"{k} {v:.0f}s" for k, v in s.items()),
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    threads = args.threads or min(DEFAULT_THREADS, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    preset = load_preset(args.preset)
    if args.data_seed is not None:
        preset = preset.with_data_seed(args.data_seed)
    out = sys.stdout
    out.write(
        f"PromptKD offline demo (preset {preset.name}, data seed {preset.generator_seed}, torch threads: "
        f"{threads}); pre-trained CLIP cache: {demo_cache_dir(args.cache_dir)}\n"
        "Demo-only settings (not the paper's recipe):\n" + "".join(f"  {line}\n" for line in demo_only_settings(preset))
    )
    out.flush()

    def on_stage(message: str) -> None:
        out.write(message + "\n")
        out.flush()

    result = run_demo(
        preset,
        args.output_dir,
        cache_dir=args.cache_dir,
        seed=args.seed,
        progress=not args.no_progress,
        verbose=args.verbose,
        on_stage=on_stage,
    )
    out.write(describe(result))
    return 0


if __name__ == "__main__":
    sys.exit(run_with_error_boundary(main))
