"""Evaluation results as JSON lines in ``OUTPUT_DIR/results.jsonl`` (docs/design.md "Results as JSON lines").

Upstream only prints a human-readable block that ``parse_test_res.py`` scrapes from ``log.txt``; tools here
read one JSON object per evaluation instead. Lines are appended with a single ``write`` on an ``O_APPEND``
descriptor, so a crash never leaves half a record followed by another one.
"""

from __future__ import annotations

import datetime
import json
import math
import os
from collections.abc import Mapping
from typing import Any

from yacs.config import CfgNode

RESULTS_FILE = "results.jsonl"
# upstream evaluator key -> results.jsonl key
_METRIC_RENAMES = {"error_rate": "error"}


def _plain_number(value: Any) -> Any:
    """Turn tensors / NumPy scalars into Python numbers (JSON has no NaN: those become None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def normalize_metrics(results: Mapping[str, Any]) -> dict[str, Any]:
    """Evaluator output -> the ``metrics`` object (``error_rate`` is written as ``error``)."""
    return {_METRIC_RENAMES.get(key, key): _plain_number(value) for key, value in results.items()}


def _cfg_get(node: CfgNode, dotted: str, default: Any = None) -> Any:
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def build_result_record(
    cfg: CfgNode,
    *,
    split: str,
    classes: str | None,
    phase: str,
    epoch: int | None,
    metrics: Mapping[str, Any],
    event: str = "eval",
) -> dict[str, Any]:
    """One ``eval`` record with the run context (dataset, trainer, seed, shots, class subset, modal)."""
    subsample = _cfg_get(cfg, "DATASET.SUBSAMPLE_CLASSES", "all")
    return {
        "event": event,
        "split": split,
        "classes": classes if classes is not None else subsample,
        "phase": phase,
        "epoch": epoch,
        "dataset": _cfg_get(cfg, "DATASET.NAME", ""),
        "trainer": _cfg_get(cfg, "TRAINER.NAME", ""),
        "seed": _cfg_get(cfg, "SEED", -1),
        "num_shots": _cfg_get(cfg, "DATASET.NUM_SHOTS", -1),
        "subsample": subsample,
        "modal": _cfg_get(cfg, "TRAINER.MODAL", None),
        "metrics": normalize_metrics(metrics),
        "output_dir": os.path.abspath(_cfg_get(cfg, "OUTPUT_DIR", ".")),
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def append_result_line(path: str, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one JSON line (single write, O_APPEND, fsync'd)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    line = (json.dumps(record, sort_keys=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
