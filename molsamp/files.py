"""Crash-safe file writing and the one rule for outputs: checked before any work, never replaced silently."""

from __future__ import annotations

__all__ = ["atomic_path", "atomic_write", "check_output", "writable_folder"]

import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from molsamp.errors import InputError


def check_output(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``path`` as a Path, after checking that it can be written: its folder exists and is writable, and the file
    does not exist unless ``overwrite``. Call it before any work, so a mistake costs nothing."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"cannot write {str(path)!r}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {str(path)!r}: folder {str(folder)!r} is not writable")
    if path.is_dir():
        raise InputError(f"cannot write {str(path)!r}: it is a folder")
    if path.exists() and not overwrite:
        raise InputError(f"output {str(path)!r} exists; pass --overwrite (overwrite=True) to replace it")
    return path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside ``path`` for a writer that takes a file name (mdtraj, numpy, matplotlib), renamed onto
    ``path`` when the block ends without error and removed when it raises.

    The temporary name is unique and keeps the suffix of ``path``; the file written has the usual permissions of a
    new file (0o666 less the umask, like ``open(path, "w")``), not the 0o600 of :func:`tempfile.mkstemp`, and is
    flushed to disk before the rename, so a reader (or a resumed run) sees either the old file or the complete new
    one.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.{secrets.token_hex(6)}.tmp{path.suffix}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    mode = stat.S_IMODE(os.fstat(descriptor).st_mode)  # what the umask makes of a new file
    os.close(descriptor)
    try:
        yield temporary
        os.chmod(temporary, mode)  # in case the writer replaced the file rather than writing into it
        descriptor = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def writable_folder(folder: str | os.PathLike, what: str = "folder") -> Path:
    """``folder`` as a Path, created with its parents if missing; :class:`InputError` naming it (as ``what``) if it
    cannot be created or written."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{what} {str(folder)!r} cannot be created: {error.strerror or error}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{what} {str(folder)!r} is not writable")
    return folder


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_path`: a reader sees the old file or the complete new one."""
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        file.write(data.encode() if isinstance(data, str) else data)
