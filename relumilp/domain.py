"""Input domains: a box ``lower <= x <= upper``, optionally cut by linear rows ``A x <= b``.

Interval and symbolic bounds use the box; LP/MILP-based bounds and the MILP itself also use the rows
(for example the input constraints of a VNN-LIB property, or constraints from a user's model).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import InvalidDomainError, ModelFileError


@dataclass(frozen=True, eq=False)
class InputDomain:
    """A box with optional linear constraints ``A @ x <= b`` over the flat network input."""

    lower: np.ndarray
    upper: np.ndarray
    A: np.ndarray | None = None
    b: np.ndarray | None = None

    def __post_init__(self):
        lower = np.array(self.lower, dtype=np.float64).ravel()
        upper = np.array(self.upper, dtype=np.float64).ravel()
        if lower.shape != upper.shape:
            raise InvalidDomainError(f"lower has {lower.size} values but upper has {upper.size}")
        if np.isnan(lower).any() or np.isnan(upper).any():
            raise InvalidDomainError("input bounds contain NaN")
        if not (np.isfinite(lower).all() and np.isfinite(upper).all()):
            raise InvalidDomainError("input bounds must be finite: big-M constraints need a bounded input box")
        bad = np.flatnonzero(lower > upper)
        if bad.size:
            i = int(bad[0])
            raise InvalidDomainError(f"input {i}: lower bound {lower[i]} > upper bound {upper[i]}")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        if (self.A is None) != (self.b is None):
            raise InvalidDomainError("linear input constraints need both A and b")
        if self.A is not None:
            A = np.atleast_2d(np.array(self.A, dtype=np.float64))
            b = np.array(self.b, dtype=np.float64).ravel()
            if A.shape != (b.size, lower.size):
                raise InvalidDomainError(f"A has shape {A.shape}, expected ({b.size}, {lower.size})")
            if not (np.isfinite(A).all() and np.isfinite(b).all()):
                raise InvalidDomainError("linear input constraints contain NaN or infinite values")
            object.__setattr__(self, "A", A if A.shape[0] else None)
            object.__setattr__(self, "b", b if A.shape[0] else None)

    @classmethod
    def box(cls, lower, upper, size: int | None = None) -> "InputDomain":
        """A box; scalar ``lower``/``upper`` are broadcast to ``size`` inputs."""
        if size is not None:
            lower = np.broadcast_to(np.asarray(lower, dtype=np.float64), (size,)) if np.ndim(lower) == 0 else lower
            upper = np.broadcast_to(np.asarray(upper, dtype=np.float64), (size,)) if np.ndim(upper) == 0 else upper
        return cls(lower, upper)

    @classmethod
    def of(cls, value, size: int) -> "InputDomain":
        """An :class:`InputDomain` of ``size`` inputs from a domain, a ``(lower, upper)`` pair (scalars
        broadcast), or a dict with ``lower``/``upper`` and optional ``A``/``b``: every form the public
        functions accept."""
        if isinstance(value, InputDomain):
            return value.check_size(size)
        if value is None:
            raise InvalidDomainError("input bounds are required: give input_bounds=(lower, upper) or bounded input variables")
        if isinstance(value, dict):
            return cls(value["lower"], value["upper"], value.get("A"), value.get("b")).check_size(size)
        try:
            lower, upper = value
        except (TypeError, ValueError):
            raise InvalidDomainError("input bounds must be an InputDomain or a (lower, upper) pair") from None
        return cls.box(lower, upper, size).check_size(size)

    @classmethod
    def from_json(cls, path) -> "InputDomain":
        """Read ``{"lower": [...], "upper": [...], "A": [[...]], "b": [...]}`` (A and b optional)."""
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ModelFileError(f"input-bounds file not found: {path}") from None
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"cannot read input bounds from {path}: {exc}") from None
        except RecursionError:  # json raises it (not a ValueError) for arrays/objects nested too deeply
            raise ModelFileError(f"cannot read input bounds from {path}: it is nested too deeply to be "
                                 '{"lower": [...], "upper": [...]}') from None
        if not isinstance(data, dict) or "lower" not in data or "upper" not in data:
            raise InvalidDomainError(f'{path} must hold a JSON object {{"lower": [...], "upper": [...]}}')
        try:
            return cls(data["lower"], data["upper"], data.get("A"), data.get("b"))
        except (TypeError, ValueError) as exc:
            if isinstance(exc, InvalidDomainError):
                raise
            raise InvalidDomainError(f"{path}: bounds must be lists of numbers ({exc})") from None

    @property
    def size(self) -> int:
        return self.lower.size

    @property
    def is_box(self) -> bool:
        return self.A is None

    @property
    def num_constraints(self) -> int:
        return 0 if self.A is None else self.A.shape[0]

    def check_size(self, size: int) -> "InputDomain":
        """Raise a clear error unless the domain has ``size`` inputs; returns self."""
        if self.size != size:
            raise InvalidDomainError(f"the input domain has {self.size} bounds but the network has {size} inputs")
        return self

    def check_not_empty(self, deadline=None) -> "InputDomain":
        """Raise :class:`InvalidDomainError` when the rows ``A x <= b`` leave no point of the box.

        Decided by one LP on the exactly equilibrated rows (:func:`relumilp.backends.highs.solve_milp`),
        and only when HiGHS proves infeasibility; a box alone is never empty. Returns self.
        """
        if self.A is None:
            return self
        from .backends.highs import solve_milp
        from .formulation.milp import MILPAssembler

        asm = MILPAssembler()
        x = asm.add_columns(self.lower, self.upper)
        asm.add_rows("input_constraints", [(self.A, x)], np.full(self.b.size, -np.inf), self.b)
        milp = asm.finish(node_columns={"input": x}, binaries={}, input_name="input", output_name="input")
        if solve_milp(milp, deadline=deadline, on_interrupt="raise").status == "infeasible":
            raise InvalidDomainError("the input domain is empty (its linear constraints cannot all hold)")
        return self

    def contains(self, x, tol: float = 1e-9) -> np.ndarray:
        """Which rows of ``x`` (batch, size) lie in the domain, up to ``tol``."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        inside = np.all((x >= self.lower - tol) & (x <= self.upper + tol), axis=1)
        if self.A is not None:
            inside &= np.all(x @ self.A.T <= self.b + tol, axis=1)
        return inside

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """``n`` points of the domain: uniform in the box (and rejection-sampled against the rows)."""
        rng = np.random.default_rng(rng)
        points = rng.uniform(self.lower, self.upper, size=(n, self.size))
        if self.A is None:
            return points
        kept = [points[self.contains(points)]]
        total, tries = kept[0].shape[0], 0
        while total < n and tries < 100:
            more = rng.uniform(self.lower, self.upper, size=(4 * n, self.size))
            kept.append(more[self.contains(more)])
            total += kept[-1].shape[0]
            tries += 1
        return np.concatenate(kept)[:n]

    def to_json(self) -> dict:
        data = {"lower": self.lower.tolist(), "upper": self.upper.tolist()}
        if self.A is not None:
            data.update(A=self.A.tolist(), b=self.b.tolist())
        return data

    @property
    def content_hash(self) -> str:
        import hashlib

        digest = hashlib.sha256(self.lower.tobytes() + self.upper.tobytes())
        if self.A is not None:
            digest.update(self.A.tobytes() + self.b.tobytes())
        return digest.hexdigest()


def box_from_cli(boxes: Sequence[str], size: int) -> InputDomain:
    """Parse ``--box LO:HI`` options: one applies to every input, otherwise one per input."""
    pairs = []
    for text in boxes:
        parts = text.split(":")
        try:
            if len(parts) != 2:
                raise ValueError
            pairs.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise InvalidDomainError(f"--box {text!r} is not of the form LO:HI (e.g. --box -1:1)") from None
    if len(pairs) == 1:
        pairs = pairs * size
    if len(pairs) != size:
        raise InvalidDomainError(f"got {len(pairs)} --box options but the network has {size} inputs (give 1 or {size})")
    lower, upper = zip(*pairs)
    return InputDomain(lower, upper)
