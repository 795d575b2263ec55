"""File output that is written whole or not at all (temporary file in the same folder, then rename)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from .errors import ModelFileError


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); it replaces ``path`` only on success."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ModelFileError(f"cannot write {path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=folder)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
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
