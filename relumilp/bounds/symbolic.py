r"""Symbolic (CROWN / DeepPoly-style) bounds: the activations' linear relaxations and the two entry points.

Every activation neuron with pre-activation bounds ``l <= x <= u`` gets two linear relaxations
``a_l x + c_l <= f(x) <= a_u x + c_u`` valid on ``[l, u]`` (:func:`linear_relaxation`) and an exact
interval image (:func:`activation_interval`). The propagation that uses them -- back-substitution
through the graph, intersected with interval arithmetic, batched over input boxes -- is the bound
engine, :mod:`relumilp.bounds.engine` (its docstring describes the method and the round-off margins).

Relaxations (``f`` on ``[l, u]``; all are sound for every ``x`` in ``[l, u]``):

* ReLU / LeakyReLU ``max(x, αx)``, ``α < 1`` (ReLU: ``α = 0``; ``α`` may be negative, ``f`` is then
  still convex): ``l >= 0`` identity, ``u <= 0`` ``αx``; otherwise the upper bound is the chord
  through ``(l, αl)`` and ``(u, u)`` and the lower bound is ``s x`` with ``s = 1`` when ``u >= -l``
  else ``s = α`` (any ``s`` in ``[α, 1]`` is a subgradient at 0; this choice minimises the area).
* Clipped ReLU ``min(max(x, 0), c)``: ``u <= 0`` zero; ``l >= c`` the constant ``c``; ``0 <= l, u <= c``
  identity; ``l < 0 < u <= c`` as ReLU; ``0 <= l < c < u`` (concave part) lower = chord through
  ``(l, l)`` and ``(u, c)``, upper = ``x`` if ``u - c <= c - l`` else ``c``; ``l < 0``, ``u > c`` (both
  kinks) upper = line through ``(l, 0)`` and ``(c, c)`` when ``u - l < 2 (c - l)`` else ``c``, lower =
  line through ``(0, 0)`` and ``(u, c)`` when ``u >= -l`` else ``0`` (each choice is the one of
  smaller area between the line and ``f``).
* identity: exact.

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
from ..ir import Network
from .base import Bounds


# -- element-wise relaxations -----------------------------------------------------------------------


def activation_interval(kind: str, alpha: float, cap: float, l, u):
    """Exact interval image of an activation over ``[l, u]`` (torch; extremes at ends or breakpoints)."""
    if kind == "identity":
        return l, u
    f = lambda x: _apply(kind, alpha, cap, x)
    candidates = [f(l), f(u)]
    points = (0.0,) if kind != "clipped_relu" else (0.0, cap)
    for p in points:
        candidates.append(f(torch.clamp(torch.full_like(l, p), min=l, max=u)))
    stacked = torch.stack(candidates)
    return stacked.min(dim=0).values, stacked.max(dim=0).values


def _apply(kind: str, alpha: float, cap: float, x):
    if kind == "relu":
        return torch.clamp(x, min=0.0)
    if kind == "leaky_relu":
        return torch.where(x >= 0, x, alpha * x)
    if kind == "clipped_relu":
        return torch.clamp(x, min=0.0, max=cap)
    return x


def linear_relaxation(kind: str, alpha: float, cap: float, l, u):
    """``(a_l, c_l, a_u, c_u)`` with ``a_l x + c_l <= f(x) <= a_u x + c_u`` for all ``x`` in ``[l, u]``.

    Element-wise over tensors ``l <= u`` of any shape; differentiable in ``l`` and ``u`` (the choices
    between candidate lines are piecewise constant). Denominators are guarded so that no NaN reaches
    the gradients of unselected branches.
    """
    one, zero = torch.ones_like(l), torch.zeros_like(l)
    if kind == "identity":
        return one, zero, one, zero
    if kind in ("relu", "leaky_relu"):
        a = float(alpha) if kind == "leaky_relu" else 0.0
        active = l >= 0
        inactive = (u <= 0) & ~active
        cross = ~(active | inactive)
        width = torch.where(cross, u - l, one)
        chord = torch.where(cross, (u - a * l) / width, one)
        au = torch.where(active, one, torch.where(inactive, a * one, chord))
        cu = torch.where(cross, u - chord * u, zero)
        al = torch.where(active | (cross & (u >= -l)), one, a * one)
        return al, zero, au, cu
    if kind != "clipped_relu":
        raise RelumilpError(f"no linear relaxation for activation {kind!r}")
    c = float(cap)
    off = u <= 0
    sat = (l >= c) & ~off
    ident = (l >= 0) & (u <= c) & ~off & ~sat
    relu_part = (l < 0) & (u > 0) & (u <= c)
    concave = (l >= 0) & (l < c) & (u > c)
    both = (l < 0) & (u > c)
    # ReLU-like part: l < 0 < u <= c
    w0 = torch.where(relu_part, u - l, one)
    chord0 = torch.where(relu_part, u / w0, zero)
    # concave part: 0 <= l < c < u
    wc = torch.where(concave, u - l, one)
    chord_c = torch.where(concave, (c - l) / wc, zero)
    upper_is_x = (u - c) <= (c - l)
    # both kinks: l < 0, u > c
    wb = torch.where(both, c - l, one)
    up_slope_b = torch.where(both, c / wb, zero)
    use_up_line = (u - l) < 2.0 * (c - l)
    ub = torch.where(both, u, one)
    lo_slope_b = torch.where(both, c / ub, zero)
    use_lo_line = u >= -l

    al = torch.where(ident, one, zero)
    al = torch.where(relu_part & (u >= -l), one, al)
    al = torch.where(concave, chord_c, al)
    al = torch.where(both & use_lo_line, lo_slope_b, al)
    cl = torch.where(sat, c * one, zero)
    cl = torch.where(concave, l - chord_c * l, cl)

    au = torch.where(ident, one, zero)
    au = torch.where(relu_part, chord0, au)
    au = torch.where(concave & upper_is_x, one, au)
    au = torch.where(both & use_up_line, up_slope_b, au)
    cu = torch.where(sat, c * one, zero)
    cu = torch.where(relu_part, -chord0 * l, cu)
    cu = torch.where(concave & ~upper_is_x, c * one, cu)
    cu = torch.where(both & use_up_line, -up_slope_b * l, cu)
    cu = torch.where(both & ~use_up_line, c * one, cu)
    return al, cl, au, cu


# -- differentiable bounds of a torch MLP --------------------------------------------------------------


def mlp_bounds(
    layers: Sequence[tuple[torch.Tensor, torch.Tensor]],
    activations: Sequence[tuple[str, float, float]],
    lower: torch.Tensor,
    upper: torch.Tensor,
    method: str = "symbolic",
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pre-activation bounds of every affine layer of an MLP (last entry: the output).

    ``layers`` is ``[(W, b), ...]`` with ``W`` of shape (out, in); ``activations`` one ``(kind, alpha,
    cap)`` per hidden layer (``relu``, ``leaky_relu``, ``clipped_relu``, ``identity``); ``lower`` and
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


def symbolic_bounds(net: Network, domain: InputDomain, start: Bounds | None = None, device=None) -> Bounds:
    """Symbolic (back-substitution) bounds of every node of ``net`` over the box of ``domain``.

    With ``start``, every node is intersected with the bounds already there (and those tighter bounds
    feed the relaxations downstream). Computed in float64 on ``device`` (default CPU) and widened by
    the documented round-off margin.
    """
    from .engine import BoundEngine

    domain.check_size(net.input_size)
    engine = BoundEngine.for_network(net, device=device)
    start_b = None
    if start is not None:
        start_b = {name: (start.lower[name][None], start.upper[name][None]) for name in start.lower if name in net.graph}
    lower, upper = engine.bounds(domain.lower[None], domain.upper[None], start_b, refine="all")
    return Bounds({name: v[0].copy() for name, v in lower.items()}, {name: v[0].copy() for name, v in upper.items()},
                  "symbolic")

