"""Build paper-style tables from runs: base-to-novel, cross-dataset / domain generalisation, few-shot.

Runs are grouped into experiments (same method and config; ``Run.experiment``). Within an experiment every
dataset is expected to have every seed that appears anywhere in it (or the seeds given explicitly); a
dataset/seed that is missing or has no final result is listed as a ``Problem`` and left out, and the rows it
affects are marked ``partial`` rather than averaged silently over fewer seeds.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from dassl.base_novel import harmonic_mean
from reporting.datasets import dataset_label, dataset_sort_key, same_dataset
from reporting.runs import Run
from reporting.stats import Stat, spread_of, summarize

logger = logging.getLogger(__name__)

TABLE_KINDS = ("base2novel", "cross", "fewshot")
B2N_COLUMNS = [("base", "Base"), ("novel", "Novel"), ("hm", "HM")]


@dataclass
class Problem:
    """A dataset/seed left out of a table, and why."""

    experiment: str
    dataset: str | None
    seed: int | None
    shots: int | None
    detail: str
    in_fewshot: bool = False

    def describe(self) -> str:
        """``DTD, 16 shots, seed 3: novel result: no run found`` (shots only in few-shot tables)."""
        where = [dataset_label(self.dataset) if self.dataset else "unknown dataset"]
        if self.shots is not None and self.in_fewshot:
            where.append(f"{self.shots} shots")
        if self.seed is not None:
            where.append(f"seed {self.seed}")
        return f"{', '.join(where)}: {self.detail}"


@dataclass
class Row:
    """One table row: cells keyed by column, seed counts, and reference values (filled by --compare)."""

    key: str
    label: str
    cells: dict[str, Stat | None]
    n: int | None = None  # seeds that contributed (None where it differs per cell)
    expected: int | None = None
    reference: dict[str, float] = field(default_factory=dict)
    seeds: tuple[int | None, ...] = ()  # seeds behind the cells' values, in order (base2novel / cross rows)
    reference_is_subset_mean: bool = False  # Average row: reference averaged over the same datasets

    @property
    def partial(self) -> bool:
        return any(c is not None and c.partial for c in self.cells.values()) or (
            self.n is not None and self.expected is not None and self.n < self.expected
        )


@dataclass
class Table:
    """A rendered-ready table."""

    kind: str
    experiment: str
    trainer: str | None
    shots: int | None
    metric: str
    ci95: bool
    columns: list[tuple[str, str]]
    rows: list[Row]
    average: Row | None
    problems: list[Problem]
    notes: list[str] = field(default_factory=list)
    reference_name: str | None = None

    @property
    def title(self) -> str:
        name = {"base2novel": "Base-to-novel", "cross": "Cross-dataset / domain generalisation", "fewshot": "Few-shot"}
        shots = f" (shots {self.shots})" if self.shots is not None else ""
        return f"{name[self.kind]}: {self.experiment}{shots}"

    @property
    def spread_text(self) -> str:
        if self.ci95:
            return "mean ± 95% CI (1.96·s/√n, s = sample std) over seeds"
        return "mean ± sample std (ddof=1) over seeds"


def detect_kind(runs: list[Run]) -> str:
    """base2novel when base/novel results or train_base/test_new folders appear, few-shot when several shot
    counts appear, otherwise a per-dataset (cross-dataset / DG) table."""
    if any(r.split_dir or ({"base", "new"} & r.results.keys()) for r in runs):
        return "base2novel"
    if any((r.modal or "") == "base2novel" and (r.trainer or "").lower() == "promptkd" for r in runs):
        return "base2novel"
    if len({r.shots for r in runs}) > 1:
        return "fewshot"
    return "cross"


def group_experiments(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs grouped by experiment, in path order."""
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.experiment()].append(run)
    return dict(groups)


