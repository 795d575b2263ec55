r"""Symbolic (CROWN / DeepPoly-style) bounds: the two entry points of the bound engine.

Every activation neuron with pre-activation bounds ``l <= x <= u`` gets two linear relaxations
``a_l x + c_l <= f(x) <= a_u x + c_u`` valid on ``[l, u]`` and an exact interval image; both are
methods of its activation class (:meth:`relumilp.activations.Activation.linear_relaxation`, with each
kind's maths in its docstring). The propagation that uses them -- back-substitution through the graph,
intersected with interval arithmetic, batched over input boxes -- is the bound engine,
:mod:`relumilp.bounds.engine` (its docstring describes the method and the round-off margins).

Two entry points run the engine:

* :func:`mlp_bounds` -- differentiable bounds of a plain MLP given as torch ``(W, b)`` tensors (used by
  the training regularizers), batched over several input boxes, on any device and dtype, without
  round-off margins (not a certificate);
* :func:`symbolic_bounds` -- sound float64 bounds of every node of an IR DAG (multi-input affine nodes
  included) over one box, containing every float64 forward value.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..domain import InputDomain
from ..errors import RelumilpError
from ..activations import Activation
from ..ir import Network
from ..limits import Deadline
from .base import Bounds, intersect


def mlp_bounds(
    layers: Sequence[tuple[torch.Tensor, torch.Tensor]],
    activations: Sequence[Activation | tuple[str, float, float]],
    lower: torch.Tensor,
    upper: torch.Tensor,
    method: str = "symbolic",
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pre-activation bounds of every affine layer of an MLP (last entry: the output).

    ``layers`` is ``[(W, b), ...]`` with ``W`` of shape (out, in); ``activations`` one
    :class:`~relumilp.activations.Activation` per hidden layer (or a format-1 ``(kind, alpha, cap)``
    tuple); ``lower`` and
    ``upper`` have shape (n_in,) or (batch, n_in). Each returned pair has shape (n_out,) or
    (batch, n_out), is differentiable w.r.t. the weights and biases, and lives on their device.
    ``method`` is ``"interval"`` or ``"symbolic"`` (back-substitution intersected with interval).
    """
    if method not in ("interval", "symbolic"):
        raise RelumilpError(f"mlp_bounds method must be 'interval' or 'symbolic', got {method!r}")
    if len(activations) != len(layers) - 1:
        raise RelumilpError(f"{len(layers)} layers need {len(layers) - 1} activations, got {len(activations)}")
    single = lower.dim() == 1
    W0 = layers[0][0]
    lower = lower.to(device=W0.device, dtype=W0.dtype)
    upper = upper.to(device=W0.device, dtype=W0.dtype)
    if single:
        lower, upper = lower.unsqueeze(0), upper.unsqueeze(0)
    from .engine import BoundEngine

    engine = BoundEngine.for_mlp(layers, activations, lower.shape[-1])
    lo, hi = engine.propagate(lower, upper, refine="all" if method == "symbolic" else {})
    out = []
    for k in range(len(layers)):
        l, u = lo[f"linear{k}"], hi[f"linear{k}"]
        out.append((l[0], u[0]) if single else (l, u))
    return out


# -- bounds of an IR network ----------------------------------------------------------------------


