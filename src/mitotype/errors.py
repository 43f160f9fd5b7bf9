"""Errors that mean "the user gave us something wrong", shown as one line without a traceback."""

from __future__ import annotations


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


def describe_os_error(exc: OSError, path: object = None) -> str:
    """One line for an operating-system error on a user's path: the path, then the system's reason
    (``/out: Read-only file system``). ``path`` names the file when the error itself does not."""
    where = path if path is not None else exc.filename
    reason = exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, FileExistsError | NotADirectoryError) and where is not None:
        reason = f"{reason} (a file stands where a folder is needed)"
    if where is None:
        return reason
    if exc.filename2 is not None and path is None:
        return f"{where} -> {exc.filename2}: {reason}"
    return f"{where}: {reason}"


def path_error(exc: OSError, path: object = None) -> PathError:
    """The user-facing form of ``exc`` (raise it ``from None``: the traceback would only show our code)."""
    return PathError(describe_os_error(exc, path))