def build_tables(
    runs: list[Run],
    kind: str = "auto",
    metric: str = "accuracy",
    ci95: bool = False,
    seeds: Iterable[int] | None = None,
    source: str | None = None,
    root_label: str = "",
) -> list[Table]:
    """One table per experiment (and per shot count for base2novel / cross); ``root_label`` names the experiment
    when the scanned folder is the experiment itself."""
    tables = []
    for experiment, group in group_experiments(runs).items():
        experiment = experiment or root_label
        table_kind = detect_kind(group) if kind == "auto" else kind
        if table_kind not in TABLE_KINDS:
            raise ValueError(f"table kind {kind!r} is not one of {('auto',) + TABLE_KINDS}")
        if table_kind == "fewshot":
            tables.append(_note_sources(_build_fewshot(experiment, group, metric, ci95, seeds), group))
            continue
        by_shots: dict[int | None, list[Run]] = defaultdict(list)
        for run in group:
            by_shots[run.shots].append(run)
        for shots in sorted(by_shots, key=lambda s: -1 if s is None else s):
            sub = by_shots[shots]
            if table_kind == "base2novel":
                table = _build_base2novel(experiment, shots, sub, metric, ci95, seeds)
            else:
                table = _build_cross(experiment, shots, sub, metric, ci95, seeds, source)
            tables.append(_note_sources(table, sub))
    return tables


def _note_sources(table: Table, runs: list[Run]) -> Table:
    """Say when values come from text logs (one decimal) or were derived rather than read."""
    from_logs = [r for r in runs if r.finished and not r.source.endswith("results.jsonl")]
    if from_logs:
        table.notes.append(
            f"{len(from_logs)} of {len(runs)} runs read from log.txt (no final result in results.jsonl): their values "
            "carry the log's one decimal."
        )
    for note in sorted({r.note for r in runs if r.note}):
        table.notes.append(f"Some runs: {note}.")
    return table


def _expected_seeds(runs: list[Run], seeds: Iterable[int] | None) -> list[int | None]:
    if seeds is not None:
        return sorted(set(seeds))
    found = {r.seed for r in runs}
    return sorted(found, key=lambda s: -(10**9) if s is None else s)


def _datasets(runs: list[Run], experiment: str, shots: int | None, problems: list[Problem]) -> list[str]:
    names = set()
    for run in runs:
        if run.dataset is None:
            problems.append(Problem(experiment, None, run.seed, shots, f"dataset unknown, run left out: {run.path}"))
        else:
            names.add(run.dataset)
    return sorted(names, key=dataset_sort_key)


def _index(runs: list[Run]) -> dict[tuple[str, int | None], list[Run]]:
    index: dict[tuple[str, int | None], list[Run]] = defaultdict(list)
    for run in runs:
        if run.dataset is not None:
            index[(run.dataset, run.seed)].append(run)
    return index


def _pick(runs: list[Run], classes: tuple[str, ...], metric: str) -> tuple[float | None, list[Run]]:
    """The value for the first of ``classes`` reported by any run; explicit ``test_*`` folders win.

    Returns (value, the runs that could have supplied it when none did)."""
    candidates = []
    for run in runs:
        for name in classes:
            if metric in run.results.get(name, {}):
                explicit = (run.split_dir or "").startswith("test_")
                candidates.append((classes.index(name), not explicit, run.results[name][metric], run))
                break
    if not candidates:
        # A test_<classes> folder of the other half cannot supply this value; anything else could have.
        return None, [r for r in runs if not (r.split_dir or "").startswith("test_") or r.split_dir[5:] in classes]
    candidates.sort(key=lambda c: (c[0], c[1]))
    chosen = candidates[0]
    for other in candidates[1:]:
        if other[:2] == chosen[:2] and abs(other[2] - chosen[2]) > 1e-9:
            logger.warning("%s and %s both report %s; using %s", chosen[3].path, other[3].path, metric, chosen[3].path)
    return chosen[2], []


