r"""Counterexamples: the sampling attack, the exact re-check of a candidate, and the LP repair.

* **Falsification by sampling** (:func:`sampling_attack`). The box centre, its corners (up to 10
  inputs) and ``attack_samples`` uniform points are pushed through :meth:`Network.forward`; a point in
  an unsafe set answers ``violated`` at once (``attack_samples=0`` switches this off). Branch and bound
  also tries the centre of every box (:func:`first_counterexample`).
* **Re-check** (:func:`check_candidate`). A candidate's input is clipped into the box and the float64
  forward pass of the *original* network (one point, :meth:`Network.forward`) must satisfy some unsafe
  conjunction exactly (and the input rows ``A x <= b`` exactly). Nothing else is ever reported
  ``violated``.
* **Repair** (:func:`repair`). If a MILP candidate fails the re-check (big-M round-off, integrality
  tolerance), the LP with the binaries fixed at the candidate's values is solved for the most violating
  point of that activation pattern, which is checked again; if that fails too the answer is
  ``unknown``, never a false ``violated``.
"""

from __future__ import annotations

import numpy as np

from ..domain import InputDomain
from ..formulation.milp import MILP
from ..ir import Network


def check_candidate(net: Network, domain: InputDomain, outputs, x) -> tuple[np.ndarray, np.ndarray] | None:
    """``(x, y)`` when ``x`` (clipped into the box) is in the region and ``net(x)`` in an unsafe set, exactly."""
    x = np.clip(np.asarray(x, dtype=np.float64).ravel(), domain.lower, domain.upper)
    if domain.A is not None and np.any(domain.A @ x > domain.b):
        return None
    y = net.forward(x)
    if any(out.contains(y)[0] for out in outputs):
        return x, y
    return None


def sampling_attack(net: Network, domain: InputDomain, outputs, samples: int, rng) -> tuple | None:
    """A counterexample among the centre, the corners (<= 10 inputs) and ``samples`` random points.

    ``samples <= 0`` switches the search off entirely.
    """
    if samples <= 0:
        return None
    points = [(domain.lower + domain.upper) / 2]
    n = domain.size
    if n <= 10:
        corners = np.array(np.meshgrid(*[[0.0, 1.0]] * n, indexing="ij")).reshape(n, -1).T
        points.append(domain.lower + corners * (domain.upper - domain.lower))
    if samples > 0:
        points.append(domain.sample(samples, rng))
    X = np.vstack(points)
    return first_counterexample(net, domain, outputs, X)


def first_counterexample(net: Network, domain: InputDomain, outputs, X: np.ndarray) -> tuple | None:
    """The first row of ``X`` that is a counterexample, confirmed by the single-point forward pass."""
    X = X[domain.contains(X, tol=0.0)]
    if X.shape[0] == 0:
        return None
    Y = net.forward(X)
    hit = np.zeros(X.shape[0], dtype=bool)
    for out in outputs:
        hit |= out.violation(Y) <= 1e-9  # batched products may round differently: confirm below
    for i in np.flatnonzero(hit)[:32]:
        checked = check_candidate(net, domain, outputs, X[i])
        if checked is not None:
            return checked
    return None


def repair(milp: MILP, t: int, solution: np.ndarray, deadline, threads) -> np.ndarray | None:
    """The most violating point of the candidate's activation pattern (binaries fixed; an LP)."""
    from ..backends.highs import solve_milp

    lower, upper = milp.col_lower.copy(), milp.col_upper.copy()
    fixed = np.round(solution[milp.integrality])
    lower[milp.integrality] = upper[milp.integrality] = fixed
    upper[t] = np.inf
    lp = MILP(**{**milp.__dict__, "col_lower": lower, "col_upper": upper,
                 "integrality": np.zeros_like(milp.integrality)})
    run = solve_milp(lp, deadline=deadline, threads=threads, on_interrupt="raise")
    return run.x if run.status == "optimal" else None
