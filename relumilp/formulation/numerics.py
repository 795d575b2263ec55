r"""Numerically safe models: exact power-of-two equilibration before a MILP reaches the solver.

HiGHS works with absolute tolerances (primal feasibility 1e-7, integrality 1e-6) and silently drops
matrix entries below ``small_matrix_value`` (1e-9). A network whose layers are scaled very differently
(weights 5e-10 over inputs of 1e9; a layer of 5e6 followed by one of 3e-6) therefore gets a model that
HiGHS solves *as if it were another model*, with no warning: the audit of issue #11 found false
``holds``, cut-off bounds and wrong optima that way. :func:`equilibrate` rewrites the model so that the
tolerances mean the same thing everywhere:

0. **Implied bounds.** A declared bound can be far wider than the values a column can take (a user's
   output variable bounded by +-1e10, or free, tied to a network output in ``[-1, 1]`` by an equality
   row): an equality row whose other columns are all bounded bounds the column by
   ``(|rhs| + sum_k |a_k| max|v_k|) / |a_j|`` (widened for rounding), and the solver's copy gets that.
1. **Columns by magnitude.** Every continuous column ``v_j`` with finite bounds is written as
   ``v_j = d_j \hat v_j`` with ``d_j`` the power of two nearest ``max(|l_j|, |u_j|)``, so every scaled
   column lies in about ``[-1, 1]``. Integer (binary) columns keep ``d_j = 1``. A continuous column still
   unbounded is scaled up by the power of two that brings its entries level with the largest entry of
   its least lopsided row (left at 1, its entries could be relaxed away and the column freed).
2. **Rows by their largest contribution.** Row ``i`` is multiplied by the power of two ``r_i`` nearest
   ``1 / max_j |a_ij| d_j``: its largest term then reaches about 1, and each scaled entry
   ``\hat a_ij = r_i a_ij d_j`` is the share of the row's scale that column ``j`` can contribute.
3. **Negligible terms are relaxed, never dropped silently.** An entry with ``|\hat a_ij| <`` :data:`SMALL`
   would be discarded by HiGHS; we remove it ourselves and widen the row's bounds by the most it could
   contribute, ``|\hat a_ij| max(|\hat l_j|, |\hat u_j|)`` (rounded up). The model HiGHS sees is then a
   *relaxation* of the true one: its bounds and infeasibility proofs stay valid for the true model.

Powers of two make every scaling exact in binary floating point (barring overflow, which the column
magnitudes rule out), so the scaled model has exactly the feasible set of the original in exact
arithmetic; solutions map back by ``v = d \hat v``. The objective is scaled like the columns
(``\hat c = c d``, the same objective values) and then, if its largest coefficient is below 1, by
the power of two that brings it to about 1 (:attr:`Equilibrated.objective_scale`; never down, since a
relative gap floored at an absolute 1 must not widen in original units).

:class:`Equilibrated` also reports the coefficient range before and after, the number of relaxed
entries and the largest row widening, so that a caller knows what it handed the solver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .milp import MILP

#: HiGHS's ``small_matrix_value``: entries below it are dropped by HiGHS (so we relax them first)
SMALL = 1e-9
#: a row widened by more than this (relative to its scale, about 1) makes the relaxation noticeably loose
LOOSE_RELAXATION = 1e-6


def power_of_two(values: np.ndarray, limit: int | None = None) -> np.ndarray:
    """The power of two nearest (in log scale) each positive finite value (1 elsewhere), its exponent
    clipped to ``[-limit, limit]`` when given."""
    values = np.asarray(values, dtype=np.float64)
    out = np.ones_like(values)
    ok = np.isfinite(values) & (values > 0)
    exponents = np.round(np.log2(values[ok]))
    out[ok] = np.exp2(exponents if limit is None else np.clip(exponents, -limit, limit))
    return out


def dropped_by_highs(values: np.ndarray) -> np.ndarray:
    """Which matrix entries HiGHS drops when it is handed a model: nonzeros with ``|a| <= SMALL``."""
    return (np.abs(values) <= SMALL) & (values != 0.0)


def _row_max(A: sp.csr_array) -> np.ndarray:
    """The largest absolute entry of each row (0 for an empty row)."""
    if not A.nnz:
        return np.zeros(A.shape[0])
    return np.asarray(abs(A).max(axis=1).toarray(), dtype=np.float64).reshape(-1)


def coefficient_range(A: sp.spmatrix) -> tuple[float, float]:
    """``(min, max)`` of the absolute nonzero entries of ``A`` (``(0, 0)`` for an empty matrix)."""
    data = np.abs(A.data[A.data != 0.0]) if A.nnz else np.zeros(0)
    return (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)


@dataclass
class Equilibrated:
    """A MILP rewritten for the solver, and the maps back to the original columns."""

    milp: MILP
    #: original column ``v_j = col_scale[j] * scaled column j``
    col_scale: np.ndarray
    #: scaled row ``i`` = ``row_scale[i]`` times original row ``i`` (then possibly widened)
    row_scale: np.ndarray
    #: scaled objective = ``objective_scale * (c @ v)``
    objective_scale: float = 1.0
    #: coefficient ranges (min, max of |a|) before and after scaling
    range_before: tuple[float, float] = (0.0, 0.0)
    range_after: tuple[float, float] = (0.0, 0.0)
    #: entries removed as negligible, and the largest widening of a row they caused
    relaxed_entries: int = 0
    max_widening: float = 0.0
    notes: list[str] = field(default_factory=list)

    def unscale(self, scaled_columns: np.ndarray) -> np.ndarray:
        """Original column values from the solver's."""
        return np.asarray(scaled_columns, dtype=np.float64) * self.col_scale

    def scale_columns(self, values: np.ndarray) -> np.ndarray:
        """The solver's column values from original ones (for MIP starts)."""
        return np.asarray(values, dtype=np.float64) / self.col_scale

    def report(self) -> dict:
        """What the solver was handed, for result statistics."""
        return {
            "coefficient_range_before": list(self.range_before),
            "coefficient_range_after": list(self.range_after),
            "relaxed_entries": self.relaxed_entries,
            "max_row_widening": self.max_widening,
        }


