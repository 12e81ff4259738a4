"""Render tables as an aligned terminal table, Markdown, CSV (long format) or JSON."""

from __future__ import annotations

import csv
import io
import json

from reporting.stats import Stat
from reporting.tables import Row, Table

FORMATS = ("text", "markdown", "csv", "json")
PARTIAL_MARK = "*"


def format_stat(stat: Stat | None, decimals: int) -> str:
    """``80.83 ± 0.12``; no spread for one seed; ``*`` when fewer seeds than expected; ``-`` when absent."""
    if stat is None:
        return "-"
    text = f"{stat.mean:.{decimals}f}"
    if stat.spread is not None:
        text += f" ± {stat.spread:.{decimals}f}"
    return text + (PARTIAL_MARK if stat.partial else "")


def _has_reference(table: Table) -> bool:
    return any(r.reference for r in _all_rows(table))


def _all_rows(table: Table) -> list[Row]:
    return table.rows + ([table.average] if table.average else [])


def _seeds_text(row: Row) -> str:
    if row.n is None:
        return ""
    if row.expected is None or row.n >= row.expected:
        return str(row.n)
    return f"{row.n}/{row.expected}{PARTIAL_MARK}"


def _grid(table: Table, decimals: int) -> tuple[list[str], list[list[str]]]:
    """Header and body cells (the Average row last)."""
    first = "Shots" if table.kind == "fewshot" else "Dataset"
    header = [first] + [label for _, label in table.columns]
    with_seeds = table.kind != "fewshot"
    if with_seeds:
        header.append("Seeds")
    compare = _has_reference(table)
    if compare:
        header += [f"Ref {label}" for _, label in table.columns] + [f"Δ {label}" for _, label in table.columns]
    body = []
    for row in _all_rows(table):
        cells = [row.label] + [format_stat(row.cells.get(key), decimals) for key, _ in table.columns]
        if with_seeds:
            cells.append(_seeds_text(row))
        if compare:
            for key, _ in table.columns:
                ref = row.reference.get(key)
                cells.append("-" if ref is None else f"{ref:.{decimals}f}")
            for key, _ in table.columns:
                ref, stat = row.reference.get(key), row.cells.get(key)
                cells.append("-" if ref is None or stat is None else f"{stat.mean - ref:+.{decimals}f}")
        body.append(cells)
    return header, body


def _footer(table: Table) -> list[str]:
    lines = [f"{table.metric} (%), {table.spread_text}."]
    lines += table.notes
    if any(r.partial for r in _all_rows(table)):
        lines.append(f"{PARTIAL_MARK} computed over fewer seeds or datasets than expected; see the list below.")
    return lines


def _problem_lines(table: Table) -> list[str]:
    if not table.problems:
        return []
    return ["Missing or unfinished runs (excluded from the means):"] + [f"  - {p.describe()}" for p in table.problems]


def render_text(tables: list[Table], decimals: int = 2) -> str:
    """Aligned columns for a terminal."""
    out = []
    for table in tables:
        header, body = _grid(table, decimals)
        widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]

        def line(cells: list[str], widths: list[int] = widths) -> str:
            first = cells[0].ljust(widths[0])
            rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
            return "  ".join([first] + rest).rstrip()

        rule = "  ".join("-" * w for w in widths)
        out += [table.title, line(header), rule]
        n_rows = len(table.rows)
        for i, cells in enumerate(body):
            if i == n_rows and table.average is not None:
                out.append(rule)
            out.append(line(cells))
        out += _footer(table) + _problem_lines(table) + [""]
    return "\n".join(out)


