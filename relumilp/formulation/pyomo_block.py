"""The Pyomo backend: a network's MILP as a ``Block`` that users link into their own models.

Layout of the block ``b`` returned by :func:`add_network` (or :func:`emit_block`)::

    b.inputs[i], b.outputs[j]          the network input and output (flat indices)
    b.nodes[name].y[i]                 output of every IR node (pre-activations are affine nodes)
    b.nodes[name].z[i], .z_cap[i]      binaries of unstable neurons (indexed by neuron)
    b.nodes[name].rows[k]              the node's rows (affine equalities or big-M rows)
    b.input_constraints[k]             linear input rows of the domain, if any
    b.link_inputs / b.link_outputs     equalities tying the block to the user's variables

Rows are created from the matrix form as ``LinearExpression`` objects (coefficients and variables
handed over as lists), never through chains of Python ``+`` on scalar terms: this is what keeps
building a large network fast.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyomo.environ as pyo
from pyomo.common.gc_manager import PauseGC
from pyomo.core.expr.numeric_expr import LinearExpression

from ..errors import InvalidDomainError
from .milp import MILP


def _bounds_rule(lower: np.ndarray, upper: np.ndarray):
    lo = [None if not np.isfinite(v) else float(v) for v in lower]
    hi = [None if not np.isfinite(v) else float(v) for v in upper]
    return lambda _, i: (lo[i], hi[i])


def emit_block(milp: MILP, block: pyo.Block) -> list:
    """Create the variables and rows of ``milp`` on ``block``; returns the column-ordered VarData list."""
    # Creating ~10^5 expression objects triggers Python's cyclic GC over and over; pausing it during
    # the build cuts the time several-fold (the objects are not cyclic garbage).
    with PauseGC():
        return _emit(milp, block)


def _emit(milp: MILP, block: pyo.Block) -> list:
    column_vars: list = [None] * milp.num_columns
    block.nodes = pyo.Block(list(milp.node_columns))
    for name, columns in milp.node_columns.items():
        sub = block.nodes[name]
        sub.y = pyo.Var(range(columns.size), bounds=_bounds_rule(milp.col_lower[columns], milp.col_upper[columns]))
        for i, column in enumerate(columns):
            column_vars[column] = sub.y[i]
        for key, group in milp.binaries.get(name, {}).items():
            if group.band:  # a band encoding: binaries and fill fractions indexed by position
                fills = np.concatenate([band.delta.ravel() for band in group.band])
                for suffix, columns, domain in (("", group.columns, pyo.Binary), ("_fill", fills, pyo.Reals)):
                    var = pyo.Var(range(columns.size), within=domain,
                                  bounds=_bounds_rule(milp.col_lower[columns], milp.col_upper[columns]))
                    sub.add_component(key + suffix, var)
                    for k, column in enumerate(columns):
                        column_vars[column] = var[k]
                continue
            neurons = [int(n) for n in group.neurons]
            var = pyo.Var(neurons, within=pyo.Binary)
            sub.add_component(key, var)
            for neuron, column in zip(neurons, group.columns):
                column_vars[column] = var[neuron]
    A = milp.A
    for owner, (start, stop) in milp.row_ranges.items():
        target = block if owner == "input_constraints" else block.nodes[owner]
        component = pyo.Constraint(range(stop - start), rule=_row_rule(A, milp, column_vars, start))
        target.add_component("input_constraints" if owner == "input_constraints" else "rows", component)
    block.inputs = pyo.Reference(block.nodes[milp.input_name].y)
    block.outputs = pyo.Reference(block.nodes[milp.output_name].y)
    return column_vars


def _row_rule(A, milp: MILP, column_vars: list, start: int):
    indptr, indices, data = A.indptr, A.indices, A.data
    lower, upper = milp.row_lower, milp.row_upper

    def rule(_, k):
        r = start + k
        s, e = indptr[r], indptr[r + 1]
        expr = LinearExpression(
            constant=0.0, linear_coefs=data[s:e].tolist(), linear_vars=[column_vars[j] for j in indices[s:e]]
        )
        lo, hi = lower[r], upper[r]
        if lo == hi:
            return expr == float(lo)
        return (float(lo) if np.isfinite(lo) else None, expr, float(hi) if np.isfinite(hi) else None)

    return rule


def link(block: pyo.Block, name: str, ours, theirs: Sequence, size: int) -> list:
    """Add ``ours[i] == theirs[i]`` rows named ``name`` on ``block``; returns ``theirs`` as a flat list."""
    theirs = flatten_vars(theirs)
    if len(theirs) != size:
        raise InvalidDomainError(f"{name}: got {len(theirs)} variables, the network has {size}")
    block.add_component(name, pyo.Constraint(range(size), rule=lambda _, i: ours[i] == theirs[i]))
    return theirs


def flatten_vars(variables) -> list:
    """A flat list of scalar Pyomo variables (or expressions of them) from an indexed Var, a scalar, or
    (nested) lists/arrays; anything else is refused in one line."""
    if variables is None:
        return []
    if hasattr(variables, "is_indexed"):
        try:
            return [variables[i] for i in variables.index_set()] if variables.is_indexed() else [variables]
        except (ValueError, RuntimeError) as exc:  # e.g. a Var not constructed yet
            raise InvalidDomainError(f"cannot read the variables {variables}: {exc}") from None
    if getattr(variables, "is_expression_type", lambda: False)():
        return [variables]
    if isinstance(variables, np.ndarray):
        variables = variables.ravel().tolist()
    if not isinstance(variables, (list, tuple)):
        raise InvalidDomainError(f"inputs and outputs must be Pyomo variables or expressions (an indexed Var, or a "
                                 f"list of them), got {type(variables).__name__}")
    return [v for item in variables for v in flatten_vars(item)]


def bounds_of(variables) -> tuple[np.ndarray, np.ndarray] | None:
    """The (lower, upper) bounds of user variables -- a fixed one's value, an expression's bounds from
    its variables' (Pyomo's interval arithmetic) -- or None when any is unbounded."""
    # a fixed variable's declared bounds when it has both (it may be fixed to another value later)
    ranges = np.array([_range(v, declared=True) for v in variables], dtype=float).reshape(-1, 2)
    if not np.isfinite(ranges).all():
        return None
    return ranges[:, 0].copy(), ranges[:, 1].copy()


def _range(item, declared: bool) -> tuple[float, float]:
    """``(low, high)`` of a user's variable or expression (infinite where unbounded): a fixed variable's
    value, or with ``declared`` its bounds when it has both; an expression's from its variables'."""
    from pyomo.contrib.fbbt.fbbt import compute_bounds_on_expr

    if getattr(item, "is_variable_type", lambda: False)():
        bounded = item.lb is not None and item.ub is not None
        fixed = item.fixed and item.value is not None and not (declared and bounded)
        low, high = (item.value, item.value) if fixed else (item.lb, item.ub)
    else:
        low, high = compute_bounds_on_expr(item)
    return (-np.inf if low is None else float(low)), (np.inf if high is None else float(high))


def current_range(item) -> tuple[float, float]:
    """The values a user's variable or expression can take now: a fixed variable's value, else its bounds
    (an expression's from its variables'); infinite where unbounded."""
    return _range(item, declared=False)


def value_of(item) -> float:
    """The current value of a user variable or expression (NaN when unset)."""
    value = pyo.value(item, exception=False)
    return np.nan if value is None else float(value)
