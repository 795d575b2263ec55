r"""Max and argmax of a network's outputs as MILP constraints.

For values ``y_i`` with sound bounds ``L_i <= y_i <= U_i``, ``m = max_i y_i`` and a one-hot argmax
``s`` are modelled by::

    m >= y_i                                  for all i
    m <= y_i + (max_{j != i} U_j - L_i)(1 - s_i)   for all candidates i
    sum_i s_i = 1,   s_i in {0, 1}

``s_i = 1`` forces ``m <= y_i``, so ``y_i`` is a maximum; the big-M keeps the row slack otherwise.
An output whose upper bound is below the largest lower bound can never be the maximum: its ``s_i`` is
fixed to 0. Ties are resolved by the solver (any maximiser may carry ``s_i = 1``).
This is how a classifier's decision (or the deterministic ``PerturbArgmax``) enters a MILP.
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo

from ..errors import RelumilpError


def add_argmax(block: pyo.Block, values=None, lower=None, upper=None, name: str = "argmax") -> pyo.Block:
    """Add ``max_value`` and one-hot ``is_max[i]`` for ``values`` (default: the network block's outputs).

    Bounds default to the compiled network's output bounds. Returns the new sub-block, with
    ``.max_value``, ``.is_max`` (binaries; fixed 0 where output ``i`` can never be the maximum) and
    ``.rows``.
    """
    if values is None:
        compiled = getattr(block, "compiled", None)
        if compiled is None:
            raise RelumilpError("add_argmax needs values= or a network block from relumilp.add_network")
        values = block.outputs
        lower, upper = compiled.bounds[compiled.milp.output_name]
    from .pyomo_block import flatten_vars

    values = flatten_vars(values)
    n = len(values)
    if lower is None or upper is None:
        lower = np.array([v.lb for v in values], dtype=float)
        upper = np.array([v.ub for v in values], dtype=float)
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    if lower.shape != (n,) or upper.shape != (n,) or not (np.isfinite(lower).all() and np.isfinite(upper).all()):
        raise RelumilpError(f"add_argmax needs finite lower and upper bounds for all {n} values")
    candidates = upper >= lower.max()
    sub = pyo.Block(concrete=True)
    block.add_component(name, sub)
    sub.max_value = pyo.Var(bounds=(float(lower.max()), float(upper.max())))
    sub.is_max = pyo.Var(range(n), within=pyo.Binary)
    for i in np.flatnonzero(~candidates):
        sub.is_max[int(i)].fix(0)
    big_m = np.array([np.max(np.delete(upper, i), initial=upper[i]) - lower[i] for i in range(n)])
    # Rows for every output (not only candidates), so fixing is_max[k] = 1 by hand stays exact.
    index = range(n)
    sub.above = pyo.Constraint(range(n), rule=lambda _, i: sub.max_value >= values[i])
    sub.attained = pyo.Constraint(
        index, rule=lambda _, i: sub.max_value <= values[i] + float(max(big_m[i], 0.0)) * (1 - sub.is_max[i])
    )
    sub.one_hot = pyo.Constraint(expr=sum(sub.is_max[i] for i in index) == 1)
    return sub
