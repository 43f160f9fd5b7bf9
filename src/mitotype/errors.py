"""Errors that mean "the user gave us something wrong", shown as one line without a traceback."""

from __future__ import annotations

import os
import stat


class MitotypeError(Exception):
    """A user-facing error: the CLI prints ``error: <message>`` and exits with status 2."""


class DataError(MitotypeError):
    """Input data is missing, malformed or inconsistent (the message names the file and row)."""


class ConfigError(MitotypeError):
    """A configuration is invalid (unknown key, value out of range, missing column)."""


class WeightsError(MitotypeError):
    """Model weights are missing or do not match the architecture."""


class PathError(MitotypeError):
    """A file or folder the user named cannot be read or written (the message names it and says why)."""


TRAINING_EXTRA = "train"
"""The optional part of the install that brings PyTorch and the training stack (``pip install 'mitotype[train]'``)."""


class MissingExtraError(MitotypeError):
    """Something needs an optional part of the install that is missing: the base install classifies with ONNX
    Runtime only, while training, PyTorch inference and export need ``mitotype[train]``."""

    def __init__(self, needed_for: str, extra: str = TRAINING_EXTRA) -> None:
        self.needed_for = needed_for
        self.extra = extra
        name = "training" if extra == TRAINING_EXTRA else extra
        super().__init__(f"{needed_for} needs the {name} extra: pip install 'mitotype[{extra}]'")


def printable(text: object) -> str:
    """``text`` as valid UTF-8, for messages and outputs: a file name that is not valid UTF-8 (``caf\\xe9.png``
    written by a Latin-1 system) reaches Python with surrogate escapes, which no UTF-8 writer accepts; its
    undecodable bytes are written as ``\\xe9`` instead, so the name is shown."""
    value = str(text)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


def special_file_kind(path: str | os.PathLike[str]) -> str | None:
    """``"a FIFO (named pipe)"``, ``"a socket"`` or ``"a device"`` for such a path (links followed), else ``None``."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return None


def describe_os_error(exc: OSError, path: object = None) -> str:
    """One line for an operating-system error on a user's path: the path, then the system's reason
    (``/out: Read-only file system``). ``path`` names the file when the error itself does not."""
    where = path if path is not None else exc.filename
    where = None if where is None else printable(os.fsdecode(where) if isinstance(where, bytes) else where)
    reason = exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, FileExistsError | NotADirectoryError) and where is not None:
        reason = f"{reason} (a file stands where a folder is needed)"
    if where is None:
        return reason
    if exc.filename2 is not None and path is None:
        return f"{where} -> {printable(exc.filename2)}: {reason}"
    return f"{where}: {reason}"


def path_error(exc: OSError, path: object = None) -> PathError:
    """The user-facing form of ``exc`` (raise it ``from None``: the traceback would only show our code)."""
    return PathError(describe_os_error(exc, path))
