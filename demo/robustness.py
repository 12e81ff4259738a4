"""Robustness sweep of the offline demo, ``python -m demo.robustness``: presets x data seeds x torch threads.

The demo's numbers depend on the CPU's float rounding during pre-training, so one run on one machine says little
about another. This tool runs ``python -m demo`` once per combination (a fresh process, its own pre-training
cache per thread count, because the thread count changes the rounding as another CPU would), appends one JSON
line per run to ``<output>/runs.jsonl`` (a combination already there is skipped, so a sweep can be run in small
pieces) and prints, per preset and thread count, min / median / max of each figure and whether every run met
both learning criteria: the KD loss falls by at least 40% from the first to the last epoch, and the student's HM
reaches at least 0.7x the teacher's. The CPU model and its vector extensions are recorded with every run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from dassl.base_novel import harmonic_mean
from dassl.error_boundary import run_with_error_boundary

from .config import REPO_ROOT

__all__ = [
    "KD_LOSS_RATIO_MAX",
    "STUDENT_TEACHER_HM_MIN",
    "cpu_description",
    "learned",
    "markdown_table",
    "record_of",
    "summarise",
]

KD_LOSS_RATIO_MAX = 0.6  # last-epoch KD loss / first-epoch KD loss: a fall of at least 40%
STUDENT_TEACHER_HM_MIN = 0.7  # student HM / teacher HM
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu_description() -> dict:
    """CPU model and the vector extensions that change float rounding (from ``/proc/cpuinfo`` where present)."""
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in VECTOR_FLAGS if f in flags]}


def record_of(summary: dict, preset: str, data_seed: int, threads: int, seconds: float) -> dict:
    """One ``runs.jsonl`` line from a demo's ``summary.json``, with the two ratios the criteria test."""
    teacher_hm = harmonic_mean(summary["teacher"]["base"], summary["teacher"]["novel"])
    kd = summary["kd_loss"]
    return {
        "preset": preset,
        "data_seed": data_seed,
        "threads": threads,
        "teacher": summary["teacher"],
        "student": summary["student"],
        "teacher_hm": round(teacher_hm, 2),
        "student_hm": summary["student"]["hm"],
        "hm_ratio": round(summary["student"]["hm"] / teacher_hm, 3) if teacher_hm else 0.0,
        "kd_first": kd["first_epoch"],
        "kd_last": kd["last_epoch"],
        "kd_ratio": round(kd["last_epoch"] / kd["first_epoch"], 3),
        "kd_weight": summary.get("kd_weight"),
        "teacher_zero_shot": summary["pretrain"]["teacher"],
        "seconds": round(seconds, 1),
        "cpu": cpu_description(),
        "torch": _torch_version(),
        "torch_cpu_capability": _torch_cpu_capability(),
    }


def _torch_version() -> str:
    import torch

    return torch.__version__


