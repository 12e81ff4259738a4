"""Result collection and paper-style tables behind ``parse_test_res.py``.

Modules: ``runs`` (find run folders, read results.jsonl / log.txt), ``logparse`` (log.txt invocations and
result blocks), ``upstream`` (upstream's printed lines), ``tables`` (base-to-novel, cross-dataset, few-shot),
``render`` (text / markdown / csv / json), ``plot``, ``reference`` (``--compare``), ``cli``.
"""

from reporting.runs import Run, collect_runs
from reporting.tables import Table, build_tables

__all__ = ["Run", "Table", "build_tables", "collect_runs"]
