"""Grouped bar charts of the tables (matplotlib is optional: imported only when a plot is asked for)."""

from __future__ import annotations

import textwrap

from reporting.files import write_atomic
from reporting.tables import Table


class PlotUnavailableError(RuntimeError):
    """matplotlib is not installed."""


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise PlotUnavailableError(
            f"--plot needs matplotlib, which cannot be imported ({err}); install it with `pip install matplotlib` "
            "or leave out --plot"
        ) from None
    return plt


def _series(table: Table) -> tuple[list[str], list[tuple[str, list[float], list[float]]]]:
    """(group labels, [(series label, heights, error bars)]) for one table."""
    if table.kind == "fewshot":
        datasets = [(key, label) for key, label in table.columns]
        groups = [label for _, label in datasets]
        series = []
        for row in table.rows:
            stats = [row.cells.get(key) for key, _ in datasets]
            series.append(
                (row.label, [s.mean if s else 0.0 for s in stats], [s.spread or 0.0 if s else 0.0 for s in stats])
            )
        return groups, series
    rows = table.rows + ([table.average] if table.average else [])
    groups = [row.label + ("*" if row.partial else "") for row in rows]  # * = fewer seeds than expected
    series = []
    for key, label in table.columns:
        stats = [row.cells.get(key) for row in rows]
        series.append((label, [s.mean if s else 0.0 for s in stats], [s.spread or 0.0 if s else 0.0 for s in stats]))
    return groups, series


def plot_tables(tables: list[Table], path: str) -> None:
    """One panel per table: bars per dataset (Base / Novel / HM, or one per shot count), error bars = spread."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        len(tables), 1, figsize=(max(8.0, 1.1 * _widest(tables)), 3.6 * len(tables)), squeeze=False
    )
    for ax, table in zip(axes[:, 0], tables, strict=True):
        groups, series = _series(table)
        width = 0.8 / max(1, len(series))
        for i, (label, heights, errors) in enumerate(series):
            positions = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
            ax.bar(positions, heights, width, yerr=errors, capsize=2, label=label)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups, rotation=30, ha="right")
        ax.set_ylabel(f"{table.metric} (%)")
        ax.set_title(textwrap.fill(table.title, 90), fontsize=9)
        ax.legend(fontsize=8, ncol=min(len(series), 6))
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    try:
        write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120))
    finally:
        plt.close(fig)


def _widest(tables: list[Table]) -> int:
    return max(len(_series(t)[0]) for t in tables)
