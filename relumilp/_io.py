"""File output that is written whole or not at all (temporary file in the same folder, then rename),
and that never replaces a file relumilp did not write.

**Ours or not.** Every file relumilp writes begins with a mark (:data:`MARK_PREFIXES`: a comment line
in MPS and LP files, a ``"written_by"`` key first in JSON, a comment after the HTML doctype; the
``Software`` text chunk of a PNG, the producer of an ONNX model, the format tag of a ``.npz``), or is a
VNN-COMP result file (:func:`vnncomp_result`, for that output only). An existing file at an output path
is replaced only when it is empty or its writer's ``ours`` test (default :func:`written_by_relumilp`)
accepts it; anything else -- a user's file, a device or pipe such as ``/dev/null``, a symbolic link --
is refused with a one-line error, before any work when the caller checks the path up front
(:func:`check_writable`).

Every failure to write (missing folder, a directory in the way, no permission, a read-only or virtual
file system such as /proc) becomes one :class:`~relumilp.errors.ModelFileError` naming the path and the
reason. :func:`check_writable` runs the same checks up front, so a command can refuse a bad output
path before spending minutes on the computation whose result it would hold.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from .errors import ModelFileError


#: how our files begin (MPS and LP comment lines, the JSON key put first, the HTML comment after the doctype)
MARK_PREFIXES = (b"* written by relumilp", b"\\ written by relumilp", b'{"written_by": "relumilp"',
                 b"<!DOCTYPE html>\n<!-- written by relumilp -->")
#: first words of the VNN-COMP result files that ``relumilp verify --result-file`` writes
RESULT_WORDS = ("sat", "unsat", "timeout", "unknown", "error")
JSON_MARK = {"written_by": "relumilp"}
#: the largest VNN-COMP result file recognised as one (a counterexample of about 200,000 values)
RESULT_FILE_LIMIT = 16 * 2**20
#: one line of a VNN-COMP counterexample: ``(X_0 0.5)``, possibly opening or closing the list
_ASSIGNMENT_LINE = re.compile(r"\(?(\s*\(\s*[XY]_\d+\s+[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*\))+\s*\)?")
TEXT_MARK = "written by relumilp"


def any_file(path) -> bool:
    """An ``ours`` that owns every path: for files whose name alone says whose they are (benchmark results)."""
    return True


def written_by_relumilp(path) -> bool:
    """Whether the existing file ``path`` may be replaced: empty, or one relumilp wrote (module docstring)."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return True
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return False
    if head.startswith(MARK_PREFIXES):
        return True
    if head.startswith(b"\x89PNG") and b"tEXtSoftware\x00relumilp" in head:  # a text chunk after the header
        return True
    if b"\x12\x08relumilp" in head[:16]:  # ONNX: producer_name, right after ir_version
        return True
    if path.suffix.lower() == ".npz":  # a network or bound cache: the format tag of its metadata
        import json

        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as npz:
                return str(json.loads(str(npz["__meta__"])).get("format", "")).startswith("relumilp-")
        except Exception:  # not a zip, no metadata, not JSON: not ours
            return False
    return False


def vnncomp_result(path) -> bool:
    """An ``ours`` for VNN-COMP result files (which carry no mark): empty, ours by mark, or a short file
    whose first line is one of :data:`RESULT_WORDS` alone."""
    if written_by_relumilp(path):
        return True
    try:
        # whole, up to a counterexample's size (3,072 inputs: about 90 KB): a cut would leave a partial line
        with open(path, "rb") as handle:
            text = handle.read(RESULT_FILE_LIMIT + 1)
        if len(text) > RESULT_FILE_LIMIT:
            return False
        text = text.decode("ascii")
    except (OSError, UnicodeDecodeError):
        return False
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines or lines[0] not in RESULT_WORDS:
        return False
    if lines[0] != "sat":
        return len(lines) == 1
    # "sat" is followed by nothing but the assignment ((X_0 v) (X_1 v) ... (Y_0 v)): anything else is
    # someone's text that merely starts with the word
    return all(_ASSIGNMENT_LINE.fullmatch(line) for line in lines[1:])


