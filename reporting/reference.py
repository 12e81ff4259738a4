"""Reference numbers (e.g. the paper's, ``configs/reference/promptkd_cvpr2024.json``) for ``--compare``.

File layout (JSON object; dataset keys in any known spelling, plus ``"Average"``)::

    {"base2novel": {"<method>": {"<dataset>": {"base": 80.83, "novel": 74.66, "hm": 77.62}}},
     "cross_dataset": {"<method>": {"<dataset>": 93.61}},
     "domain_generalization": {"<method>": {"<dataset>": 69.77}},
     "fewshot": {"<method>": {"<shots>": {"<dataset>": 75.0}}}}

Other top-level keys (``source``, ``notes`` ...) are documentation.
"""

from __future__ import annotations

import difflib
import json
import logging

from dassl.base_novel import harmonic_mean
from dassl.errors import FileContentError, InputFileError
from reporting.datasets import canonical_dataset
from reporting.tables import Table

logger = logging.getLogger(__name__)

EXAMPLE_REFERENCE = "configs/reference/promptkd_cvpr2024.json"

SECTIONS = {
    "base2novel": ("base2novel",),
    "cross": ("cross_dataset", "domain_generalization"),
    "fewshot": ("fewshot",),
}


def load_reference(path: str) -> dict:
    """Read and check a reference file; errors name the file and the problem."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise InputFileError(
            "--compare file not found", path, f"pass a JSON file such as {EXAMPLE_REFERENCE}"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        where = f"{path}, line {err.lineno}, column {err.colno}" if isinstance(err, json.JSONDecodeError) else path
        problem = err.msg if isinstance(err, json.JSONDecodeError) else "not UTF-8 text"
        raise FileContentError(
            f"--compare file is not valid JSON: {problem}", where, f"fix it or start from {EXAMPLE_REFERENCE}"
        ) from None
    if not isinstance(data, dict) or not any(s in data for names in SECTIONS.values() for s in names):
        known = sorted({s for names in SECTIONS.values() for s in names})
        raise FileContentError(
            f"--compare file has none of the sections {known}", path, f"see {EXAMPLE_REFERENCE} for the layout"
        )
    return data


def methods_in(reference: dict, kind: str) -> list[str]:
    """Method names a reference holds for a table kind."""
    names: list[str] = []
    for section in SECTIONS[kind]:
        for name in reference.get(section, {}):
            if name not in names:
                names.append(name)
    return names


def _find_method(reference: dict, kind: str, wanted: str) -> str | None:
    names = methods_in(reference, kind)
    for name in names:
        if name.lower() == wanted.lower():
            return name
    return None


def attach_reference(table: Table, reference: dict, method: str | None = None) -> None:
    """Fill ``row.reference`` of every row of ``table`` from the reference (method: given, or the table's trainer)."""
    wanted = method or table.trainer
    names = methods_in(reference, table.kind)
    if not wanted:
        logger.warning(
            "--compare: the runs of %r do not name one trainer; choose a reference with --ref-method (available: %s)",
            table.experiment,
            ", ".join(names) or "none",
        )
        return
    name = _find_method(reference, table.kind, wanted)
    if name is None:
        close = difflib.get_close_matches(wanted, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        logger.warning(
            "--compare: no %s reference for method %r (available: %s)%s",
            table.kind,
            wanted,
            ", ".join(names) or "none",
            hint,
        )
        return
    table.reference_name = name
    sections = [reference.get(s, {}).get(name) for s in SECTIONS[table.kind]]
    sections = [{_key(k): v for k, v in s.items()} for s in sections if isinstance(s, dict)]
    if table.kind == "cross" and len(sections) > 1:
        # The DG and cross-dataset tables each have their own Average: use the one covering most rows.
        keys = {_key(r.key) for r in table.rows}
        sections.sort(key=lambda s: -len(keys & s.keys()))
    for row in table.rows:
        key = _key(row.key)
        if table.kind == "base2novel":
            values = next((s[key] for s in sections if key in s), None)
            if isinstance(values, dict):
                row.reference = {c: float(values[c]) for c, _ in table.columns if c in values}
        elif table.kind == "cross":
            value = next((s[key] for s in sections if key in s), None)
            if isinstance(value, (int, float)):
                row.reference = {table.columns[0][0]: float(value)}
        else:
            by_shots = sections[0].get(_key(row.key)) if sections else None
            if isinstance(by_shots, dict):
                by_dataset = {_key(k): v for k, v in by_shots.items()}
                row.reference = {c: float(by_dataset[_key(c)]) for c, _ in table.columns if _key(c) in by_dataset}
    if table.average is not None and sections:
        _attach_average_reference(table, sections[0])
    table.notes.append(f"Ref: reference numbers of {name}; Δ = ours - reference.")
    if table.average is not None and table.average.reference_is_subset_mean:
        table.notes.append(
            f"Ref of the Average row: mean of {name}'s reference values over the same datasets (the reference's own "
            "Average covers other datasets)."
        )


def _attach_average_reference(table: Table, section: dict) -> None:
    """The reference's own Average when the table averages exactly its datasets; otherwise the reference's mean
    over the same datasets (HM of those means), so that the Average row compares like with like."""
    assert table.average is not None
    used = [r for r in table.rows if r.n and not r.label.endswith("(source)")]
    used_keys = {_key(r.key) for r in used}
    ref_keys = {k for k in section if k != "Average"}
    if used_keys == ref_keys and "Average" in section:
        value = section["Average"]
        if table.kind == "base2novel" and isinstance(value, dict):
            table.average.reference = {c: float(value[c]) for c, _ in table.columns if c in value}
        elif table.kind == "cross" and isinstance(value, (int, float)):
            table.average.reference = {table.columns[0][0]: float(value)}
        return
    if not used or any(not r.reference for r in used):
        return
    means = {c: sum(r.reference[c] for r in used) / len(used) for c, _ in table.columns if c != "hm"}
    if table.kind == "base2novel":
        means["hm"] = harmonic_mean(means["base"], means["novel"])
    table.average.reference = means
    table.average.reference_is_subset_mean = True


def _key(name: str) -> str:
    return "Average" if name.lower().startswith("average") else canonical_dataset(str(name))
