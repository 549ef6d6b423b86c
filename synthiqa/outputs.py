"""Output paths: checked before any work starts, and every failed write named in one line.

``check_output_file`` / ``check_output_folder`` refuse, before a long job, an output that cannot be
written (a folder where a file is wanted, a file where a folder is wanted, a read-only or missing-
permission location); ``OutputError`` is the ``SynthiqaError`` (and ``OSError``) that a failed write
raises, naming the path and the system's reason (no space left, read-only file system, ...).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from synthiqa.errors import SynthiqaError


class OutputError(SynthiqaError, OSError):
    """An output that cannot be written; the message names the path and the reason."""


def _reason(exc: OSError) -> str:
    return exc.strerror or (errno.errorcode.get(exc.errno, "") if exc.errno else "") or str(exc)


@contextlib.contextmanager
def output_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn an ``OSError`` raised in the block into one ``OutputError`` line naming ``path``."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write {os.fspath(path)}: {_reason(exc)}") from None


def _writable_ancestor(path: Path, option: str) -> None:
    """The nearest existing folder above ``path`` must be a folder we may create entries in."""
    parent = path.parent if str(path.parent) else Path(".")
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{option} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(parent).f_flag & os.ST_RDONLY)
        except (OSError, AttributeError):  # no statvfs on Windows
            read_only = False
        why = "read-only file system" if read_only else "permission denied"
        raise OutputError(f"{option} {path}: cannot write in {parent} ({why})")


def check_output_file(path: str | os.PathLike, option: str = "--out", example: str = "out.csv") -> Path:
    """``path`` as an output file: not an existing folder, in a folder that exists or can be made and is
    writable; ``example`` is the file name the error suggests. Returns it as a ``Path``."""
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{option} {p} is a folder; give a file name, e.g. {p / example}")
    if p.exists() and not os.access(p, os.W_OK):
        raise OutputError(f"{option} {p}: file is not writable")
    _writable_ancestor(p, option)
    return p


def check_output_folder(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` as an output folder: not an existing file, and it or its nearest existing parent writable."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{option} {p} is a file; give a folder (new, or one to add to)")
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            _writable_ancestor(p / "x", option)
        return p
    _writable_ancestor(p, option)
    return p


__all__ = ["OutputError", "check_output_file", "check_output_folder", "output_errors"]
