"""Output paths checked before the work starts: a run of an hour must not end in "cannot write".

Each check creates what is missing and proves the folder writable with a probe file, turning any
operating-system error into one line naming the path (:func:`mitotype.errors.path_error`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mitotype.errors import MitotypeError, path_error

__all__ = ["check_folder_creatable", "ensure_output_dir", "ensure_output_file"]


def ensure_output_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Create ``path`` (and its parents) if needed and check a file can be written into it."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise MitotypeError(f"{folder}: the {what} is a file, not a folder")
    for parent in folder.parents:
        if parent.exists() and not parent.is_dir():
            raise MitotypeError(f"{folder}: cannot be a folder: {parent} is a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".mitotype-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise path_error(exc, folder) from None
    return folder


def ensure_output_file(path: str | os.PathLike[str], suffixes: Sequence[str] = (),
                       inputs: Sequence[str | os.PathLike[str] | None] = ()) -> Path:
    """Check an output file can be written: not a folder, not one of the command's ``inputs`` (files it
    reads, which writing would overwrite), an accepted suffix, a writable folder."""
    target = Path(path)
    if target.is_dir():
        raise MitotypeError(f"{target}: is a folder; name the output file")
    for source in inputs:
        if source is not None and _same_file(target, Path(source)):
            raise MitotypeError(f"{target}: is also an input of this command ({source}); writing the output "
                                "there would overwrite it: name another output file")
    name = target.name.lower()
    if suffixes and not name.endswith(tuple(s.lower() for s in suffixes)):
        raise MitotypeError(f"{target}: unsupported output type; use {' or '.join(suffixes)}")
    ensure_output_dir(target.parent if str(target.parent) else Path("."), "folder of the output file")
    with contextlib.suppress(OSError):
        if target.exists() and not os.access(target, os.W_OK):
            raise MitotypeError(f"{target}: exists and is not writable")
    return target


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same existing file (through links, ``..`` or another spelling)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist (yet)
        return False


def check_folder_creatable(path: str | os.PathLike[str]) -> Path:
    """Check, without creating anything, that ``path`` is or can become a writable folder."""
    folder = Path(path)
    if folder.exists():
        if not folder.is_dir():
            raise MitotypeError(f"{folder}: is a file, not a folder")
        existing = folder
    else:
        existing = next((p for p in folder.parents if p.exists()), Path("."))
        if not existing.is_dir():
            raise MitotypeError(f"{folder}: cannot be a folder: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise MitotypeError(f"{existing}: not writable, so {folder} cannot be written")
    return folder
