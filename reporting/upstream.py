"""Upstream-compatible mode of ``parse_test_res.py`` (upstream Dassl's ``tools/parse_test_res.py``).

Prints exactly upstream's lines (``===``, ``Parsing files in ...``, one ``file: ...`` line per run, the
``* average`` line with NumPy's population std or ``--ci95``, and with ``--multi-exp`` the ``Average
performance`` block). Fixed weaknesses: entries without a log are skipped with a warning instead of aborting,
the keyword is regex-escaped, older Dassl's ``Finished training`` counts as the end signal, re-runs appended to
``log.txt`` and upstream's ``log.txt-<timestamp>`` files are read (the newest invocation with a result wins), and
a run with only ``results.jsonl`` is read from that.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from reporting.logparse import FINISH_SIGNALS, RESULT_SIGNAL, log_files, parse_log_file, upstream_metric_regex
from reporting.runs import FINAL_PHASES, RESULTS_FILE, read_results_jsonl
from reporting.stats import spread_of

logger = logging.getLogger(__name__)


@dataclass
class UpstreamOutcome:
    """What one upstream-mode parse found."""

    found: bool  # at least one value was printed
    skipped: list[str]  # entries that had no usable result


def read_run_value(run_dir: str, keyword: str, test_log: bool) -> tuple[str, float] | None:
    """(file, value) of one run: upstream's rule applied per invocation, newest first; results.jsonl as fallback."""
    regex = upstream_metric_regex(keyword)
    # upstream waits for "Finish training" only; older Dassl's "Finished training" is accepted too (same logs
    # otherwise, and a current log never contains it)
    end_signals = (RESULT_SIGNAL,) if test_log else FINISH_SIGNALS
    found = None
    for path in log_files(run_dir):
        for inv in parse_log_file(path):
            value = inv.upstream_value(regex, end_signals)
            if value is not None:
                found = (path, value)
    if found is not None:
        return found
    jsonl = os.path.join(run_dir, RESULTS_FILE)
    if os.path.isfile(jsonl):
        for record in read_results_jsonl(jsonl):
            metrics = record.get("metrics")
            phases = ("eval_only",) if test_log else FINAL_PHASES
            if record.get("event") == "eval" and record.get("phase") in phases and isinstance(metrics, dict):
                if isinstance(metrics.get(keyword), (int, float)):
                    found = (jsonl, float(metrics[keyword]))
    return found


def parse_experiment(
    directory: str, keyword: str, test_log: bool, ci95: bool, write: Callable[[str], None]
) -> tuple[float | None, list[str]]:
    """One experiment folder (``directory/{run}/log.txt``): print upstream's block, return (mean, skipped)."""
    write("===")
    write(f"Parsing files in {directory}")
    skipped = []
    values = []
    for entry in sorted(e for e in os.listdir(directory) if not e.startswith(".")):
        run_dir = os.path.join(directory, entry)
        result = read_run_value(run_dir, keyword, test_log) if os.path.isdir(run_dir) else None
        if result is None:
            why = "not a folder" if not os.path.isdir(run_dir) else f"no '* {keyword}:' result after the end signal"
            logger.warning("skipped %s: %s", run_dir, why)
            skipped.append(run_dir)
            continue
        path, value = result
        write(f"file: {path}. {keyword}: {value:.1f}%. ")
        values.append(value)
    if not values:
        logger.warning("Nothing found in %s", directory)
        write("===")
        return None, skipped
    mean = float(np.mean(values))
    write(f"* average {keyword}: {mean:.1f}% +- {spread_of(values, ci95, ddof=0):.1f}%")
    write("===")
    return mean, skipped


def run_upstream(
    directory: str,
    keyword: str = "accuracy",
    test_log: bool = False,
    ci95: bool = False,
    multi_exp: bool = False,
    write: Callable[[str], None] = lambda line: None,
) -> UpstreamOutcome:
    """Upstream's whole output for ``directory`` (one experiment, or several with ``multi_exp``)."""
    if not multi_exp:
        mean, skipped = parse_experiment(directory, keyword, test_log, ci95, write)
        return UpstreamOutcome(found=mean is not None, skipped=skipped)
    means = []
    skipped = []
    for entry in sorted(e for e in os.listdir(directory) if not e.startswith(".")):
        exp_dir = os.path.join(directory, entry)
        if not os.path.isdir(exp_dir):
            logger.warning("skipped %s: not an experiment folder", exp_dir)
            skipped.append(exp_dir)
            continue
        mean, exp_skipped = parse_experiment(exp_dir, keyword, test_log, ci95, write)
        skipped.extend(exp_skipped)
        if mean is None:
            skipped.append(exp_dir)
        else:
            means.append(mean)
    if means:
        write("Average performance")
        write(f"* {keyword}: {float(np.mean(means)):.1f}%")
    return UpstreamOutcome(found=bool(means), skipped=skipped)
