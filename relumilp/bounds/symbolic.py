r"""Symbolic (CROWN / DeepPoly-style) bounds by linear back-substitution, in torch.

Every activation neuron with pre-activation bounds ``l <= x <= u`` gets two linear relaxations
``a_l x + c_l <= f(x) <= a_u x + c_u`` valid on ``[l, u]`` (:func:`linear_relaxation`). To bound a node
``t``, the identity ``t = I t`` is rewritten backwards through the graph: across an affine node
``y = sum_i W_i x_i + b`` the coefficient matrix ``Λ`` becomes ``Λ W_i`` on each input (``Λ b`` joins
the constant); across an activation, positive coefficients take the upper relaxation and negative ones
the lower (for an upper bound), so the linear form stays an over-estimate. At the input node the
linear form ``Λ x + c`` is maximised in closed form over the box: ``Λ⁺ u + Λ⁻ l + c``. Lower bounds
are ``-(upper bound of -t)``, so both are computed in one pass with ``Λ = [I; -I]``.

The relaxations (``f`` on ``[l, u]``, sound for every ``x`` in ``[l, u]``) are the activation
objects' own (:meth:`relumilp.activations.Activation.linear_relaxation`, with their maths).

Every symbolic bound is intersected with the interval bound of the same node, so it is never looser.

Two entry points share this code (:func:`_propagate` is the only propagation routine):

* :func:`mlp_bounds` -- differentiable bounds of a plain MLP given as torch ``(W, b)`` tensors (used by
  the training regularizers), batched over several input boxes, on any device and dtype;
* :func:`symbolic_bounds` -- bounds of every node of an IR DAG (multi-input affine nodes included), in
  float64. Back-substituted bounds are widened by a round-off margin ``ρ (1 + sum of |terms|)`` (the
  magnitude of all products that entered the bound), ``ρ = max(1e-12, 2 γ_K)`` for the ``K``
  roundings the graph can accumulate (:func:`roundoff_margin`); the interval steps are rounded
  outward; and the result is finally widened for the forward pass's own rounding
  (:func:`relumilp.bounds.rounding.widen`), so that it contains every float64 forward value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..activations import Activation, from_spec
from ..domain import InputDomain
from ..errors import RelumilpError
from ..ir import ActivationNode, AffineNode, InputNode, Network
from .base import Bounds
from .rounding import TINY, gamma, terms, widen

#: relative float64 round-off margin of the IR symbolic bounds (see module docstring)
ROUNDOFF = 1e-12


# -- the shared propagation engine ------------------------------------------------------------------


@dataclass
class _Op:
    """A lightweight graph node for :func:`_propagate` (built from the IR or from an MLP)."""

    name: str
    kind: str  # "input" | "affine" | "act"
    size: int
    inputs: tuple = ()
    weights: tuple = ()
    bias: object = None
    act: Activation | None = None  # the activation object of an "act" op


def affine_interval(op: _Op, lo: dict, hi: dict, outward: bool = False):
    """Interval image of an affine op from its inputs' (batched) bounds.

    With ``outward`` (float64 IR bounds), widened by the rounding of these sums and of the forward
    pass's (:func:`relumilp.bounds.rounding.sum_margin`), as the numpy interval pass does.
    """
    l = op.bias
    u = op.bias
    for src, W in zip(op.inputs, op.weights):
        pos, neg = torch.clamp(W, min=0.0), torch.clamp(W, max=0.0)
        l = l + lo[src] @ pos.T + hi[src] @ neg.T
        u = u + hi[src] @ pos.T + lo[src] @ neg.T
    if outward:
        size = op.bias.abs()
        for src, W in zip(op.inputs, op.weights):
            size = size + torch.maximum(lo[src].abs(), hi[src].abs()) @ W.abs().T
        n = sum(W.shape[1] for W in op.weights) + len(op.weights) + 1
        margin = 2.0 * gamma(n) * size + n * TINY
        l, u = torch.nextafter(l - margin, l.new_tensor(-math.inf)), torch.nextafter(u + margin, u.new_tensor(math.inf))
    return l, u


def back_substitute(ops: list[_Op], index: int, lo: dict, hi: dict, relax: dict, track_magnitude: bool = True,
                    coefficients=None, input_coefficients: bool = False):
    """Upper bounds over the input box of the linear forms ``coefficients @ t``, ``t = ops[index]``.

    ``coefficients`` has shape (B, R, m); the default ``[I; -I]`` gives upper bounds of ``[t; -t]``
    (shape (B, 2m)). Returns ``(bounds, mag)`` where ``mag`` is the sum of |terms| that entered each
    bound (for the round-off margin; None without ``track_magnitude``). With ``input_coefficients``,
    returns instead the forms' coefficients on the network input (B, R, n_in).
    """
    target = ops[index]
    if coefficients is None:
        m = target.size
        batch = next(iter(lo.values())).shape[0]
        ref = lo[ops[0].name]
        eye = torch.eye(m, dtype=ref.dtype, device=ref.device)
        coefficients = torch.cat([eye, -eye]).expand(batch, 2 * m, m)
    coef = {target.name: coefficients}
    const = coefficients.new_zeros(coefficients.shape[:2])
    mag = torch.zeros_like(const) if track_magnitude else None
    for op in ops[index::-1]:
        A = coef.pop(op.name, None)
        if A is None:
            continue
        if op.kind == "affine":
            const = const + A @ op.bias
            if track_magnitude:
                mag = mag + A.abs() @ op.bias.abs()
            for src, W in zip(op.inputs, op.weights):
                term = A @ W
                coef[src] = coef[src] + term if src in coef else term
        elif op.kind == "act":
            al, cl, au, cu = relax[op.name]
            pos, neg = torch.clamp(A, min=0.0), torch.clamp(A, max=0.0)
            new = pos * au.unsqueeze(1) + neg * al.unsqueeze(1)
            const = const + (pos * cu.unsqueeze(1) + neg * cl.unsqueeze(1)).sum(-1)
            if track_magnitude:
                mag = mag + (pos * cu.abs().unsqueeze(1) - neg * cl.abs().unsqueeze(1)).sum(-1)
            src = op.inputs[0]
            coef[src] = coef[src] + new if src in coef else new
        else:  # the input node: maximise over the box
            if input_coefficients:
                return A
            l, u = lo[op.name], hi[op.name]
            pos, neg = torch.clamp(A, min=0.0), torch.clamp(A, max=0.0)
            result = const + (pos @ u.unsqueeze(-1) + neg @ l.unsqueeze(-1)).squeeze(-1)
            if track_magnitude:
                scale = torch.maximum(l.abs(), u.abs())
                mag = mag + (A.abs() @ scale.unsqueeze(-1)).squeeze(-1)
            return result, mag
    raise RelumilpError(f"node {target.name!r} does not depend on the network input")


def _propagate(
    ops: list[_Op],
    lower,
    upper,
    symbolic: bool = True,
    start: dict | None = None,
    roundoff: float = 0.0,
):
    """Bounds of every op over the box ``[lower, upper]`` (batched, (B, n_in)).

    Interval bounds everywhere; with ``symbolic`` each affine node not fed by the input alone is also
    bounded by back-substitution (widened by ``roundoff * (1 + sum |terms|)``) and intersected with the
    interval bound. ``start`` maps node names to ``(lower, upper)`` to intersect with (tighter bounds
    from elsewhere). Returns ``(lo, hi)`` dicts of (B, size) tensors.
    """
    lo: dict = {}
    hi: dict = {}
    relax: dict = {}
    kinds = {op.name: op.kind for op in ops}
    for index, op in enumerate(ops):
        if op.kind == "input":
            l, u = lower, upper
        elif op.kind == "affine":
            l, u = affine_interval(op, lo, hi, outward=roundoff > 0)
            reads_input_only = all(kinds[src] == "input" for src in op.inputs)
            if symbolic and not reads_input_only:
                bound, mag = back_substitute(ops, index, lo, hi, relax, roundoff > 0)
                m = op.size
                su, sl = bound[:, :m], -bound[:, m:]
                if roundoff > 0:
                    su = su + roundoff * (1.0 + mag[:, :m])
                    sl = sl - roundoff * (1.0 + mag[:, m:])
                nl, nu = torch.maximum(l, sl), torch.minimum(u, su)
                # round-off can make the intersection cross (e.g. a constant node): keep interval there
                crossed = nl > nu
                l, u = torch.where(crossed, l, nl), torch.where(crossed, u, nu)
        else:
            l, u = op.act.interval_torch(lo[op.inputs[0]], hi[op.inputs[0]])
        if start is not None and op.name in start:
            sl, su = start[op.name]
            nl, nu = torch.maximum(l, sl), torch.minimum(u, su)
            # never let an intersection cross over (numerically): keep the looser one there
            crossed = nl > nu
            l, u = torch.where(crossed, torch.minimum(l, sl), nl), torch.where(crossed, torch.maximum(u, su), nu)
        lo[op.name], hi[op.name] = l, u
        if op.kind == "act":
            src = op.inputs[0]
            relax[op.name] = op.act.linear_relaxation(lo[src], hi[src])
    return lo, hi


# -- differentiable bounds of a torch MLP --------------------------------------------------------------


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
    ops = [_Op("input", "input", lower.shape[-1])]
    for k, (W, b) in enumerate(layers):
        ops.append(_Op(f"linear{k}", "affine", W.shape[0], (ops[-1].name,), (W,), b))
        if k < len(layers) - 1:
            act = activations[k]
            if not isinstance(act, Activation):
                act = from_spec(dict(zip(("kind", "alpha", "cap"), act)))
            ops.append(_Op(f"act{k}", "act", W.shape[0], (f"linear{k}",), act=act))
    lo, hi = _propagate(ops, lower, upper, symbolic=method == "symbolic")
    out = []
    for k in range(len(layers)):
        l, u = lo[f"linear{k}"], hi[f"linear{k}"]
        out.append((l[0], u[0]) if single else (l, u))
    return out


# -- bounds of an IR network ----------------------------------------------------------------------


def network_ops(net: Network, dtype=torch.float64, device=None) -> list[_Op]:
    """The IR as :class:`_Op` list (topological order) with torch parameters."""
    ops = []
    t = lambda a: torch.tensor(np.array(a, dtype=np.float64), dtype=dtype, device=device)
    for node in net.order:
        if isinstance(node, InputNode):
            ops.append(_Op(node.name, "input", node.size))
        elif isinstance(node, AffineNode):
            ops.append(_Op(node.name, "affine", node.size, tuple(node.inputs), tuple(t(w) for w in node.weights), t(node.bias)))
        else:
            assert isinstance(node, ActivationNode)
            ops.append(_Op(node.name, "act", node.size, tuple(node.inputs), act=node.activation))
    return ops


def symbolic_bounds(net: Network, domain: InputDomain, start: Bounds | None = None, device=None) -> Bounds:
    """Symbolic (back-substitution) bounds of every node of ``net`` over the box of ``domain``.

    With ``start``, every node is intersected with the bounds already there (and those tighter bounds
    feed the relaxations downstream). Computed in float64 on ``device`` (default CPU) and widened by
    the documented round-off margin.
    """
    domain.check_size(net.input_size)
    ops = network_ops(net, device=device)
    t = lambda a: torch.tensor(np.array(a, dtype=np.float64), dtype=torch.float64, device=device).unsqueeze(0)
    start_t = None
    if start is not None:
        start_t = {name: (t(start.lower[name]), t(start.upper[name])) for name in start.lower if name in net.graph}
    with torch.no_grad():
        lo, hi = _propagate(ops, t(domain.lower), t(domain.upper), True, start_t, roundoff=roundoff_margin(net))
    lower = {name: lo[name][0].cpu().numpy().copy() for name in lo}
    upper = {name: hi[name][0].cpu().numpy().copy() for name in hi}
    lower, upper = widen(net, lower, upper)
    return Bounds(lower, upper, "symbolic")


def roundoff_margin(net: Network) -> float:
    """The relative margin put on back-substituted bounds of ``net``: :data:`ROUNDOFF`, or ``2 γ_K``
    for the ``K`` roundings a bound can accumulate across the whole graph when that is larger."""
    return max(ROUNDOFF, 2.0 * gamma(sum(terms(node) for node in net.affines)))
