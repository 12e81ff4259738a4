"""Find run folders under a results tree and read each one's final results.

A *run folder* holds ``results.jsonl`` and/or ``log.txt`` (plus upstream's ``log.txt-<timestamp>``). Its final
results come from ``results.jsonl`` (docs/design.md "Results as JSON lines") when that file has any, else from
the text logs. Dataset, seed and shots come from the records, else from the config the log printed, else from
the folder names the scripts use: ``.../train_base/<dataset>/shots_<K>/<trainer>/<cfg>/seed<S>``,
``.../test_new/...``, PromptKD's ``seed_<S>``, ``<dataset>/<trainer>/<cfg>_<K>shots/seed<S>`` and
``evaluation/<trainer>/<cfg>_<K>shots/<dataset>/seed<S>``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field

from reporting.datasets import canonical_dataset, known_dataset, same_dataset
from reporting.logparse import Invocation, log_files, parse_log_file

logger = logging.getLogger(__name__)

# = dassl.engine.results_log.RESULTS_FILE (not imported: reporting runs without torch).
RESULTS_FILE = "results.jsonl"
FINAL_PHASES = ("final", "eval_only")
_SEED_DIR = re.compile(r"^seed_?(-?\d+)$")
_SPLIT_DIR = re.compile(r"^(train|test)_(base|new|all)$")
_SHOTS_DIR = re.compile(r"^shots_(\d+)$")
_SHOTS_SUFFIX = re.compile(r"(?<![0-9])(\d+)shots\b")


@dataclass
class Run:
    """One run folder and what it reports."""

    path: str  # the run folder
    parts: tuple[str, ...]  # its path relative to the scanned root
    dataset: str | None = None  # canonical name
    trainer: str | None = None
    seed: int | None = None
    shots: int | None = None
    modal: str | None = None
    # classes ("base" / "new" / "all") -> metric name -> value, final results only
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    source: str = ""  # file the results were read from
    note: str = ""  # how a value was derived, when not read directly

    @property
    def finished(self) -> bool:
        return bool(self.results)

    @property
    def split_dir(self) -> str | None:
        """``train_base`` / ``test_new`` ... component of the path, if any."""
        for part in self.parts:
            if _SPLIT_DIR.match(part):
                return part
        return None

    def experiment(self) -> str:
        """The path without dataset, seed, base/new split and ``shots_<K>`` folders, ``<K>shots`` written ``Kshots``.

        Runs of one method and config across datasets, seeds, shots and the train_base/test_new pair share it.
        """
        keep = []
        dataset_index = self._dataset_part_index()
        for i, part in enumerate(self.parts):
            if i == dataset_index or _SEED_DIR.match(part) or _SPLIT_DIR.match(part) or _SHOTS_DIR.match(part):
                continue
            keep.append(_SHOTS_SUFFIX.sub("Kshots", part))
        return "/".join(keep)

    def _dataset_part_index(self) -> int | None:
        if self.dataset is None:
            return None
        for i in range(len(self.parts) - 1, -1, -1):
            if same_dataset(self.parts[i], self.dataset):
                return i
        return None


def is_run_dir(path: str) -> bool:
    """A folder is a run folder when it holds results.jsonl or a log file."""
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return RESULTS_FILE in names or "log.txt" in names or any(n.startswith("log.txt-") for n in names)


def find_run_dirs(root: str) -> list[str]:
    """Run folders under ``root`` (sorted, hidden entries skipped, no descent into a run folder)."""
    if is_run_dir(root):
        return [root]
    try:
        entries = sorted(os.listdir(root))
    except OSError as err:
        logger.warning("cannot list %s (%s); skipped", root, err)
        return []
    found = []
    for entry in entries:
        path = os.path.join(root, entry)
        if entry.startswith(".") or not os.path.isdir(path):
            continue
        found.extend(find_run_dirs(path))
    return found


def read_results_jsonl(path: str) -> list[dict]:
    """Records of a results.jsonl; a line that is not a JSON object (e.g. cut by a crash) is skipped with a warning."""
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                logger.warning("%s line %d is not valid JSON (%s); skipped", path, number, err)
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def load_run(run_dir: str, root: str) -> Run:
    """Read one run folder: results.jsonl first, text logs as fallback."""
    rel = os.path.relpath(run_dir, root)
    parts = () if rel == "." else tuple(rel.split(os.sep))
    run = Run(path=run_dir, parts=parts)
    jsonl = os.path.join(run_dir, RESULTS_FILE)
    if os.path.isfile(jsonl):
        _fill_from_jsonl(run, read_results_jsonl(jsonl), jsonl)
    if not run.results:
        _fill_from_logs(run)
    _fill_from_path(run)
    return run


def _fill_from_jsonl(run: Run, records: list[dict], path: str) -> None:
    summary = None
    for record in records:
        for key, attr in (("dataset", "dataset"), ("trainer", "trainer"), ("modal", "modal")):
            if record.get(key) is not None:
                setattr(run, attr, str(record[key]))
        if isinstance(record.get("seed"), int) and record["seed"] >= 0:  # negative = unseeded: no seed
            run.seed = record["seed"]
        if isinstance(record.get("num_shots"), int) and record["num_shots"] >= 0:
            run.shots = record["num_shots"]
        event = record.get("event")
        if event == "eval" and record.get("phase") in FINAL_PHASES and isinstance(record.get("metrics"), dict):
            classes = str(record.get("classes") or record.get("subsample") or "all")
            metrics = {k: float(v) for k, v in record["metrics"].items() if isinstance(v, (int, float))}
            run.results[classes] = metrics  # a later final result (re-run) replaces an earlier one
        elif event == "summary":
            summary = record
    if summary is not None and not ({"base", "new"} <= run.results.keys()):
        # Only the trainer's summary line: use its base / novel accuracies.
        for classes, key in (("base", "base"), ("new", "novel")):
            if isinstance(summary.get(key), (int, float)):
                run.results.setdefault(classes, {"accuracy": float(summary[key])})
        run.note = "base/novel from the summary record"
    if run.dataset:
        run.dataset = canonical_dataset(run.dataset)
    if run.results:
        run.source = path


def _fill_from_logs(run: Run) -> None:
    invocations: list[Invocation] = []
    for path in log_files(run.path):
        try:
            invocations.extend(parse_log_file(path))
        except OSError as err:
            logger.warning("cannot read %s (%s); skipped", path, err)
    if not invocations:
        return
    config: dict[str, str] = {}
    for inv in invocations:
        config.update(inv.config)
    run.dataset = run.dataset or _config_text(config, "DATASET.NAME")
    run.trainer = run.trainer or _config_text(config, "TRAINER.NAME")
    run.modal = run.modal or _config_text(config, "TRAINER.MODAL")
    if run.seed is None:
        seed = _config_int(config, "SEED")
        run.seed = seed if seed is not None and seed >= 0 else None
    if run.shots is None:
        run.shots = _config_int(config, "DATASET.NUM_SHOTS")
    if run.dataset:
        run.dataset = canonical_dataset(run.dataset)
    final_inv = next((inv for inv in reversed(invocations) if inv.final_block() is not None), None)
    if final_inv is None:
        return
    final = final_inv.final_block()
    assert final is not None
    run.source = final_inv.path
    summary = final_inv.base2novel_block()
    if summary is not None and {"base_accuracy", "novel_accuracy"} <= summary.metrics.keys():
        # Our PromptKD prints the base block, the novel block, then "=> base-to-novel result".
        tests = [b for b in final_inv.blocks if b.kind == "result" and b.after_finish == final.after_finish]
        run.results["base"] = dict(tests[-2].metrics) if len(tests) >= 2 else {}
        run.results["new"] = dict(final.metrics)
        run.results["base"]["accuracy"] = summary.metrics["base_accuracy"]
        run.results["new"]["accuracy"] = summary.metrics["novel_accuracy"]
        return
    if (run.trainer or "").lower() == "promptkd" and (run.modal or "base2novel") == "base2novel":
        # Upstream PromptKD: the final test is on the novel classes; the base accuracy only appears as the
        # best per-epoch `val` result (val = base-class test images, checkpoint kept by best val).
        run.results["new"] = dict(final.metrics)
        upto = invocations[: invocations.index(final_inv) + 1]
        vals = [b for inv in upto for b in inv.blocks if b.split == "val" and not b.after_finish]
        vals = [b for b in vals if "accuracy" in b.metrics]
        if vals:
            run.results["base"] = dict(max(vals, key=lambda b: b.metrics["accuracy"]).metrics)
            run.note = "base = best per-epoch val accuracy in the log (upstream PromptKD)"
        return
    subsample = (config.get("DATASET.SUBSAMPLE_CLASSES") or "").strip("'\"")
    split_dir = run.split_dir
    classes = split_dir.split("_")[1] if split_dir else (subsample if subsample in ("base", "new") else "all")
    run.results[classes] = dict(final.metrics)


def _fill_from_path(run: Run) -> None:
    if run.dataset is None:
        for part in reversed(run.parts):
            if known_dataset(part):
                run.dataset = known_dataset(part)
                break
    if run.seed is None:
        for part in reversed(run.parts):
            match = _SEED_DIR.match(part)
            if match:
                run.seed = int(match.group(1))
                break
    if run.shots is None:
        for part in reversed(run.parts):
            match = _SHOTS_DIR.match(part) or _SHOTS_SUFFIX.search(part)
            if match:
                run.shots = int(match.group(1))
                break


def _config_text(config: dict[str, str], key: str) -> str | None:
    value = config.get(key)
    if value is None:
        return None
    value = value.strip().strip("'\"")
    return value or None


def _config_int(config: dict[str, str], key: str) -> int | None:
    value = _config_text(config, key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def collect_runs(root: str) -> list[Run]:
    """Every run folder under ``root``, read."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"results directory {root!r} does not exist; pass the folder the runs wrote into")
    return [load_run(path, root) for path in find_run_dirs(root)]