def _missing(
    experiment: str,
    dataset: str,
    seed: int | None,
    shots: int | None,
    what: str,
    runs: list[Run],
    in_fewshot: bool = False,
) -> Problem:
    """Why a value is absent: no run folder, an unfinished run, or runs that finished without reporting it."""
    unfinished = [r.path for r in runs if not r.finished]
    if unfinished:
        detail = f"{what}: no final result (run unfinished?) in {', '.join(unfinished)}"
    elif runs:
        detail = f"{what}: not reported by {', '.join(r.path for r in runs)}"
    else:
        detail = f"{what}: no run found"
    return Problem(experiment, dataset, seed, shots, detail, in_fewshot)


def _trainer(runs: list[Run]) -> str | None:
    names = sorted({r.trainer for r in runs if r.trainer})
    return names[0] if len(names) == 1 else None


def _build_base2novel(experiment, shots, runs, metric, ci95, seeds) -> Table:
    problems: list[Problem] = []
    expected = _expected_seeds(runs, seeds)
    index = _index(runs)
    rows = []
    per_seed: dict[str, dict[int | None, tuple[float, float]]] = {}
    for dataset in _datasets(runs, experiment, shots, problems):
        complete: dict[int | None, tuple[float, float]] = {}
        for seed in expected:
            found = index.get((dataset, seed), [])
            base, base_unfinished = _pick(found, ("base",), metric)
            novel, novel_unfinished = _pick(found, ("new",), metric)
            if base is None and novel is None and base_unfinished == novel_unfinished:
                problems.append(_missing(experiment, dataset, seed, shots, "base and novel results", base_unfinished))
            else:
                if base is None:
                    problems.append(_missing(experiment, dataset, seed, shots, "base result", base_unfinished))
                if novel is None:
                    problems.append(_missing(experiment, dataset, seed, shots, "novel result", novel_unfinished))
            if base is not None and novel is not None:
                complete[seed] = (base, novel)
        per_seed[dataset] = complete
        bases = [b for b, _ in complete.values()]
        novels = [n for _, n in complete.values()]
        hms = [harmonic_mean(b, n) for b, n in complete.values()]  # per seed, then averaged (issue #6)
        cells = {
            "base": summarize(bases, ci95, len(expected)),
            "novel": summarize(novels, ci95, len(expected)),
            "hm": summarize(hms, ci95, len(expected)),
        }
        rows.append(Row(dataset, dataset_label(dataset), cells, len(complete), len(expected), seeds=tuple(complete)))
    average = _base2novel_average(rows, per_seed, ci95)
    notes = [
        "HM = 2·Base·Novel/(Base+Novel) per seed, then averaged over seeds.",
        "Average row: mean of the dataset rows; its HM is 2·B·N/(B+N) of those means (as the paper's Table 1).",
    ]
    return Table(
        "base2novel", experiment, _trainer(runs), shots, metric, ci95, list(B2N_COLUMNS), rows, average, problems, notes
    )


def _base2novel_average(rows: list[Row], per_seed, ci95: bool) -> Row | None:
    used = [r for r in rows if r.n]
    if not used:
        return None
    base = sum(r.cells["base"].mean for r in used) / len(used)
    novel = sum(r.cells["novel"].mean for r in used) / len(used)
    partial = len(used) < len(rows) or any(r.partial for r in used)
    seed_sets = {tuple(sorted(per_seed[r.key], key=str)) for r in used}
    base_s = novel_s = hm_s = ()
    if len(seed_sets) == 1:
        seeds = next(iter(seed_sets))
        base_s = tuple(sum(per_seed[r.key][s][0] for r in used) / len(used) for s in seeds)
        novel_s = tuple(sum(per_seed[r.key][s][1] for r in used) / len(used) for s in seeds)
        hm_s = tuple(harmonic_mean(b, n) for b, n in zip(base_s, novel_s, strict=True))
    cells = {
        "base": Stat(base, spread_of(base_s, ci95), len(base_s), base_s, partial),
        "novel": Stat(novel, spread_of(novel_s, ci95), len(novel_s), novel_s, partial),
        "hm": Stat(harmonic_mean(base, novel), spread_of(hm_s, ci95), len(hm_s), hm_s, partial),
    }
    return Row("Average", f"Average ({len(used)})", cells, len(base_s) or None, None)


