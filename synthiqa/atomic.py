"""Write files so that a crash never leaves a half-written output behind: temporary name, then rename."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from synthiqa.outputs import output_errors


def _open_temporary(path: str | os.PathLike) -> tuple[str, int]:
    """Create ``.<name>.<pid>-<thread>.tmp`` beside ``path`` for writing (mode 0o666 less the umask, its
    folder made if needed); returns its name and open descriptor. The name is unique among live writers;
    one left by a killed run is replaced."""
    folder, name = os.path.split(os.fspath(path))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}-{threading.get_ident()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(3):
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileNotFoundError:
            os.makedirs(folder or ".", exist_ok=True)
        except FileExistsError:
            os.unlink(tmp)
    return tmp, os.open(tmp, flags, 0o666)


@contextlib.contextmanager
def _renamed_on_success(tmp: str, path: str | os.PathLike) -> Iterator[None]:
    """Rename ``tmp`` onto ``path`` when the block succeeds; remove it when it fails."""
    try:
        yield
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (an empty file, ``_open_temporary``); on success it is
    renamed onto ``path``, on error removed."""
    with output_errors(path):
        tmp, fd = _open_temporary(path)
    os.close(fd)
    with output_errors(path), _renamed_on_success(tmp, path):
        yield Path(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically. The hot path of ``synthiqa generate`` (one call per image),
    so four system calls: create the temporary, write, close, rename. A failed write is one
    ``OutputError`` naming ``path`` (no space left, read-only file system, ...)."""
    with output_errors(path):
        tmp, fd = _open_temporary(path)
        with _renamed_on_success(tmp, path), open(fd, "wb", closefd=True) as f:
            f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
