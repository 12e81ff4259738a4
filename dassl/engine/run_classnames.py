"""``classnames.txt`` of a run folder: the model's class names in label order, saved with the model.

A trained model is a classifier over classes it does not name (the checkpoints hold prompts and class features);
the run folder keeps the names so that labelling new images (``predict.py``) needs no dataset. The same
one-name-per-line format is read from a ``--classnames FILE`` and from a ``Folder`` dataset's ``classnames.txt``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from dassl.errors import InputFileError
from dassl.utils import atomic_write_text

__all__ = ["CLASSNAMES_FILE", "classnames_text", "read_classnames_file", "write_run_classnames"]

CLASSNAMES_FILE = "classnames.txt"


def classnames_text(classnames: Sequence[str]) -> str:
    return "".join(f"{name}\n" for name in classnames)


def read_classnames_file(path: str, key: Callable[[str], str] = str.strip) -> list[str]:
    """Class names, one per line in label order (trailing blank lines ignored); an empty name, or two names with
    the same ``key``, is an error naming the line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError as err:
        raise InputFileError("class-names file not found", path, "check the path") from err
    while lines and not lines[-1].strip():
        lines.pop()
    names: list[str] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, 1):
        name = line.strip()
        if not name:
            raise InputFileError(
                "empty class name", f"{path}, line {lineno}", "remove the blank line or name the class"
            )
        if key(name) in seen:
            raise InputFileError(
                f"duplicate class name {name!r} (same as line {seen[key(name)]})",
                f"{path}, line {lineno}",
                "give every class a distinct name",
            )
        seen[key(name)] = lineno
        names.append(name)
    if not names:
        raise InputFileError("no class names", path, "write one class name per line")
    return names


def write_run_classnames(classnames: Sequence[str], output_dir: str, replace: bool) -> bool:
    """Write ``output_dir/classnames.txt`` when missing (or, with ``replace``, when different); True if written."""
    path = os.path.join(output_dir, CLASSNAMES_FILE)
    text = classnames_text(classnames)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            if f.read() == text or not replace:
                return False
    atomic_write_text(text, path)
    return True