def equilibrate(milp: MILP) -> Equilibrated:
    """Scale ``milp`` exactly by powers of two and relax its negligible entries (module docstring)."""
    A = sp.csr_array(milp.A, copy=True)
    A.sum_duplicates()
    range_before = coefficient_range(A)
    # a declared bound can be far wider than the values a column can take (a user's output variable
    # with bounds +-1e10 or none, tied to a network output in [-1, 1] by an equality): scaled by its bound,
    # the column's values sink below the solver's tolerances, or its entries are relaxed away next to
    # the others. An equality row with every other column bounded implies |v_j| <= (|rhs| +
    # sum_k |a_k| max|v_k|) / |a_j|: tighten the column to that (widened for the sum's rounding).
    col_lower, col_upper = milp.col_lower.copy(), milp.col_upper.copy()
    magnitude = np.maximum(np.abs(np.where(np.isfinite(col_lower), col_lower, 0.0)),
                           np.abs(np.where(np.isfinite(col_upper), col_upper, 0.0)))
    bounded = np.isfinite(col_lower) & np.isfinite(col_upper)
    equal = np.isfinite(milp.row_lower) & (milp.row_lower == milp.row_upper)
    if equal.any() and A.nnz:
        rows = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
        size = np.abs(A.data)
        terms = size * np.where(bounded, magnitude, np.inf)[A.indices]
        open_ = ~np.isfinite(terms)
        total = np.bincount(rows, weights=np.where(open_, 0.0, terms), minlength=A.shape[0])
        opens = np.bincount(rows, weights=open_.astype(float), minlength=A.shape[0])
        # the sum of the other terms, without cancellation against a dominant term: each row's largest
        # finite term is left out of ``rest`` and added back for the other entries (then every
        # subtraction loses at most (n + 1) eps of a result no smaller than that term)
        finite_terms = np.where(open_, -1.0, terms)
        nonempty = np.diff(A.indptr) > 0
        top = np.full(A.shape[0], -1.0)
        top[nonempty] = np.maximum.reduceat(finite_terms, A.indptr[:-1][nonempty])
        # one entry per row holding its top term: the first such (entries are stored row by row)
        candidates = np.flatnonzero(finite_terms == top[rows])
        first = np.zeros(rows.size, dtype=bool)
        first[candidates[np.r_[True, rows[candidates][1:] != rows[candidates][:-1]]]] = True
        top = np.maximum(top, 0.0)
        rest = np.bincount(rows, weights=np.where(first | open_, 0.0, terms), minlength=A.shape[0])
        others = np.where(open_, total[rows], np.where(first, rest[rows], rest[rows] - terms + top[rows]))
        use = (equal[rows] & (np.diff(A.indptr)[rows] >= 2) & (size > 0) & ~milp.integrality[A.indices]
               & (opens[rows] - open_ == 0))
        # the absolute slack before the division: others that underflowed must not make the cap 0
        implied = (np.abs(np.where(equal, milp.row_lower, 0.0))[rows[use]] + others[use] + 1e-300) / size[use]
        implied = implied * (1.0 + 1e-9)
        cap = np.full(A.shape[1], np.inf)
        np.minimum.at(cap, A.indices[use], implied)
        tighter = cap < np.where(bounded, magnitude, np.inf)
        col_lower = np.where(tighter, np.maximum(col_lower, -cap), col_lower)
        col_upper = np.where(tighter, np.minimum(col_upper, cap), col_upper)
        magnitude = np.where(tighter, np.maximum(np.abs(col_lower), np.abs(col_upper)), magnitude)
        bounded = bounded | tighter
    # subnormal magnitudes (a node that is exactly 0, bounded by round-off margins) are left unscaled:
    # their scale would make the row's entries subnormal and its row scale overflow
    normal = magnitude >= np.finfo(np.float64).tiny
    col_scale = np.where(bounded & ~milp.integrality & normal, power_of_two(np.where(normal, magnitude, 1.0)), 1.0)
    A = A @ sp.diags_array(col_scale)
    A = sp.csr_array(A)
    # a continuous column with an infinite bound (a free output variable of the user's model) has no
    # magnitude to scale by: next to columns scaled by theirs its entries can fall below SMALL, and
    # relaxing them would leave it unconstrained (an "unbounded" model). Scale it up instead, by the
    # power of two that brings its entry level with the largest of its least lopsided row.
    free = ~bounded & ~milp.integrality
    if free.any() and A.nnz:
        largest = _row_max(A)
        C = sp.csc_array(A)
        columns = np.repeat(np.arange(A.shape[1]), np.diff(C.indptr))
        entries = np.abs(C.data)
        with np.errstate(divide="ignore"):
            ratio = np.where(entries > 0, largest[C.indices] / np.where(entries > 0, entries, 1.0), np.inf)
        least = np.full(A.shape[1], np.inf)
        np.minimum.at(least, columns, ratio)
        grow = free & np.isfinite(least) & (least > 1.0)
        extra = np.where(grow, power_of_two(np.where(grow, least, 1.0)), 1.0)
        col_scale = col_scale * extra
        A = sp.csr_array(A @ sp.diags_array(extra))
    row_max = _row_max(A)
    row_scale = power_of_two(1.0 / np.where(row_max > 0, row_max, 1.0))
    A = sp.csr_array(sp.diags_array(row_scale) @ A)
    col_lower, col_upper = col_lower / col_scale, col_upper / col_scale
    row_lower, row_upper = milp.row_lower * row_scale, milp.row_upper * row_scale

    # relax entries HiGHS would drop: remove them and widen their rows by what they can contribute
    reach = np.maximum(np.abs(np.where(np.isfinite(col_lower), col_lower, np.inf)),
                       np.abs(np.where(np.isfinite(col_upper), col_upper, np.inf)))
    small = dropped_by_highs(A.data)
    relaxed, widest = int(small.sum()), 0.0
    if relaxed:
        rows = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))[small]
        contribution = np.abs(A.data[small]) * reach[A.indices[small]]
        widening = np.bincount(rows, weights=contribution, minlength=A.shape[0])
        widening = widening * (1.0 + 1e-12) + np.where(widening > 0, 5e-324, 0.0)  # the sum's rounding
        row_lower = row_lower - widening
        row_upper = row_upper + widening
        widest = float(widening.max())
        A.data[small] = 0.0
        A.eliminate_zeros()
    range_after = coefficient_range(A)

    objective, objective_scale = milp.objective, 1.0
    if objective is not None:
        objective = objective * col_scale
        largest = float(np.max(np.abs(objective), initial=0.0))
        if largest > 0.0:
            # only ever scaled up: a solver's relative gap is floored at an absolute 1 (HiGHS:
            # max(1, |objective|)), which must not grow in original units
            objective_scale = max(1.0, float(power_of_two(np.array([1.0 / largest]))[0]))
            objective = objective * objective_scale
    scaled = MILP(**{
        **milp.__dict__,
        "A": A, "col_lower": col_lower, "col_upper": col_upper,
        "row_lower": row_lower, "row_upper": row_upper, "objective": objective,
    })
    result = Equilibrated(scaled, col_scale, row_scale, objective_scale, range_before, range_after, relaxed, widest)
    if not math.isfinite(widest):
        result.notes.append("a negligible entry multiplies an unbounded column; the relaxation is unbounded there")
    elif widest > LOOSE_RELAXATION:
        result.notes.append(f"relaxed {relaxed} negligible matrix entries (rows widened by up to {widest:.2g})")
    return result
