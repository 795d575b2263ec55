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
from .base import Bounds


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
                    deadline: Deadline | None = None) -> Bounds:
    """Symbolic (back-substitution) bounds of every node of ``net`` over the box of ``domain``.

    With ``start``, every node is intersected with the bounds already there (and those tighter bounds
    feed the relaxations downstream). Computed in float64 on ``device`` (default CPU) and widened by
    the documented round-off margin. Once ``deadline`` has passed, the nodes not yet back-substituted
    keep their interval bounds (intersected with ``start``) and the result has ``complete = False``.
    """
    from .engine import BoundEngine

    domain.check_size(net.input_size)
    engine = BoundEngine.for_network(net, device=device)
    start_b = None
    if start is not None:
        start_b = {name: (start.lower[name][None], start.upper[name][None]) for name in start.lower if name in net.graph}
    result = engine.bounds(domain.lower[None], domain.upper[None], start_b, refine="all", deadline=deadline)
    bounds = Bounds({name: v[0].copy() for name, v in result.lower.items()},
                    {name: v[0].copy() for name, v in result.upper.items()}, "symbolic")
    bounds.complete = result.complete
    return bounds