def _torch_cpu_capability() -> str:
    """The kernel set torch dispatches to here (``AVX512``, ``AVX2``, ``DEFAULT``): what actually changes the sums."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def learned(record: dict) -> bool:
    """Both learning criteria (module docstring)."""
    return record["kd_ratio"] <= KD_LOSS_RATIO_MAX and record["hm_ratio"] >= STUDENT_TEACHER_HM_MIN


def summarise(records: Sequence[dict]) -> str:
    """Per preset and thread count: runs, seeds, min / median / max of each figure, runs meeting the criteria."""
    lines = []
    groups: dict[tuple[str, int], list[dict]] = {}
    for record in records:
        groups.setdefault((record["preset"], record["threads"]), []).append(record)
    for (preset, threads), group in sorted(groups.items()):
        seeds = sorted(r["data_seed"] for r in group)
        ok = sum(learned(r) for r in group)
        lines.append(f"preset {preset}, {threads} thread(s): {len(group)} runs (data seeds {seeds}), {ok} learned")
        for key in ("teacher_hm", "student_hm", "hm_ratio", "kd_first", "kd_last", "kd_ratio", "seconds"):
            values = [float(r[key]) for r in group]
            lines.append(
                f"  {key:<11} min {min(values):8.3f}  median {statistics.median(values):8.3f}  max {max(values):8.3f}"
            )
    cpus = sorted(
        {
            f"{r['cpu']['model']} ({', '.join(r['cpu']['flags']) or 'no AVX2'}; torch kernels "
            f"{r.get('torch_cpu_capability', 'unknown')}, torch {r.get('torch', 'unknown')})"
            for r in records
        }
    )
    lines.append("CPU: " + "; ".join(cpus))
    return "\n".join(lines) + "\n"


def _span(group: Sequence[dict], key: str, digits: int) -> str:
    values = [float(r[key]) for r in group]
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def markdown_table(records: Sequence[dict]) -> str:
    """The README's table: one row per preset and thread count, min-max of each figure over the data seeds."""
    lines = [
        "| preset | threads | data seeds | learned | teacher HM | student HM | student / teacher HM | KD loss first "
        "epoch | last epoch | last / first |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, int], list[dict]] = {}
    for record in records:
        groups.setdefault((record["preset"], record["threads"]), []).append(record)
    for (preset, threads), group in sorted(groups.items(), key=lambda item: (item[0][0] != "default", item[0])):
        seeds = ", ".join(str(s) for s in sorted(r["data_seed"] for r in group))
        lines.append(
            f"| {preset} | {threads} | {seeds} | {sum(learned(r) for r in group)}/{len(group)} | "
            f"{_span(group, 'teacher_hm', 1)} | {_span(group, 'student_hm', 1)} | {_span(group, 'hm_ratio', 2)} | "
            f"{_span(group, 'kd_first', 1)} | {_span(group, 'kd_last', 1)} | {_span(group, 'kd_ratio', 2)} |"
        )
    return "\n".join(lines) + "\n"


def read_runs(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m demo.robustness", description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=os.path.join("output", "demo-robustness"))
    parser.add_argument("--presets", nargs="+", default=["small", "default"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="data seeds (--data-seed)")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--keep", action="store_true", help="keep each run's output folder (default: only its line)")
    parser.add_argument("--summary-only", action="store_true", help="print the summary of runs.jsonl, run nothing")
    parser.add_argument(
        "--markdown", action="store_true", help="print the summary as the README's markdown table (min-max)"
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error too")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = Path(args.output_dir).resolve()
    runs_file = root / "runs.jsonl"
    done = {(r["preset"], r["data_seed"], r["threads"]) for r in read_runs(runs_file)}
    for preset in [] if args.summary_only else args.presets:
        for threads in args.threads:
            for seed in args.seeds:
                if (preset, seed, threads) in done:
                    continue
                run_dir = root / f"{preset}-seed{seed}-threads{threads}"
                command = [
                    sys.executable, "-m", "demo", "--preset", preset, "--data-seed", str(seed),
                    "--threads", str(threads), "--no-progress", "--output-dir", str(run_dir),
                    "--cache-dir", str(root / f"cache-threads{threads}"),
                ]  # fmt: skip
                start = time.perf_counter()
                finished = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
                if finished.returncode != 0:
                    raise RuntimeError(f"{' '.join(command)} failed:\n{finished.stdout[-2000:]}{finished.stderr}")
                summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
                record = record_of(summary, preset, seed, threads, time.perf_counter() - start)
                with runs_file.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(record, sort_keys=True) + "\n")
                sys.stdout.write(
                    f"{preset} seed {seed} threads {threads}: student HM {record['student_hm']:.1f} / teacher "
                    f"{record['teacher_hm']:.1f}, KD loss x{record['kd_ratio']:.2f}, {record['seconds']:.0f}s\n"
                )
                sys.stdout.flush()
                if not args.keep:
                    shutil.rmtree(run_dir)
    records = read_runs(runs_file)
    sys.stdout.write(markdown_table(records) if args.markdown else summarise(records))
    return 0


if __name__ == "__main__":
    sys.exit(run_with_error_boundary(main))
