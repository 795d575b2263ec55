"""File output that is written whole or not at all (temporary file in the same folder, then rename).

Every failure to write (missing folder, a directory in the way, no permission, a read-only or virtual
file system such as /proc) becomes one :class:`~relumilp.errors.ModelFileError` naming the path and the
reason. :func:`check_writable` runs the same checks up front, so a command can refuse a bad output
path before spending minutes on the computation whose result it would hold.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from .errors import ModelFileError


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


def _temp_beside(path: Path) -> str:
    """A new empty temporary file in ``path``'s folder (same suffix), or a one-line error."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ModelFileError(f"cannot write {path}: it is a directory; give a file name")
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise ModelFileError(f"cannot write {path}: folder {folder} {what}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=folder)
    except OSError as exc:
        raise ModelFileError(f"cannot write {path}: {_reason(exc)}") from None
    os.close(fd)
    return tmp


def _umask() -> int:
    """The process's umask (reading it means setting it; set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_folder(path, what: str = "folder") -> Path:
    """Create the folder ``path`` (and missing parents) unless it exists; a one-line error otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ModelFileError(f"{what} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelFileError(f"cannot create {what} {path}: {_reason(exc)}") from None
    return path


def check_writable(path) -> Path:
    """``path`` if a file can be written there (probed with a temporary file), else a one-line error."""
    path = Path(path)
    os.unlink(_temp_beside(path))
    return path


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); it replaces ``path`` only on success."""
    path = Path(path)
    tmp = _temp_beside(path)
    try:
        try:
            yield Path(tmp)
        except OSError as exc:
            raise ModelFileError(f"cannot write {path}: {_reason(exc)}") from None
        try:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a written file honours the umask
            os.replace(tmp, path)
        except OSError as exc:
            raise ModelFileError(f"cannot write {path}: {_reason(exc)}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path, write: Callable, binary: bool = False) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path`` and move it into place on success."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb" if binary else "w") as handle:
            write(handle)
    return Path(path)


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` whole or not at all."""
    return atomic_write(path, lambda handle: handle.write(text))


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Within the block, everything written to stdout (Python's and file descriptor 1) goes to stderr.

    Solvers print their logs on file descriptor 1 from native code; ``--json`` needs stdout to hold
    nothing but the JSON document, so the run is wrapped in this and the JSON printed afterwards.
    Only the descriptor is moved (``sys.stdout`` keeps writing to fd 1): Pyomo's output capture, which
    re-routes descriptors 1 and 2 itself, deadlocks when ``sys.stdout`` is the stderr stream.
    """
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except (OSError, ValueError):  # no real stdout (embedded interpreter): nothing to protect
        yield
        return
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        try:
            ctypes.CDLL(None).fflush(None)  # native code's buffered output still belongs to stderr
        except (OSError, AttributeError, TypeError):  # no C library to flush (not POSIX)
            pass
        os.dup2(saved, 1)
        os.close(saved)
