"""A bound cache: computed bounds saved to disk, keyed by network, domain, method and options.

The key is ``(network content_hash, domain content_hash, method, options)`` -- equal keys mean the same
bounds would be computed again. ``cache`` is either a directory (one file per key, named from a digest
of the key) or a single ``.npz``/``.json`` file (holding one entry; a different key is recomputed and
overwrites it). Files are written whole or not at all (:func:`relumilp._io.atomic_write`); an
unreadable or mismatched file is ignored (the bounds are recomputed), never trusted.

A cache never destroys someone else's data: an existing file named as the cache must be a relumilp
bound cache, else :class:`~relumilp.errors.ModelFileError` is raised and the file is left untouched
(inside a cache directory, only our own ``bounds-<method>-<digest>.npz`` names are ever written). A
cache directory is created when missing, but the folder it goes in must exist (a typo is an error).

``.npz`` stores the float64 arrays bit for bit; ``.json`` stores them as shortest round-trip decimal
strings, which also read back bit for bit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .._io import any_file, atomic_write, atomic_write_text, check_writable
from ..domain import InputDomain
from ..errors import ModelFileError
from ..ir import Network
from .base import Bounds

FORMAT = "relumilp-bounds-1"


def cache_key(net: Network, domain: InputDomain, method: str, options: dict | None = None) -> dict:
    """The identity of a bound computation (what must match for a cached result to be reused)."""
    opts = {k: options[k] for k in sorted(options or {})}
    return {"network": net.content_hash, "domain": domain.content_hash, "method": method, "options": opts}


def _target(cache) -> tuple[Path, bool]:
    """``(path, single file?)`` of a cache argument; raises when using it could destroy other data."""
    path = Path(cache)
    single = path.suffix in (".npz", ".json") and not path.is_dir()
    if path.exists() and not path.is_dir() and not (single and _is_cache_file(path)):
        raise ModelFileError(f"bound cache {path} is an existing file that is not a relumilp bound cache; it is "
                             "left untouched: give a directory or a new .npz/.json file")
    folder = path.parent if str(path.parent) else Path(".")
    if not path.is_dir() and not folder.is_dir():
        raise ModelFileError(f"cannot use bound cache {path}: folder {folder} does not exist")
    return path, single


def check_cache(cache) -> None:
    """Raise a one-line error now if ``cache`` could not be written later (the CLI checks before computing)."""
    path, single = _target(cache)
    if single or not path.is_dir():
        check_writable(path, ours=_is_cache_file)  # the file, or the cache directory to be created, goes there
    else:
        check_writable(path / "bounds.npz", ours=_is_cache_file)


def cache_path(cache, key: dict) -> Path:
    """The file for ``key``: ``cache`` itself when it names a .npz/.json file, else a file inside it."""
    path, single = _target(cache)
    if single:
        return path
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return path / f"bounds-{key['method']}-{digest}.npz"


def save_bounds(path, bounds: Bounds, key: dict) -> Path:
    """Write ``bounds`` with ``key`` to ``path`` (``.json`` or ``.npz``), whole or not at all. ``path`` comes
    from :func:`cache_path`, which already refused a file that is not ours (a single-file cache must be a
    bound cache; in a cache directory only our own digest names are written, so a corrupt one is replaced)."""
    path = Path(path)
    try:
        path.parent.mkdir(exist_ok=True)
    except OSError as exc:
        raise ModelFileError(f"cannot create the bound cache folder {path.parent}: {exc.strerror or exc}") from None
    meta = {"format": FORMAT, "key": key, "method": bounds.method, "times": bounds.times, "nodes": list(bounds.lower)}
    if path.suffix == ".json":
        data = dict(meta, lower={k: v.tolist() for k, v in bounds.lower.items()},
                    upper={k: v.tolist() for k, v in bounds.upper.items()})
        return atomic_write_text(path, json.dumps(data), ours=any_file)
    arrays = {}
    for i, name in enumerate(bounds.lower):
        arrays[f"lower{i}"] = np.asarray(bounds.lower[name], dtype=np.float64)
        arrays[f"upper{i}"] = np.asarray(bounds.upper[name], dtype=np.float64)
    return atomic_write(path, lambda handle: np.savez(handle, __meta__=np.array(json.dumps(meta)), **arrays), binary=True,
                        ours=any_file)


def load_bounds(path, key: dict | None = None) -> Bounds | None:
    """Bounds stored at ``path``, or None when missing, unreadable, or stored under another key."""
    stored = _read(path)
    if stored is None:
        return None
    data, lower, upper = stored
    if key is not None and data.get("key") != json.loads(json.dumps(key)):
        return None
    return Bounds(lower, upper, data.get("method", "interval"), dict(data.get("times", {})))


def _is_cache_file(path) -> bool:
    return _read(path) is not None


def _read(path) -> tuple[dict, dict, dict] | None:
    """``(metadata, lower, upper)`` of a relumilp bound cache file, or None for anything else."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
            lower = {k: np.array(v, dtype=np.float64) for k, v in data["lower"].items()}
            upper = {k: np.array(v, dtype=np.float64) for k, v in data["upper"].items()}
        else:
            with np.load(path, allow_pickle=False) as npz:
                data = json.loads(str(npz["__meta__"]))
                lower = {name: npz[f"lower{i}"] for i, name in enumerate(data["nodes"])}
                upper = {name: npz[f"upper{i}"] for i, name in enumerate(data["nodes"])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):  # deep JSON: not ours
        return None
    return (data, lower, upper) if isinstance(data, dict) and data.get("format") == FORMAT else None