def _check_replaceable(path: Path, ours: Callable | None) -> None:
    """Refuse anything at ``path`` but a missing file or one ``ours`` (default :func:`written_by_relumilp`)
    owns: a device or pipe (``/dev/null`` too) would be replaced by a regular file."""
    if not os.path.lexists(path) or path.is_dir():  # a directory is refused by _temp_beside
        return
    if not path.is_file() or path.is_symlink():
        raise ModelFileError(f"will not write {path}: it is not a regular file; give a file name")
    if not (ours or written_by_relumilp)(path):
        raise ModelFileError(f"will not overwrite {path}: it exists and relumilp did not write it; "
                             "move it away or choose another name")


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


def _temp_beside(path: Path) -> str:
    """A new empty temporary file in ``path``'s folder (same suffix), or a one-line error."""
    folder = path.parent if str(path.parent) else Path(".")
    if str(path) in ("", ".", "-"):  # "-" is no file here: output goes to named files only
        raise ModelFileError(f"cannot write {str(path)!r}: give a file name (standard output is not an output file)")
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


def check_writable(path, ours: Callable | None = None) -> Path:
    """``path`` if a file can be written there (probed with a temporary file) and no file that is not
    ours (``ours``, default :func:`written_by_relumilp`) is in the way, else a one-line error."""
    path = Path(path)
    os.unlink(_temp_beside(path))
    _check_replaceable(path, ours)
    return path


@contextlib.contextmanager
def atomic_path(path, ours: Callable | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); it replaces ``path`` only on success, and
    only if ``path`` is missing or ours (``ours``, default :func:`written_by_relumilp`)."""
    path = Path(path)
    tmp = _temp_beside(path)
    try:
        _check_replaceable(path, ours)
    except ModelFileError:
        os.unlink(tmp)
        raise
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


def atomic_write(path, write: Callable, binary: bool = False, ours: Callable | None = None) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path`` and move it into place on success
    (:func:`atomic_path`)."""
    with atomic_path(path, ours) as tmp:
        with open(tmp, "wb" if binary else "w") as handle:
            write(handle)
    return Path(path)


def atomic_write_text(path, text: str, ours: Callable | None = None) -> Path:
    """Write ``text`` to ``path`` whole or not at all (:func:`atomic_path`)."""
    return atomic_write(path, lambda handle: handle.write(text), ours=ours)


def marked_json(data: dict) -> dict:
    """``data`` with :data:`JSON_MARK` first (so :func:`written_by_relumilp` knows the file)."""
    return {**JSON_MARK, **{k: v for k, v in data.items() if k not in JSON_MARK}}


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Within the block, everything written to stdout (Python's and file descriptor 1) goes to stderr.

    Solvers print their logs on file descriptor 1 from native code; ``--json`` needs stdout to hold
    nothing but the JSON document, so the run is wrapped in this and the JSON printed afterwards.
    Only the descriptor is moved (``sys.stdout`` keeps writing to fd 1): Pyomo's output capture, which
    re-routes descriptors 1 and 2 itself, deadlocks when ``sys.stdout`` is the stderr stream.
    """
    with _stdout_to(2):
        yield


@contextlib.contextmanager
def stdout_discarded() -> Iterator[None]:
    """Within the block, everything written to stdout (Python's and file descriptor 1) is dropped: for
    libraries that print what their exception already says (torch's ONNX exporter prints its graph)."""
    sink = os.open(os.devnull, os.O_WRONLY)
    try:
        with _stdout_to(sink):
            yield
    finally:
        os.close(sink)


@contextlib.contextmanager
def _stdout_to(fd: int) -> Iterator[None]:
    """File descriptor 1 pointed at ``fd`` within the block (native code's buffered output included)."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except (OSError, ValueError):  # no real stdout (embedded interpreter): nothing to protect
        yield
        return
    os.dup2(fd, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        try:
            ctypes.CDLL(None).fflush(None)  # native code's buffered output still belongs to the block
        except (OSError, AttributeError, TypeError):  # no C library to flush (not POSIX)
            pass
        os.dup2(saved, 1)
        os.close(saved)
