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

from mitotype.errors import MitotypeError, PathError, path_error, printable, special_file_kind

__all__ = ["cache_root", "check_folder_creatable", "ensure_output_dir", "ensure_output_file", "refuse_special_file",
           "special_file_kind"]


def refuse_special_file(path: str | os.PathLike[str], what: str = "input") -> None:
    """Refuse a FIFO, socket or device named as an input: reading one waits for a writer that may never come
    (the command would hang without a word) or never ends."""
    kind = special_file_kind(path)
    if kind is not None:
        raise PathError(f"{printable(os.fspath(path))}: is {kind}, not a file; give the {what} as a regular file "
                        "or folder")


def cache_root() -> Path:
    """Where mitotype keeps its caches (patch stores, embeddings): the first of ``$MITOTYPE_CACHE``,
    ``$XDG_CACHE_HOME/mitotype`` (when absolute), ``$HOME/.cache/mitotype`` (when ``HOME`` is an absolute path
    to an existing folder) and ``<system temp folder>/mitotype-cache-<user id>``.

    A service account's ``HOME`` is often empty or missing (``/nonexistent``): ``Path.home()`` would then put
    the cache at ``/.cache`` or try to create ``/nonexistent``, which fails or litters the root folder.
    """
    root = os.environ.get("MITOTYPE_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg) / "mitotype"
    home = os.environ.get("HOME")
    if home is None:  # unset: the password database's entry, as Path.home() would use
        with contextlib.suppress(KeyError, ImportError):
            # platform: pwd exists on POSIX only
            import pwd

            home = pwd.getpwuid(os.getuid()).pw_dir
    if home and os.path.isabs(home) and home != "/" and os.path.isdir(home):
        return Path(home) / ".cache" / "mitotype"
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"mitotype-cache-{user}"


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
    if special_file_kind(target) is not None or (str(target).startswith(("/dev/", "/proc/")) and target.exists()):
        return target  # a stream (/dev/stdout, a FIFO, a terminal): written in place, not replaced
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
