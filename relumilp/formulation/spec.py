r"""The unsafe-set encoding: a margin network's MILP extended with the max-violation variable ``t``.

The verifier (:mod:`relumilp.verify`) appends the property's stacked unsafe rows to the network as one
affine node (:func:`relumilp.verify.spec.spec_network`), so the network's outputs are the *margins*
``g = G y - h`` (``g_r <= 0`` for every row of conjunction ``j``: ``y`` is in unsafe set ``j``). The
big-M model of that margin network (:func:`~relumilp.pipeline.compile_network`) is extended here, in
matrix form, with a variable ``t``, the max-violation::

    min t   s.t.  g_r <= t  for r in rows(j)           (one conjunction j)
                  t_lo <= t <= t_hi

Several conjunctions in one MILP (``disjunction="bigm"``) get binaries ``delta_j`` that pick one,
``sum_j delta_j = 1``, and ``g_r - t <= M_r (1 - delta_j)`` with ``M_r = upper(g_r) - t_lo`` -- a
valid big-M because the margin bounds are sound and ``t >= t_lo``, where
``t_lo = min_j max_{r in j} lower(g_r)`` is a lower bound on the optimum. (The verifier's default,
``disjunction="split"``, solves one MILP per conjunction instead: measured on 12 random 4-24-24-6
networks with a 5-way disjunction and on the leaf MILPs of ACAS Xu properties 5 and 9, splitting took
less than half the total MILP time; bigm was faster on 3 of the 12 networks and timed out on one.)

The column bound ``t <= t_upper`` (0, or the decision slack of :mod:`relumilp.verify.decide`) makes
any feasible point a candidate counterexample and an *infeasible* MILP a proof that ``min max_r g_r``
exceeds it. Minimising ``t`` (rather than a zero objective) steers the search to the most violating
points and gives, at a time limit, a dual bound on the margin.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .milp import MILP


def extend(milp: MILP, lower, upper, integer, rows: list[tuple[dict, float, float]]) -> MILP:
    """``milp`` plus new columns (bounds, integrality) and rows ``lo <= sum coef * v <= hi``.

    Each row is ``({column: coefficient}, lo, hi)``; new columns are numbered after the old ones.
    """
    n_old, m_old = milp.num_columns, milp.num_rows
    n_new = len(lower)
    r_idx, c_idx, vals = [], [], []
    for i, (coefs, _, _) in enumerate(rows):
        for c, v in coefs.items():
            r_idx.append(i)
            c_idx.append(c)
            vals.append(v)
    extra = sp.csr_array((vals, (r_idx, c_idx)), shape=(len(rows), n_old + n_new))
    A = sp.vstack([sp.hstack([milp.A, sp.csr_array((m_old, n_new))]), extra]).tocsr()
    return MILP(**{
        **milp.__dict__,
        "col_lower": np.concatenate([milp.col_lower, lower]),
        "col_upper": np.concatenate([milp.col_upper, upper]),
        "integrality": np.concatenate([milp.integrality, np.asarray(integer, dtype=bool)]),
        "A": A,
        "row_lower": np.concatenate([milp.row_lower, [r[1] for r in rows]]),
        "row_upper": np.concatenate([milp.row_upper, [r[2] for r in rows]]),
    })


def unsafe_milp(milp: MILP, g_lower, g_upper, members: list[list[int]], t_upper: float | None = None) -> tuple[MILP, int]:
    """The max-violation MILP of the union of conjunctions ``members`` (rows of the margin outputs).

    Returns the extended MILP (objective ``min t``) and the column of ``t``. See the module docstring.
    """
    g = milp.output_columns
    n = milp.num_columns
    t = n
    t_lo = min(max(g_lower[r] for r in rows) for rows in members)
    if t_upper is None:
        t_upper = 0.0
    t_hi = min(t_upper, max(max(g_upper[r] for r in rows) for rows in members))
    t_hi = max(t_hi, t_lo)
    rows: list[tuple[dict, float, float]] = []
    if len(members) == 1:
        lower, upper, integer = [t_lo], [t_hi], [False]
        for r in members[0]:
            rows.append(({int(g[r]): 1.0, t: -1.0}, -np.inf, 0.0))
    else:
        k = len(members)
        lower, upper, integer = [t_lo] + [0.0] * k, [t_hi] + [1.0] * k, [False] + [True] * k
        for j, member in enumerate(members):
            delta = n + 1 + j
            for r in member:
                big_m = g_upper[r] - t_lo
                if big_m <= 0.0:  # g_r <= upper(g_r) <= t_lo <= t always
                    continue
                rows.append(({int(g[r]): 1.0, t: -1.0, delta: big_m}, -np.inf, big_m))
        rows.append(({n + 1 + j: 1.0 for j in range(k)}, 1.0, 1.0))
    extended = extend(milp, lower, upper, integer, rows)
    objective = np.zeros(extended.num_columns)
    objective[t] = 1.0
    extended.objective = objective
    extended.sense = "min"
    return extended, t
