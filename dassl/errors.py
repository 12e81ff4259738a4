"""The user-error family: problems a user can fix (a config key, a file, a flag value, a checkpoint).

They are raised where the problem is known, with what is wrong, where (the file, key or value) and what to
do, so the command-line error boundary (:mod:`dassl.error_boundary`) can end the program with one
line instead of a traceback. Each class also derives from the built-in exception that code raised before the
family existed (``ValueError``, ``FileNotFoundError`` ...), so existing ``except`` clauses keep working.

A package that cannot import ``dassl`` (``clip``) joins the family by setting the class attribute
``user_error = True`` on its own base exception.
"""

from __future__ import annotations

import pickle

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "ConfigError",
    "FileContentError",
    "ImageFileError",
    "InputFileError",
    "NonFiniteLossError",
    "OutputDirError",
    "UnsafePickleError",
    "UserError",
    "is_user_error",
]


class UserError(Exception):
    """Base of the errors that end a command with one ``error: ...`` line (no traceback unless asked).

    ``UserError(problem, where, fix)`` reads ``"<problem> (<where>): <fix>"``; ``where`` and ``fix`` are
    optional, so a single pre-formatted message also works (the data loader re-creates worker exceptions
    from their message alone).
    """

    user_error = True

    def __init__(self, problem: str, where: object = None, fix: str | None = None) -> None:
        self.problem, self.where, self.fix = problem, where, fix
        message = problem
        if where is not None:
            message += f" ({where})"
        if fix:
            message += f": {fix}"
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(UserError, ValueError):
    """A config file, key or value (YAML, command-line opts, flags) that cannot be used."""


class InputFileError(UserError, FileNotFoundError):
    """An input the run needs (dataset root, split file, image, weights) is missing or unreadable."""


class FileContentError(UserError, ValueError):
    """An input file exists but its content cannot be used: a dataset's annotation list, class list, split or
    cache, a run's results, a reference table."""


class ImageFileError(UserError, OSError):
    """An image file exists but cannot be decoded."""


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, unreadable, or does not fit the model built for it."""


class CheckpointMismatchError(CheckpointError, KeyError):
    """A checkpoint's keys do not match the model (missing or unexpected tensors)."""


class UnsafePickleError(CheckpointError, pickle.UnpicklingError):
    """A pickle refers to a global outside the allowed set: loading is refused, nothing in it is executed."""


class OutputDirError(UserError, OSError):
    """``OUTPUT_DIR`` cannot be created or written."""


class NonFiniteLossError(UserError, FloatingPointError):
    """Training produced a NaN or infinite loss."""


def is_user_error(err: BaseException) -> bool:
    """True for the family and for exception classes that declare ``user_error = True``."""
    return bool(getattr(type(err), "user_error", False))
