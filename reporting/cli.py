"""Command line of ``parse_test_res.py``: upstream's flags plus paper-style tables.

Without table options on an upstream-style folder (``DIR/{run}/log.txt``) it prints upstream's lines
(``reporting.upstream``). Otherwise it collects every run under DIR, reads results.jsonl first (text logs as
fallback), pairs base and novel per dataset and seed, and prints one table per experiment.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator

from dassl.error_boundary import run_with_error_boundary
from dassl.errors import InputFileError, UserError
from reporting.files import write_text_atomic
from reporting.plot import PlotUnavailableError, plot_tables
from reporting.reference import attach_reference, load_reference
from reporting.render import FORMATS, render
from reporting.runs import Run, collect_runs
from reporting.tables import TABLE_KINDS, build_tables
from reporting.upstream import run_upstream

logger = logging.getLogger("parse_test_res")

EXIT_OK, EXIT_PROBLEMS = 0, 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parse_test_res.py",
        description="Average results over seeds (upstream mode) or build paper-style tables from a results tree.",
    )
    parser.add_argument("directory", help="results folder: one experiment (DIR/seed1, ...) or a whole output tree")
    parser.add_argument("--ci95", action="store_true", help="report the 95%% confidence interval instead of the std")
    parser.add_argument("--test-log", action="store_true", help="upstream mode: parse eval-only logs (=> result)")
    parser.add_argument("--multi-exp", action="store_true", help="upstream mode: DIR holds several experiments")
    parser.add_argument("--keyword", default="accuracy", help="metric to read: accuracy, error, macro_f1, ...")
    parser.add_argument(
        "--table",
        default="auto",
        choices=("auto", "upstream") + TABLE_KINDS,
        help="auto: upstream lines for DIR/{run} folders, else detect the table per experiment",
    )
    parser.add_argument("--format", default="text", choices=FORMATS, help="table output format")
    parser.add_argument("--output", help="write the output to this file (atomically) instead of stdout")
    parser.add_argument("--plot", metavar="FILE.png", help="grouped bar chart of the tables (needs matplotlib)")
    parser.add_argument("--compare", metavar="REF.json", help="add reference numbers and the difference")
    parser.add_argument("--ref-method", help="method to take from the --compare file (default: the runs' trainer)")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds every dataset must have (default: all seen)")
    parser.add_argument("--source", help="cross-dataset: the source dataset, shown but left out of the average")
    parser.add_argument("--decimals", type=int, default=2, help="decimals in text and markdown tables")
    parser.add_argument("--strict", action="store_true", help="exit non-zero when any run is missing or unfinished")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error too")
    return parser


def _wants_tables(args: argparse.Namespace) -> bool:
    return args.format != "text" or bool(args.plot or args.compare or args.seeds or args.source)


def _is_single_experiment(runs: list[Run]) -> bool:
    """Upstream layout: every run folder is a direct child of DIR, and none pairs base with novel."""
    return (
        bool(runs)
        and all(len(r.parts) == 1 for r in runs)
        and not any({"base", "new"} <= r.results.keys() for r in runs)
    )


def _emit(text: str, output: str | None) -> None:
    if output:
        write_text_atomic(output, text)
        logger.info("wrote %s", output)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def _run_upstream_mode(args: argparse.Namespace) -> int:
    lines: list[str] = []
    outcome = run_upstream(args.directory, args.keyword, args.test_log, args.ci95, args.multi_exp, lines.append)
    _emit("\n".join(lines) + "\n", args.output)
    if not outcome.found:
        skipped = len(outcome.skipped)
        hint = "" if args.test_log else "; for --eval-only runs pass --test-log"
        raise UserError(
            f"Nothing found: no finished run with a '* {args.keyword}:' result ({skipped} entries skipped)",
            args.directory,
            f"let the runs finish (re-running a run resumes it) or pass the folder of finished seeds{hint}",
        )
    if args.strict and outcome.skipped:
        logger.error(
            "--strict: %d entr%s without a result", len(outcome.skipped), "y" if len(outcome.skipped) == 1 else "ies"
        )
        return EXIT_PROBLEMS
    return EXIT_OK


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; ignore
        pass


@contextlib.contextmanager
def _diagnostics_to_stderr() -> Iterator[None]:
    """Warnings and notes go to stderr only, so stdout holds nothing but the table (``--format json | jq``),
    whatever handlers the process's root logger has (the engine tees the root logger into stdout)."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    loggers = [logging.getLogger("reporting"), logger]
    saved = [(lg.propagate, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False
        if lg.level == logging.NOTSET:
            lg.setLevel(logging.INFO)
    try:
        yield
    finally:
        for lg, (propagate, level) in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.propagate, lg.level = propagate, level


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status. A problem with the folder or its files ends in one
    ``error: ...`` line on stderr and status 1 (the command's error boundary)."""
    args = build_parser().parse_args(argv)

    def run() -> int:
        with _diagnostics_to_stderr():
            return _main(args)

    return run_with_error_boundary(run, sys.argv[1:] if argv is None else argv)


def _main(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.directory):
        raise InputFileError(
            "results folder not found (not a folder)", args.directory, "pass the folder the runs wrote into"
        )
    reference = load_reference(args.compare) if args.compare else None  # checked before any output is written
    if args.table == "upstream" or (args.table == "auto" and (args.multi_exp or args.test_log)):
        return _run_upstream_mode(args)
    runs = collect_runs(args.directory)
    if args.table == "auto" and not _wants_tables(args) and _is_single_experiment(runs):
        return _run_upstream_mode(args)
    if not runs:
        raise UserError(
            "Nothing found: no folder below holds results.jsonl or log.txt",
            args.directory,
            "pass the OUTPUT_DIR of a run or a folder above several runs",
        )
    root_label = os.path.basename(os.path.abspath(args.directory))
    tables = build_tables(runs, args.table, args.keyword, args.ci95, args.seeds, args.source, root_label)
    if reference is not None:
        for table in tables:
            attach_reference(table, reference, args.ref_method)
    _emit(render(tables, args.format, args.decimals), args.output)
    if args.plot:
        try:
            plot_tables(tables, args.plot)
        except PlotUnavailableError as err:
            logger.error("%s", err)
            return EXIT_PROBLEMS
        logger.info("wrote %s", args.plot)
    problems = [p for t in tables for p in t.problems]
    for problem in problems:
        logger.warning("left out: %s", problem.describe())
    if not any(r.n or any(c is not None for c in r.cells.values()) for t in tables for r in t.rows):
        raise UserError(
            f"Nothing found: no run has a final result ({len(problems)} missing or unfinished)",
            args.directory,
            "let the runs finish (re-running a run resumes it); the warnings above list them",
        )
    if args.strict and problems:
        logger.error("--strict: %d missing or unfinished run(s)", len(problems))
        return EXIT_PROBLEMS
    return EXIT_OK
