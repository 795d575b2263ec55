"""Sampled lower bound on the number of activation regions, for any network size.

``sample`` method: the number of distinct patterns seen at random points of the domain and along random
lines through it -- a lower bound (``exact`` false).
"""

from __future__ import annotations

import time

import numpy as np

from ..._progress import progress_bar
from ...domain import InputDomain
from ...limits import Deadline
from ...ir import Network
from . import RegionCount, activation_patterns


def _unique_rows(patterns: np.ndarray) -> set[bytes]:
    if patterns.shape[1] == 0:
        return {b""} if patterns.shape[0] else set()
    view = np.ascontiguousarray(patterns).view(np.dtype((np.void, patterns.shape[1])))
    return {row.tobytes() for row in np.unique(view)}


def _line_points(domain: InputDomain, n_lines: int, per_line: int, rng: np.random.Generator) -> np.ndarray:
    """``per_line`` equally spaced points on each of ``n_lines`` random chords of the domain."""
    anchors = domain.sample(n_lines, rng)
    out = []
    for p in anchors:
        u = rng.normal(size=p.size)
        u /= np.linalg.norm(u) or 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (domain.lower - p) / u
            t2 = (domain.upper - p) / u
        moving = u != 0
        t_lo = float(np.max(np.minimum(t1, t2)[moving])) if moving.any() else 0.0
        t_hi = float(np.min(np.maximum(t1, t2)[moving])) if moving.any() else 0.0
        if domain.A is not None:
            rate, room = domain.A @ u, domain.b - domain.A @ p
            for r, q in zip(rate, room):
                if r > 0:
                    t_hi = min(t_hi, q / r)
                elif r < 0:
                    t_lo = max(t_lo, q / r)
        if t_hi <= t_lo:
            continue
        t = t_lo + (t_hi - t_lo) * (np.arange(per_line) + rng.uniform()) / per_line
        out.append(p + t[:, None] * u)
    return np.concatenate(out) if out else np.zeros((0, domain.size))


def sample_regions(net: Network, domain: InputDomain, samples: int = 10000, seed: int | None = 0,
                   chunk: int = 4096, progress: bool = False, time_limit=None) -> RegionCount:
    """Distinct activation patterns at ``samples`` points: half uniform in the domain, half on random lines.

    A **lower bound** on the number of regions (small regions are easily missed; lines cross many thin
    ones). Points are drawn with ``seed`` for reproducibility. ``progress`` shows the points done on stderr.
    ``time_limit`` (seconds or a :class:`~relumilp.limits.Deadline`): stop between blocks of points once
    it has passed (at least one block runs); the note and ``samples`` give the points actually used.
    """
    if time_limit is None or isinstance(time_limit, Deadline):
        deadline = Deadline.of(time_limit)
    else:  # 0 is allowed: what a caller's used-up deadline leaves (one block still runs)
        deadline = Deadline(time.perf_counter() + max(0.0, float(time_limit)))
    if deadline.limited:
        chunk = min(chunk, 512)  # a block of a large network's forward pass can take seconds
    start = time.perf_counter()
    domain.check_size(net.input_size)
    rng = np.random.default_rng(seed)
    n_uniform = max(1, samples // 2)
    per_line = 250
    n_lines = max(1, (samples - n_uniform) // per_line)
    points = np.concatenate([domain.sample(n_uniform, rng), _line_points(domain, n_lines, per_line, rng)])
    seen: set[bytes] = set()
    with progress_bar(progress, "regions (sample)", " points", total=len(points)) as bar:
        for first in range(0, len(points), chunk):
            if first and deadline.expired():
                points = points[:first]
                break
            block = points[first:first + chunk]
            seen |= _unique_rows(activation_patterns(net, block))
            bar.update(len(block))
            bar.set_postfix_str(f"{len(seen)} patterns", refresh=False)
    note = (f"distinct patterns at {len(points)} points ({n_uniform} uniform, {n_lines} random lines): a lower bound"
            if len(points) == n_uniform + n_lines * per_line else
            f"distinct patterns at the first {len(points)} points (of {n_uniform} uniform, {n_lines} random lines; "
            "time limit): a lower bound")
    return RegionCount(len(seen), "sample", False, None, time.perf_counter() - start, note, samples=len(points))
