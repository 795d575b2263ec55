r"""Counterexamples: the sampling attack, the exact re-check of a candidate, and the LP repair.

* **Falsification by sampling** (:func:`sampling_attack`). The box centre, its corners (up to 10
  inputs) and ``attack_samples`` uniform points are pushed through :meth:`Network.forward`; a point in
  an unsafe set answers ``violated`` at once (``attack_samples=0`` switches this off). Branch and bound
  also tries the centre of every box (:func:`first_counterexample`).
* **Falsification by gradient** (:func:`gradient_attack`). Projected signed-gradient descent (PGD,
  Madry et al. 2018) on the region's margins ``min_j max_{r in j} g_r(x)`` (``<= 0``: in unsafe set
  ``j``) from the centre and random points of the box, through a float64 torch forward pass of the
  IR; every end point goes through the re-check below. On high-dimensional inputs random points almost
  never land in a small unsafe set that the gradient walks into (oval21's CIFAR counterexamples).
* **Re-check** (:func:`check_candidate`). A candidate's input is clipped into the box and the float64
  forward pass of the *original* network (one point, :meth:`Network.forward`) must satisfy some unsafe
  conjunction exactly (and the input rows ``A x <= b`` exactly); for a network with smooth kinds, so must
  every value of the point's interval image (:func:`_robustly_inside`). Nothing else is ever reported
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
    for out in outputs:
        if out.contains(y)[0] and (not net.has_smooth or _robustly_inside(net, x, out)):
            return x, y
    return None


def _robustly_inside(net: Network, x: np.ndarray, out) -> bool:
    """Whether every value the interval image of the single point ``x`` allows lies in ``out``. That image
    contains both the float64 forward value and the exact one; for piecewise-linear networks they differ by
    a few ulps, but a smooth network's spelling of a product, ``((a + b)^2 - (a - b)^2) / 4``, rounds by about
    ``2^-52 (a^2 + b^2)``, which is the whole product when ``|a| / |b|`` nears 1e16: a point is a
    counterexample of the network only if it is one whichever of those values the network has."""
    from ..bounds.interval import interval_bounds

    bounds = interval_bounds(net, InputDomain(x, x))
    low, high = bounds.lower[net.output], bounds.upper[net.output]
    if out.num_rows == 0:
        return True
    worst = np.clip(out.C, 0, None) @ high + np.clip(out.C, None, 0) @ low - out.d
    return bool(np.all(worst <= 0.0))


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


def torch_forward(net: Network, device=None):
    """``x -> net(x)`` for a (B, n) float64 torch tensor, differentiable: the IR's affine maps (dense or
    sparse, as the bound engine holds them) and its activations' ``apply_torch``. Not the reference
    forward pass: what it finds is re-checked by :meth:`Network.forward`."""
    from ..bounds.engine import network_ops
    from ..matrices import rmatmul

    ops = network_ops(net, device=device)

    def forward(x):
        values = {}
        for op in ops:
            if op.kind == "input":
                values[op.name] = x
            elif op.kind == "affine":
                values[op.name] = sum(rmatmul(values[src], w) for src, w in zip(op.inputs, op.weights)) + op.bias
            else:
                values[op.name] = op.act.apply_torch(values[op.inputs[0]])
        return values[net.output]

    return forward


#: restarts (the centre and random points) and signed-gradient steps of :func:`gradient_attack` (oval21
#: ``cifar_base`` img1598, a counterexample 7e-5 deep: found with 32 restarts, not with 16 even at 200 steps)
ATTACK_RESTARTS = 32
ATTACK_STEPS = 60


def gradient_attack(net: Network, domain: InputDomain, outputs, rng, restarts: int = ATTACK_RESTARTS,
                    steps: int = ATTACK_STEPS, deadline=None) -> tuple | None:
    """A counterexample found by PGD on the margins of ``outputs`` over the box of ``domain`` (module
    docstring), confirmed by :func:`first_counterexample`; None if none is found (or at ``deadline``).

    The centre descends ``L(x) = min_j max_{r in j} (C_r y - d_r)``, start ``k`` the margin of set ``k``
    (mod the number of sets, targeted), with steps ``2.5 w / steps`` along the gradient's sign (``w`` the
    box's half-widths), projected back into the box; the best point of each start and its last one are
    checked. Input rows ``A x <= b`` are left to the re-check."""
    import torch

    from ..bounds.engine import torch_threads

    if restarts <= 0 or steps <= 0 or not outputs:
        return None
    lower = torch.as_tensor(domain.lower, dtype=torch.float64)
    upper = torch.as_tensor(domain.upper, dtype=torch.float64)
    half = (upper - lower) / 2
    if not bool((half > 0).any()):
        return None
    starts = [(domain.lower + domain.upper) / 2]
    if restarts > 1:
        starts.append(domain.sample(restarts - 1, rng))
    x = torch.as_tensor(np.vstack(starts), dtype=torch.float64)
    rows = [(torch.as_tensor(out.C, dtype=torch.float64), torch.as_tensor(out.d, dtype=torch.float64))
            for out in outputs if out.num_rows]
    if len(rows) < len(outputs):  # a conjunction without rows: every output is unsafe
        return first_counterexample(net, domain, outputs, x[:1].numpy())
    step = 2.5 * half / steps
    target = (torch.arange(x.shape[0]) - 1) % len(rows)  # start k > 0: set k - 1 mod J
    target[0] = -1  # the centre: the nearest set
    with torch_threads(1):
        forward = torch_forward(net)
        best_x, best = x.clone(), torch.full((x.shape[0],), torch.inf, dtype=torch.float64)
        for _ in range(steps):
            if deadline is not None and deadline.expired():
                break
            x.requires_grad_(True)
            y = forward(x)
            each = torch.stack([(y @ C.T - d).max(dim=1).values for C, d in rows], dim=1)  # (starts, J)
            # targeted PGD finds what the min over sets, stuck on one set's gradient, misses
            loss = torch.where(target >= 0, each.gather(1, target.clamp(min=0)[:, None])[:, 0], each.min(dim=1).values)
            grad, = torch.autograd.grad(loss.sum(), x)
            with torch.no_grad():
                better = loss.detach() < best
                best = torch.where(better, loss.detach(), best)
                best_x[better] = x.detach()[better]
                if bool((best <= 0).any()):
                    break
                x = torch.minimum(torch.maximum(x.detach() - step * torch.sign(grad), lower), upper)
    candidates = torch.cat([best_x[torch.argsort(best)], x.detach()]).numpy()
    return first_counterexample(net, domain, outputs, candidates)


def first_counterexample(net: Network, domain: InputDomain, outputs, X: np.ndarray, Y: np.ndarray | None = None
                         ) -> tuple | None:
    """The first row of ``X`` that is a counterexample, confirmed by the single-point forward pass.
    ``Y``: the batched outputs ``net(X)`` when the caller has them (rows of ``X`` outside the region are
    skipped either way)."""
    inside = domain.contains(X, tol=0.0)
    X = X[inside]
    if X.shape[0] == 0:
        return None
    Y = net.forward(X) if Y is None else Y[inside]
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