def _build_cross(experiment, shots, runs, metric, ci95, seeds, source) -> Table:
    problems: list[Problem] = []
    expected = _expected_seeds(runs, seeds)
    index = _index(runs)
    rows = []
    per_seed: dict[str, dict[int | None, float]] = {}
    for dataset in _datasets(runs, experiment, shots, problems):
        values: dict[int | None, float] = {}
        for seed in expected:
            found = index.get((dataset, seed), [])
            value, unfinished = _pick(found, ("all", "base", "new"), metric)
            if value is None:
                problems.append(_missing(experiment, dataset, seed, shots, "result", unfinished))
            else:
                values[seed] = value
        per_seed[dataset] = values
        cells = {metric: summarize(list(values.values()), ci95, len(expected))}
        label = dataset_label(dataset) + (" (source)" if source and same_dataset(source, dataset) else "")
        rows.append(Row(dataset, label, cells, len(values), len(expected), seeds=tuple(values)))
    targets = [r for r in rows if not (source and same_dataset(source, r.key))]
    used = [r for r in targets if r.n]
    average = None
    if used:
        mean = sum(r.cells[metric].mean for r in used) / len(used)
        seed_sets = {tuple(sorted(per_seed[r.key], key=str)) for r in used}
        per = ()
        if len(seed_sets) == 1:
            per = tuple(sum(per_seed[r.key][s] for r in used) / len(used) for s in next(iter(seed_sets)))
        partial = len(used) < len(targets) or any(r.partial for r in used)
        cell = Stat(mean, spread_of(per, ci95), len(per), per, partial)
        average = Row("Average", f"Average ({len(used)})", {metric: cell}, len(per) or None, None)
    excluded = f", source {dataset_label(source)} excluded" if source else ""
    notes = [f"Average row: mean of the dataset rows{excluded}."]
    return Table(
        "cross",
        experiment,
        _trainer(runs),
        shots,
        metric,
        ci95,
        [(metric, metric.capitalize())],
        rows,
        average,
        problems,
        notes,
    )


def _build_fewshot(experiment, runs, metric, ci95, seeds) -> Table:
    problems: list[Problem] = []
    expected = _expected_seeds(runs, seeds)
    datasets = _datasets(runs, experiment, None, problems)
    shots_values = sorted({r.shots for r in runs if r.shots is not None})
    for run in runs:
        if run.shots is None:
            problems.append(
                Problem(experiment, run.dataset, run.seed, None, f"shot count unknown, left out: {run.path}")
            )
    index: dict[tuple[str, int | None, int | None], list[Run]] = defaultdict(list)
    for run in runs:
        if run.dataset is not None:
            index[(run.dataset, run.shots, run.seed)].append(run)
    rows = []
    for shots in shots_values:
        cells: dict[str, Stat | None] = {}
        for dataset in datasets:
            values = []
            for seed in expected:
                value, unfinished = _pick(index.get((dataset, shots, seed), []), ("all", "base", "new"), metric)
                if value is None:
                    problems.append(_missing(experiment, dataset, seed, shots, "result", unfinished, True))
                else:
                    values.append(value)
            cells[dataset] = summarize(values, ci95, len(expected))
        present = [c for c in cells.values() if c is not None]
        if present:
            partial = len(present) < len(cells) or any(c.partial for c in present)
            cells["average"] = Stat(sum(c.mean for c in present) / len(present), None, len(present), (), partial)
        else:
            cells["average"] = None
        rows.append(Row(str(shots), f"{shots} shot" + ("s" if shots != 1 else ""), cells, None, len(expected)))
    columns = [(d, dataset_label(d)) for d in datasets] + [("average", "Average")]
    notes = ["Average column: mean over the datasets of that row (no spread)."]
    return Table("fewshot", experiment, _trainer(runs), None, metric, ci95, columns, rows, None, problems, notes)
