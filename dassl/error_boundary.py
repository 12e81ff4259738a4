"""The error boundary of every command (``train.py``, ``parse_test_res.py``, ``python -m demo``, ``predict.py``).

A problem the user can fix ends the command with exit status 1 and one final line on stderr,
``error: <what is wrong> (<file | key | value>): <what to do>``, and no traceback. ``--debug`` on the command
line or ``PROMPTKD_DEBUG=1`` prints the traceback too. When the failing code ran inside a run folder (it set
``run_log`` on the exception, as ``train.main`` does), the traceback and the error line are appended to that
run's ``log.txt``. Anything else is a bug and keeps its traceback.

User errors are the :mod:`dassl.errors` family (and classes declaring ``user_error = True``) plus a
small mapping of the library exceptions users cause: YAML and JSON syntax, unreadable images, unreachable
URLs, permissions and paths, and running out of memory.

Usage, one line per entry point::

    if __name__ == "__main__":
        sys.exit(run_with_error_boundary(main))
"""

from __future__ import annotations

import errno
import json
import os
import sys
import traceback
import urllib.error
from collections.abc import Callable, Sequence
from typing import Any

from .errors import is_user_error

__all__ = ["DEBUG_ENV", "EXIT_USER_ERROR", "debug_requested", "one_line", "run_with_error_boundary", "user_message"]

DEBUG_ENV = "PROMPTKD_DEBUG"
EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130
_PATH_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EROFS, errno.ENOSPC, errno.EEXIST}


def debug_requested(argv: Sequence[str] | None = None) -> bool:
    """``--debug`` among the arguments or ``PROMPTKD_DEBUG`` set to anything but ``""``/``0``."""
    args = sys.argv[1:] if argv is None else argv
    return "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line(text: str) -> str:
    """``text`` on one line; a message re-raised from a data-loader worker keeps only the worker's own error."""
    if "Traceback (most recent call last)" in text:
        last = [line for line in text.splitlines() if line.strip()][-1].strip()
        head, sep, rest = last.partition(": ")
        text = rest if sep and " " not in head else last
    return " ".join(text.split())


def _mapped_message(err: BaseException) -> str | None:
    """The one-line message for a library exception a user causes, or None (a bug: keep the traceback)."""
    from PIL import UnidentifiedImageError

    try:
        import yaml
    except ImportError:  # pragma: no cover - yacs depends on PyYAML
        yaml = None

    if yaml is not None and isinstance(err, yaml.YAMLError):
        mark = getattr(err, "problem_mark", None)
        where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "YAML"
        problem = getattr(err, "problem", None) or str(err)
        return f"YAML syntax error ({where}): {problem}; fix the file"
    if isinstance(err, json.JSONDecodeError):
        return f"malformed JSON (line {err.lineno}, column {err.colno}): {err.msg}; fix or re-create the file"
    if isinstance(err, UnidentifiedImageError):
        return f"unreadable image ({one_line(str(err))}): replace the file or remove it from the split"
    if isinstance(err, urllib.error.URLError):
        reason = getattr(err, "reason", err)
        return f"network error ({reason}): check the connection, or download the file by hand and pass its path"
    if isinstance(err, OSError) and err.errno in _PATH_ERRNOS and err.filename:
        target = err.filename if err.filename2 is None else f"{err.filename} -> {err.filename2}"
        return f"{err.strerror or err} ({target}): choose another path or fix its permissions"
    if isinstance(err, FileNotFoundError) and err.filename:
        return f"file or folder not found ({err.filename}): check the path"
    if isinstance(err, MemoryError):
        return (
            "out of memory (host RAM): lower the batch size (DATALOADER.TRAIN_X.BATCH_SIZE) or DATALOADER.NUM_WORKERS"
        )
    if type(err).__name__ == "OutOfMemoryError" and type(err).__module__.startswith("torch"):
        return f"out of GPU memory ({one_line(str(err))[:200]}): lower DATALOADER.TRAIN_X.BATCH_SIZE"
    return None


def user_message(err: BaseException) -> str | None:
    """One-line description of a user error (the family or a mapped library exception); None for a bug."""
    if is_user_error(err):
        return one_line(str(err)) or type(err).__name__
    return _mapped_message(err)


def _append_to_run_log(err: BaseException, text: str) -> None:
    path = getattr(err, "run_log", None)
    if not path or not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        return
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError:
        pass  # the log is a courtesy; the console already has the message


def run_with_error_boundary(main: Callable[[], Any], argv: Sequence[str] | None = None) -> int:
    """Call ``main()`` and return the process exit status (``main``'s int result, else 0).

    ``argv`` (default ``sys.argv[1:]``) is only inspected for ``--debug``. ``SystemExit`` (argparse's usage
    errors, explicit exits) passes through unchanged.
    """
    try:
        result = main()
    except KeyboardInterrupt:
        print(
            "error: interrupted (Ctrl-C): re-run the same command to resume from the last checkpoint", file=sys.stderr
        )
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - this is the boundary
        tb = "".join(traceback.format_exception(err))
        message = user_message(err)
        if message is None:  # a bug: Python prints the traceback
            _append_to_run_log(err, "\n" + tb)
            raise
        line = f"error: {message}\n"
        _append_to_run_log(err, "\n" + tb + line)
        sys.stdout.flush()
        if debug_requested(argv):
            sys.stderr.write(tb)
        sys.stderr.write(line)
        sys.stderr.flush()
        return EXIT_USER_ERROR
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
