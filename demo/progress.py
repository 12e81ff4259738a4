"""Console progress for the demo: one tqdm bar per stage, fed by the trainers' own iteration lines.

``train.py`` prints upstream's console lines (config dump, ``epoch [e/E] batch [b/B] ...``, result blocks) and
the engine tees them into ``log.txt``. The demo runs it with ``sys.stdout`` pointed at :class:`TrainProgress`,
which keeps the full text out of the terminal (it is in ``log.txt``) and turns the iteration lines into a
progress bar; ``verbose=True`` passes everything through instead.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from collections.abc import Iterator

from tqdm import tqdm

__all__ = ["TrainProgress", "stage_bar", "train_output"]

ITERATION_LINE = re.compile(r"epoch \[(\d+)/(\d+)\] batch \[(\d+)/(\d+)\].*?loss ([0-9.eE+-]+)")


def stage_bar(description: str, total: int | None, enabled: bool = True) -> tqdm:
    """A bar on stderr (stdout stays free for the results table)."""
    return tqdm(
        total=total,
        desc=description,
        unit="it",
        leave=True,
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
    )


class TrainProgress(io.TextIOBase):
    """A write-only text stream that advances ``bar`` on every ``epoch [e/E] batch [b/B]`` line it receives."""

    def __init__(self, bar: tqdm, passthrough: bool = False) -> None:
        super().__init__()
        self.bar = bar
        self.passthrough = passthrough
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.passthrough:
            sys.__stdout__.write(text)
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._consume(line)
        return len(text)

    def _consume(self, line: str) -> None:
        match = ITERATION_LINE.search(line)
        if not match:
            return
        epoch, max_epoch, batch, num_batches = (int(match.group(i)) for i in range(1, 5))
        total = max_epoch * num_batches
        if self.bar.total != total:
            self.bar.total = total
        self.bar.n = (epoch - 1) * num_batches + batch
        self.bar.set_postfix_str(f"epoch {epoch}/{max_epoch} loss {float(match.group(5)):.4g}", refresh=False)
        self.bar.refresh()

    def flush(self) -> None:
        if self.passthrough:
            sys.__stdout__.flush()


@contextlib.contextmanager
def train_output(bar: tqdm, verbose: bool = False) -> Iterator[TrainProgress]:
    """Route ``sys.stdout`` through a :class:`TrainProgress` for the duration of one ``train.main`` call."""
    stream = TrainProgress(bar, passthrough=verbose)
    saved = sys.stdout
    sys.stdout = stream
    try:
        yield stream
    finally:
        sys.stdout = saved