def render_markdown(tables: list[Table], decimals: int = 2) -> str:
    """GitHub-flavoured Markdown: a heading, a pipe table and notes per table."""
    out = []
    for table in tables:
        header, body = _grid(table, decimals)
        out += [f"### {table.title}", ""]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        n_rows = len(table.rows)
        for i, cells in enumerate(body):
            cells = [c.replace(PARTIAL_MARK, "\\" + PARTIAL_MARK) for c in cells]  # a literal '*' in Markdown
            if i >= n_rows:
                cells = [f"**{c}**" if c and c != "-" else c for c in cells]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        out += [f"- {note}".replace(f"- {PARTIAL_MARK} ", f"- \\{PARTIAL_MARK} ") for note in _footer(table)]
        problems = _problem_lines(table)
        if problems:
            out += ["", problems[0]] + [f"  {p.strip()}" for p in problems[1:]]
        out.append("")
    return "\n".join(out)


CSV_FIELDS = [
    "table",
    "experiment",
    "shots",
    "row",
    "column",
    "mean",
    "spread",
    "spread_kind",
    "n",
    "expected",
    "partial",
    "reference",
    "diff",
]


def render_csv(tables: list[Table], decimals: int | None = None) -> str:
    """Long format, one line per cell: full precision, easy to pivot in a spreadsheet or pandas."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for table in tables:
        for row in _all_rows(table):
            for key, _ in table.columns:
                stat = row.cells.get(key)
                ref = row.reference.get(key)
                writer.writerow(
                    {
                        "table": table.kind,
                        "experiment": table.experiment,
                        "shots": row.key if table.kind == "fewshot" else ("" if table.shots is None else table.shots),
                        "row": key if table.kind == "fewshot" else row.key,
                        "column": "accuracy" if table.kind == "fewshot" else key,
                        "mean": "" if stat is None else repr(stat.mean),
                        "spread": "" if stat is None or stat.spread is None else repr(stat.spread),
                        "spread_kind": "ci95" if table.ci95 else "std",
                        "n": "" if stat is None else stat.n,
                        "expected": "" if row.expected is None else row.expected,
                        "partial": "" if stat is None else stat.partial,
                        "reference": "" if ref is None else ref,
                        "diff": "" if ref is None or stat is None else repr(stat.mean - ref),
                    }
                )
    return buffer.getvalue()


def _stat_json(stat: Stat | None) -> dict | None:
    if stat is None:
        return None
    return {"mean": stat.mean, "spread": stat.spread, "n": stat.n, "values": list(stat.values), "partial": stat.partial}


def _row_json(row: Row) -> dict:
    diff = {k: row.cells[k].mean - v for k, v in row.reference.items() if row.cells.get(k) is not None}
    return {
        "key": row.key,
        "label": row.label,
        "cells": {k: _stat_json(v) for k, v in row.cells.items()},
        "n": row.n,
        "seeds": list(row.seeds),
        "expected": row.expected,
        "partial": row.partial,
        "reference": row.reference,
        "diff": diff,
    }


def tables_to_json(tables: list[Table]) -> dict:
    """Everything the tables hold, for other tools."""
    return {
        "tables": [
            {
                "kind": t.kind,
                "title": t.title,
                "experiment": t.experiment,
                "trainer": t.trainer,
                "shots": t.shots,
                "metric": t.metric,
                "spread": "ci95" if t.ci95 else "std",
                "spread_description": t.spread_text,
                "columns": [{"key": k, "label": lab} for k, lab in t.columns],
                "rows": [_row_json(r) for r in t.rows],
                "average": _row_json(t.average) if t.average else None,
                "reference": t.reference_name,
                "notes": t.notes,
                "problems": [vars(p) | {"description": p.describe()} for p in t.problems],
            }
            for t in tables
        ]
    }


def render_json(tables: list[Table], decimals: int | None = None) -> str:
    return json.dumps(tables_to_json(tables), indent=2, ensure_ascii=False) + "\n"


def render(tables: list[Table], fmt: str, decimals: int = 2) -> str:
    """Dispatch on ``fmt`` (one of FORMATS)."""
    renderers = {"text": render_text, "markdown": render_markdown, "csv": render_csv, "json": render_json}
    if fmt not in renderers:
        raise ValueError(f"--format {fmt!r} is not one of {FORMATS}")
    return renderers[fmt](tables, decimals)
