"""Console + ``log.txt`` logging.

``setup_logger(output)`` replaces ``sys.stdout`` with a :class:`Logger` tee, so the upstream console lines
(printed by the engine) reach both the console and ``OUTPUT_DIR/log.txt``, which upstream tools parse.
Differences from upstream, all deliberate:

- the file is opened in append mode: a re-run (auto-resume) continues ``log.txt`` instead of creating
  ``log.txt-<timestamp>``, which ``parse_test_res.py`` would never read;
- the tee never closes the real stdout and delegates ``isatty``/``fileno``/``encoding``;
- ``flush`` does not ``fsync`` (that made every print a disk sync);
- ``logging`` records (``logging.getLogger(__name__)`` in ``dassl``, ``clip``, ``trainers``, ``datasets``)
  go through one root handler that writes into the tee, so they appear on the console and in ``log.txt``
  exactly once; when no tee is active (other ranks, or after it was closed) the handler writes to stderr,
  never into a program's own stdout, and closing the active tee removes the handler again;
- only rank 0 (argument ``rank`` or env ``RANK``) writes the file.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from typing import TextIO

from .process_group import env_rank

__all__ = ["Logger", "setup_logger"]

PROJECT_LOGGERS = ("dassl", "clip", "trainers", "datasets", "train", "__main__")

_active_logger: Logger | None = None


class Logger:
    """A stdout tee: every ``write`` goes to ``console`` and, when ``fpath`` is given, to that file."""

    def __init__(self, fpath: str | None = None, console: TextIO | None = None, mode: str = "a") -> None:
        self.console = console if console is not None else sys.stdout
        self.fpath = fpath
        self.file: TextIO | None = None
        if fpath is not None:
            dirname = os.path.dirname(os.path.abspath(fpath))
            os.makedirs(dirname, exist_ok=True)
            self.file = open(fpath, mode, encoding="utf-8")  # noqa: SIM115 - lives as long as the tee

    def write(self, msg: str) -> int:
        self.console.write(msg)
        if self.file is not None and not self.file.closed:
            self.file.write(msg)
        return len(msg)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.console.flush()
        if self.file is not None and not self.file.closed:
            self.file.flush()

    def close(self) -> None:
        """Close the log file only; the console stream belongs to the caller and stays open.

        Closing the tee made by ``setup_logger`` also detaches the logging handler it installed.
        """
        global _active_logger
        if self.file is not None and not self.file.closed:
            self.file.flush()
            self.file.close()
        if _active_logger is self:
            _active_logger = None
            _uninstall_logging_handler()

    # Stream protocol pieces that tools (tqdm, colorama, subprocess, faulthandler) query on sys.stdout.
    def isatty(self) -> bool:
        return bool(getattr(self.console, "isatty", lambda: False)())

    def fileno(self) -> int:
        if not hasattr(self.console, "fileno"):
            raise io.UnsupportedOperation("the console stream wrapped by Logger has no fileno()")
        return self.console.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.console, "encoding", None) or "utf-8"

    @property
    def closed(self) -> bool:
        return bool(getattr(self.console, "closed", False))

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str):  # noqa: ANN204 - delegate anything else (errors, buffer, ...)
        if name in ("console", "file", "fpath"):
            raise AttributeError(name)
        return getattr(self.console, name)

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _CurrentStdoutHandler(logging.StreamHandler):
    """Writes each record into the active tee (``sys.stdout`` when it is a :class:`Logger`), else to stderr."""

    def __init__(self) -> None:
        super().__init__(stream=sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stdout if isinstance(sys.stdout, Logger) else sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__ assigns it; ignore
        pass


class _PlainFormatter(logging.Formatter):
    """INFO lines look like upstream prints; warnings and errors carry their level and logger name."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname} [{record.name}]: {message}"
        return message


_levels_set: list[str] = []


def _install_logging_handler() -> None:
    root = logging.getLogger()
    if not any(isinstance(h, _CurrentStdoutHandler) for h in root.handlers):
        handler = _CurrentStdoutHandler()
        handler.setFormatter(_PlainFormatter("%(message)s"))
        root.addHandler(handler)
    for name in PROJECT_LOGGERS:
        project_logger = logging.getLogger(name)
        if project_logger.level == logging.NOTSET:
            project_logger.setLevel(logging.INFO)
            _levels_set.append(name)


def _uninstall_logging_handler() -> None:
    """Undo ``_install_logging_handler`` (handler removed, levels we raised back to NOTSET)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _CurrentStdoutHandler):
            root.removeHandler(handler)
    while _levels_set:
        logging.getLogger(_levels_set.pop()).setLevel(logging.NOTSET)


def setup_logger(output: str | os.PathLike | None = None, rank: int | None = None) -> Logger | None:
    """Tee stdout into ``output/log.txt`` (or ``output`` itself if it ends in ``.txt``/``.log``), append mode.

    Calling it again with another path switches the file (the previous one is closed). Returns the active
    tee, or None when ``output`` is None (upstream: no-op). Ranks other than 0 get no file; their logging
    records go to stderr.
    """
    global _active_logger
    if output is None:
        return None
    output = os.fspath(output)
    if output.endswith(".txt") or output.endswith(".log"):
        fpath = output
    else:
        fpath = os.path.join(output, "log.txt")

    console = sys.stdout.console if isinstance(sys.stdout, Logger) else sys.stdout
    if isinstance(sys.stdout, Logger):
        sys.stdout.close()
    if _active_logger is not None and _active_logger is not sys.stdout:
        _active_logger.close()
        _active_logger = None

    if (env_rank() if rank is None else int(rank)) == 0:
        tee = Logger(fpath, console=console, mode="a")
        sys.stdout = tee
        _active_logger = tee
    else:
        sys.stdout = console
        tee = None
    _install_logging_handler()
    return tee