def symbolic_bounds(net: Network, domain: InputDomain, start: Bounds | None = None, device=None,
                    deadline: Deadline | None = None, optimise: dict | None = None, refine: str = "all") -> Bounds:
    """Symbolic (back-substitution) bounds of every node of ``net`` over the box of ``domain``.

    With ``start``, every node is intersected with the bounds already there (and those tighter bounds
    feed the relaxations downstream); with ``optimise`` the widened result is intersected with ``start``
    once more (both contain the float64 forward values, so the result is never looser than ``start``;
    for plain symbolic bounds over interval ones the widening is negligible). Computed
    in float64 on ``device`` (default CPU) and widened by the documented round-off margin. Once
    ``deadline`` has passed, the nodes not yet back-substituted keep their interval bounds (intersected
    with ``start``) and the result has ``complete = False``. ``optimise``: the engine's optimised
    slopes (:func:`alpha_bounds`). ``refine``: the engine's plain back-substitution policy (``"output"``
    when ``start`` already holds symbolic bounds and only the optimised pass is wanted).
    """
    from .engine import BoundEngine

    domain.check_size(net.input_size)
    engine = BoundEngine.for_network(net, device=device)
    start_b = None
    if start is not None:
        start_b = {name: (start.lower[name][None], start.upper[name][None]) for name in start.lower if name in net.graph}
    result = engine.bounds(domain.lower[None], domain.upper[None], start_b, refine=refine, optimise=optimise,
                           deadline=deadline)
    lower = {name: v[0].copy() for name, v in result.lower.items()}
    upper = {name: v[0].copy() for name, v in result.upper.items()}
    if start is not None and optimise is not None:
        for name in lower:
            if name in start.lower:
                lower[name], upper[name] = intersect(start.lower[name], start.upper[name], lower[name], upper[name])
    bounds = Bounds(lower, upper, "symbolic" if optimise is None else "alpha")
    bounds.complete = result.complete
    return bounds


#: default projected Adam steps and step size of :func:`alpha_bounds` (per layer)
ALPHA_STEPS = 20
ALPHA_LR = 0.25


def alpha_bounds(net: Network, domain: InputDomain, start: Bounds | None = None, device=None,
                 deadline: Deadline | None = None, steps: int = ALPHA_STEPS, lr: float = ALPHA_LR,
                 nodes=None) -> Bounds:
    r"""Optimised-relaxation (alpha-CROWN, Xu et al. 2021) bounds of every node over the box of ``domain``.

    Layer by layer in topological order, every affine node that feeds an activation (and the output)
    gets its bounds from back-substitution whose lower lines are optimised: each unstable neuron of an
    earlier activation with a :meth:`~relumilp.activations.Activation.lower_family` (ReLU:
    ``s x`` with ``s = alpha + t (1 - alpha)``, ``t`` in ``[0, 1]``) gets its own ``t`` per bounded
    form (the lower and upper bound of each neuron still unstable), ``steps`` projected Adam steps
    (``lr``) on the bounds, batched over the layer's neurons. Later layers use the tightened earlier
    bounds. Each bound is evaluated again soundly at the chosen ``t`` (every ``t`` in ``[0, 1]`` is a
    valid relaxation, so the gradient pass is never trusted), with the engine's round-off margins,
    intersected with ``start`` (the symbolic bounds of the chain) and widened for the float64 forward
    pass: sound, and never looser than ``start``. Once ``deadline`` has passed the remaining nodes keep
    their ``start`` bounds and ``complete = False``. With ``start`` (the symbolic bounds, as
    :func:`~relumilp.bounds.compute_bounds` gives), the plain back-substitution is not repeated: only the
    unstable neurons' optimised bounds are computed (the optimisation starts from the plain relaxation
    and keeps the best bound it sees), which halves the time through verivital's max-pool trees.
    ``nodes``: the affine nodes whose bounds are optimised (default every one); the others keep their
    bounds (the output's are always optimised).
    """
    if int(steps) < 0 or not float(lr) > 0:
        raise RelumilpError(f"alpha bounds need steps >= 0 and lr > 0, got steps={steps!r}, lr={lr!r}")
    if nodes is not None:
        nodes = tuple(nodes)
        unknown = sorted(set(nodes) - {node.name for node in net.affines})
        if unknown:
            raise RelumilpError(f"alpha bounds: no affine node named {', '.join(map(repr, unknown))} in {net.name!r}")
    return symbolic_bounds(net, domain, start, device, deadline,
                           optimise={"nodes": "all" if nodes is None else nodes, "steps": int(steps),
                                     "lr": float(lr)},
                           refine="all" if start is None else "output")
