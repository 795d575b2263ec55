r"""The bound engine: batched symbolic (CROWN / DeepPoly-style) bounds of a network over many input boxes.

One propagation routine serves every user of symbolic bounds:

* :func:`relumilp.bounds.symbolic.symbolic_bounds` -- ``compute_bounds(..., "symbolic")``, one box;
* the branch and bound of :mod:`relumilp.bab` (``optimize`` and ``verify``) -- batches of nodes (input
  boxes with neuron splits), each starting from its parent's bounds, refining only the neurons still
  undecided, with optimised slopes for neuron branching;
* :func:`relumilp.bounds.symbolic.mlp_bounds` -- the training losses: differentiable, any device and
  dtype, no round-off margins (not a certificate).

**Method.** Nodes are visited in topological order. An affine node first gets its interval image (rounded
outward in sound mode), intersected with the box's start bounds (e.g. its parent's). Then selected
neurons are bounded by back-substitution (:func:`back_substitute`): the identity ``t = I t`` is rewritten
backwards through the graph -- across an affine node ``Λ`` becomes ``Λ W_i`` on each input, across an
activation positive coefficients take the upper linear relaxation and negative ones the lower -- and
the linear form in the input is maximised in closed form over the box. Lower bounds are ``-(upper bound
of -t)``: both come from one pass with ``Λ = [I; -I]``. The result is intersected with the interval
bound (:func:`relumilp.bounds.base.intersect`: where round-off would make them cross, the looser bound
is kept). An activation node gets the exact interval image of its input's bounds and its linear
relaxation (the only two calls into the relaxation formulas of :mod:`relumilp.bounds.symbolic`).

**Which neurons are refined** (``refine``): ``"all"`` -- every neuron of every affine node not fed by the
input alone (the input-only ones are exact by interval arithmetic); ``"undecided"`` -- per box, only the
neurons of nodes that feed an activation whose phase the current bounds leave undecided (a neuron
fixed on a constant piece needs no bound), plus every output neuron; the selected neurons are gathered
per box and padded to the batch's largest count (padding rows are valid bounds too). Deep in a branch
and bound tree most neurons are stable, so this is several times cheaper than ``"all"``. ``"output"`` --
only the output: every other node keeps its interval image intersected with its start bounds (a
parent's bounds hold on its children), split neurons clamped; a node's splits then reach the output
through their clamped relaxations and the split multipliers alone. On wide convolutional networks the
intermediate back-substitutions are most of a node's cost (oval21 ``cifar_base``: 85%), so branch and
bound over neurons of a large network bounds several times more nodes this way (beta-CROWN keeps
intermediate bounds fixed likewise: Wang et al. 2021). A dict ``{node name: (B, size) bool mask}``
selects neurons explicitly.

**Neuron splits** (``splits``, for branch and bound over neurons): ``{activation name: (B, size) int}``
with ``+1`` -- the neuron is fixed active in that box (its pre-activation ``x >= 0``), ``-1`` -- fixed
inactive (``x <= 0``), ``0`` -- free. The pre-activation bounds are clamped at the kink at 0, so the
relaxation becomes the exact piece. A box whose clamped bounds cross (e.g. active but ``x <= u < 0``)
contains no input satisfying its splits: it is reported ``empty`` (its bounds there are set to the
kink, vacuously sound); so is a box whose split multipliers (below) prove its splits contradictory. The relaxation inside the propagation is exact; the widened bounds returned by
:meth:`BoundEngine.bounds` may dip past the kink by the forward pass's rounding envelope (they bound the
computed values). Clamping alone forgets the split everywhere else; with ``optimise``, the output's
bound also carries each split ``s x >= 0`` back to the input through an optimised multiplier
(beta-CROWN, :meth:`BoundEngine._optimised_bound`).

**Optimised slopes** (``optimise``, alpha-CROWN, Xu et al. 2021): the lower line of a neuron that
crosses a kink is not unique -- for ReLU any ``s x`` with ``s`` in ``[alpha, 1]`` lies below ``f``. Kinds
that expose such a family (:meth:`~relumilp.activations.Activation.lower_family`, a parameter ``t`` in
``[0, 1]`` per neuron, every value valid) get ``t`` optimised for the output's bounds: one ``t`` per box,
per bounded form (``sense``: the output's ``"lower"``, ``"upper"`` or ``"both"``) and per neuron,
``steps`` projected Adam steps (``lr``) on the sum of the bounds, starting from ``slopes`` (e.g. the
parent node's) or from the plain relaxation, keeping per form the best ``t`` seen. ``rows`` ((B, m) bool, optional)
restricts this to the output rows whose bound matters per box (e.g. those a branch-and-bound parent has
not proven yet; cost is linear in the number of forms): the others keep their plain bound, and their
parameters come back unchanged from ``slopes``. With
``"nodes": "all"`` (the ``alpha`` bound method, :func:`relumilp.bounds.symbolic.alpha_bounds`) every
affine node that feeds an activation (with a collection of node names, each named one) gets the same
treatment, in topological order, for its lower and upper bound of each neuron still unstable (batched over the node's neurons, in chunks), so later nodes
are relaxed with the tightened bounds; otherwise the intermediate nodes keep their plain bounds. The gradient pass is never trusted: the bound is evaluated again in float64 at the
chosen ``t`` (clamped to ``[0, 1]``) with the same margins as every back-substituted bound, then
intersected with the plain one, so it is sound and never looser. The steps themselves therefore run in
float32 where the network's magnitudes allow (:meth:`BoundEngine._search_ops`: oval21 ``cifar_wide``
img19 bounded 45% more branch-and-bound nodes per second, with the sparse products' own backward). The result carries the parameters
(``slopes``, warm starts) and per-neuron ``scores``: ``sum over forms of A+ gap_up + |A-| gap_low``,
``A`` the neuron's coefficient in the optimised bound and the gaps the largest distances of its upper
/ lower line from ``f`` on ``[l, u]`` (what splitting the neuron could recover, BaBSR-style: Bunel et
al. 2020).

**Soundness** (sound mode, IR networks): interval steps are rounded outward (:func:`affine_interval`,
``outward=True``); back-substituted bounds are widened by ``ρ (1 + sum of |terms|)``, the magnitude of
all products that entered the bound, with ``ρ =`` :func:`roundoff_margin`; and :meth:`BoundEngine.bounds`
finally widens the result for the forward pass's own rounding
(:func:`relumilp.bounds.rounding.widen`), so it contains every float64 forward value.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from ..activations import Activation, from_spec
from ..errors import RelumilpError
from ..ir import ActivationNode, AffineNode, InputNode, Network
from ..limits import Deadline
from ..matrices import DENSE_LIMIT, abs_values, lmatmul, signed_parts, to_torch
from .base import intersect, phases
from .interval import affine_image
from .rounding import gamma, terms, widen

#: relative float64 round-off margin of back-substituted IR bounds (see :func:`roundoff_margin`)
ROUNDOFF = 1e-12
#: the named policies of ``refine`` (module docstring)
REFINE_POLICIES = ("all", "undecided", "output")
#: key of the split multipliers among the optimised parameters: ``(BETA, activation name)``
BETA = "beta"
#: Adam step of the split multipliers (their scale is the output's, not [0, 1] like the slopes'; 0.5 beat 0.1 and
#: 0 -- no multipliers -- on the hard 784-input instances of benchmarks/high_dim.py)
BETA_LR = 0.5
#: the largest magnitude (weights, biases, bounds) at which the slope search and the branching estimates run
#: in float32 (:meth:`BoundEngine._search_ops`); beyond it, and with non-finite bounds, they stay in float64
SEARCH_FLOAT32_RANGE = 1e15
#: the most entries one back-substitution's coefficient block ``Λ`` (B, rows, width) may hold; wider
#: nodes are refined in chunks of neurons (2^24 entries = 128 MiB in float64)
COEFFICIENT_BUDGET = 2**24


@contextmanager
def torch_threads(count: int):
    """Run the block with ``count`` torch intra-op threads, then restore the caller's setting.

    The engine's products are many and small: one thread is faster than torch's default (one per core)
    and does not spin on a shared machine (ACAS Xu 1_1 symbolic bounds on a loaded 2-core machine:
    2.19 s of CPU with the default, 0.03 s with one thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def roundoff_margin(net: Network) -> float:
    """The relative margin put on back-substituted bounds of ``net``: :data:`ROUNDOFF`, or ``2 γ_K``
    for the ``K`` roundings a bound can accumulate across the whole graph when that is larger."""
    return max(ROUNDOFF, 2.0 * gamma(sum(terms(node) for node in net.affines)))


@dataclass
class _Op:
    """A lightweight graph node of the engine (built from the IR or from an MLP)."""

    name: str
    kind: str  # "input" | "affine" | "act"
    size: int
    inputs: tuple = ()
    weights: tuple = ()
    bias: object = None
    act: Activation | None = None  # the activation object of an "act" op
    parts: tuple = ()  # constant weights' signed parts (W+, W-), kept for the interval image


def network_ops(net: Network, dtype=torch.float64, device=None, dense_limit: int = DENSE_LIMIT) -> list[_Op]:
    """The IR as :class:`_Op` list (topological order) with torch parameters.

    A sparse IR weight becomes a dense tensor when it has at most ``dense_limit`` entries and is not very
    sparse (BLAS products are faster than sparse ones then), else a :class:`~relumilp.matrices.TorchSparse`
    (:func:`~relumilp.matrices.to_torch`).
    """
    ops = []
    t = lambda a: torch.tensor(np.array(a, dtype=np.float64), dtype=dtype, device=device)
    for node in net.order:
        if isinstance(node, InputNode):
            ops.append(_Op(node.name, "input", node.size))
        elif isinstance(node, AffineNode):
            weights = tuple(to_torch(w, dtype, device, dense_limit) for w in node.weights)
            ops.append(_Op(node.name, "affine", node.size, tuple(node.inputs), weights, t(node.bias),
                           parts=tuple(signed_parts(w) for w in weights)))
        else:
            assert isinstance(node, ActivationNode)
            ops.append(_Op(node.name, "act", node.size, tuple(node.inputs), act=node.activation))
    return ops


def mlp_ops(layers, activations, n_in: int) -> list[_Op]:
    """An MLP ``[(W, b), ...]`` with one activation per hidden layer (an
    :class:`~relumilp.activations.Activation`, or a format-1 ``(kind, alpha, cap)`` tuple) as :class:`_Op` list.

    Affine nodes are named ``linear{k}``, activations ``act{k}``.
    """
    ops = [_Op("input", "input", n_in)]
    for k, (W, b) in enumerate(layers):
        ops.append(_Op(f"linear{k}", "affine", W.shape[0], (ops[-1].name,), (W,), b))
        if k < len(layers) - 1:
            act = activations[k]
            if not isinstance(act, Activation):
                act = from_spec(dict(zip(("kind", "alpha", "cap"), act)))
            ops.append(_Op(f"act{k}", "act", W.shape[0], (f"linear{k}",), act=act))
    return ops


def affine_interval(op: _Op, lo: dict, hi: dict, outward: bool = False):
    """Interval image of an affine op from its inputs' (batched) bounds: the one interval rule,
    :func:`relumilp.bounds.interval.affine_image` (rounded outward with ``outward``)."""
    return affine_image(op.inputs, op.weights, op.bias, lo, hi, outward, op.parts)


def _dot(block, line):
    """``sum_j block[b, r, j] * line[..., j]`` for a (B, R, size) block and one line offset per neuron
    (B, size) -- a batched matrix-vector product -- or per neuron and form (B, R, size)."""
    if line.dim() == 2:
        return (block @ line.unsqueeze(-1)).squeeze(-1)
    return (block * line).sum(-1)


def _forms(values, chosen):
    """``values[b, chosen[b, k], :]``: per-form parameters (B, F, size) of the chosen forms (B, r)."""
    return values.gather(1, chosen.unsqueeze(-1).expand(-1, -1, values.shape[-1]))


def _unforms(values, chosen, forms: int, base=None):
    """Per-form parameters of the chosen forms (B, r, size) put back among ``forms`` forms: the others keep
    ``base`` (B, forms, size), or without it the first chosen form's values (any value is valid)."""
    batch, _, size = values.shape
    if base is None or tuple(base.shape) != (batch, forms, size):
        base = values[:, :1].expand(batch, forms, size)
    return base.clone().scatter(1, chosen.unsqueeze(-1).expand(-1, -1, size), values)


class _Expired(Exception):
    """Raised inside :func:`back_substitute` when its deadline passes (caught by the refinement)."""


def back_substitute(ops: list[_Op], index: int, lo: dict, hi: dict, relax: dict, track_magnitude: bool = True,
                    coefficients=None, input_coefficients: bool = False, collect: dict | None = None,
                    deadline: Deadline | None = None, split_terms: dict | None = None):
    """Upper bounds over the input box of the linear forms ``coefficients @ t``, ``t = ops[index]``.

    ``coefficients`` has shape (B, R, m); the default ``[I; -I]`` gives upper bounds of ``[t; -t]``
    (shape (B, 2m)). ``relax[act] = (a_l, c_l, a_u, c_u)``, each (B, size) (one line per neuron) or
    (B, R, size) (one line per neuron and form: the optimised slopes). Returns ``(bounds, mag)`` where
    ``mag`` is the sum of |terms| that entered each bound (for the round-off margin; None without
    ``track_magnitude``). With ``input_coefficients``, returns instead the forms' coefficients on the
    network input (B, R, n_in). ``collect``, if given, receives each activation's coefficients (B, R, size).
    ``deadline``: checked before each op; raises :class:`_Expired` once passed (one back-substitution
    through a deep lowered max-pool tree can take many seconds). ``split_terms`` maps affine node names to
    (B, R, size) coefficients added to the forms' coefficients on that node when back-substitution
    reaches it: the split multipliers' terms ``beta * s`` (see :meth:`BoundEngine._optimised_bound`).
    """
    per_form = lambda a: a if a.dim() == 3 else a.unsqueeze(1)
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
        if split_terms is not None and op.name in split_terms:
            term = split_terms[op.name]
            A = term if A is None else A + term
            if track_magnitude:  # the sum's rounding, up to eps |beta s|, times the node's magnitude
                scale = torch.nan_to_num(torch.maximum(lo[op.name].abs(), hi[op.name].abs()), posinf=1e300)
                mag = mag + _dot(term.abs(), scale)
        if A is None:
            continue
        if deadline is not None and deadline.expired():
            raise _Expired
        if op.kind == "affine":
            const = const + A @ op.bias
            if track_magnitude:
                mag = mag + A.abs() @ op.bias.abs()
            for src, W in zip(op.inputs, op.weights):
                term = lmatmul(A, W)
                coef[src] = coef[src] + term if src in coef else term
        elif op.kind == "act":
            if collect is not None:
                collect[op.name] = A
            al, cl, au, cu = relax[op.name]
            # positive coefficients take the upper line, negative ones the lower: the products are the
            # same roundings as pos * au + neg * al, in fewer passes over the (B, R, size) block
            pos = torch.clamp(A, min=0.0)
            new = torch.where(A >= 0, per_form(au), per_form(al)) * A
            const = const + _dot(pos, cu)
            if track_magnitude:
                mag = mag + _dot(pos, cu.abs())
            if bool(torch.any(cl)):  # the lower line's offset (none for ReLU's s x)
                neg = A - pos
                const = const + _dot(neg, cl)
                if track_magnitude:
                    mag = mag - _dot(neg, cl.abs())
            src = op.inputs[0]
            coef[src] = coef[src] + new if src in coef else new
        else:  # the input node: maximise over the box
            if input_coefficients:
                return A
            if collect is not None:
                collect[op.name] = A
            l, u = lo[op.name], hi[op.name]
            pos, neg = torch.clamp(A, min=0.0), torch.clamp(A, max=0.0)
            result = const + (pos @ u.unsqueeze(-1) + neg @ l.unsqueeze(-1)).squeeze(-1)
            if track_magnitude:
                scale = torch.maximum(l.abs(), u.abs())
                mag = mag + (A.abs() @ scale.unsqueeze(-1)).squeeze(-1)
            return result, mag
    raise RelumilpError(f"node {target.name!r} does not depend on the network input")


@dataclass
class EngineBounds:
    """Bounds of every node per box: ``lower``/``upper`` map node names to (B, size) arrays (numpy from
    :meth:`BoundEngine.bounds`, torch from :meth:`BoundEngine.propagate`); ``empty`` (B,) flags boxes
    whose neuron splits contradict their bounds (no input of the box satisfies them)."""

    lower: dict
    upper: dict
    empty: object
    #: with ``optimise``: the optimised lower-line parameters ``{activation: (B, R, size)}`` (warm starts)
    slopes: dict | None = None
    #: with ``optimise``: per activation (B, size), how much each neuron's relaxation gap costs the
    #: optimised output bound (``|coefficient| x gap``, summed over forms; a BaBSR-style branching score)
    scores: dict | None = None
    #: with ``optimise``: (B, m, n) input coefficients ``Λ`` of the optimised bound of each output row,
    #: ``Λ x + c`` bounding the row from the optimised side (``sense``: lower or upper; with ``"both"``
    #: the lower one); zero on rows not optimised (see ``rows``)
    input_coefficients: object = None
    #: False when the deadline stopped back-substitution or the optimised pass early: the neurons not
    #: refined kept their interval bounds and the output its plain bound, without slopes or scores
    #: (still sound, just looser)
    complete: bool = True

    def __iter__(self):  # lo, hi = engine.bounds(...)
        return iter((self.lower, self.upper))


class BoundEngine:
    """Batched symbolic bounds of one network (see the module docstring).

    Build it once per network (:meth:`for_network` for the sound float64 IR bounds, :meth:`for_mlp` for
    differentiable training bounds) and call :meth:`bounds` / :meth:`propagate` for many batches.
    """

    def __init__(self, ops: list[_Op], net: Network | None = None, roundoff: float = 0.0):
        self.ops = ops
        self.net = net
        self.roundoff = roundoff  # > 0: sound mode (outward interval steps, margins, widening)
        self.index = {op.name: i for i, op in enumerate(ops)}
        kinds = {op.name: op.kind for op in ops}
        self.output = net.output if net is not None else ops[-1].name
        self.input = next(op.name for op in ops if op.kind == "input")
        #: affine nodes that back-substitution can tighten (not fed by the input alone)
        self.symbolic = {op.name for op in ops
                         if op.kind == "affine" and not all(kinds[src] == "input" for src in op.inputs)}
        #: affine node -> the activation ops reading it (their kinks are where splits clamp)
        self.readers: dict[str, list[_Op]] = {}
        for op in ops:
            if op.kind == "act":
                self.readers.setdefault(op.inputs[0], []).append(op)
        self.nodes = {node.name: node for node in net.order} if net is not None else {}
        self.device = next((op.bias.device for op in ops if op.bias is not None), None)
        self.widest = max(op.size for op in ops)
        #: torch intra-op threads of :meth:`bounds` (:func:`torch_threads`)
        self.threads = 1
        #: the ops in float32 for the slope search and the branching estimates (:meth:`_search_ops`), built
        #: on first use; False where float32 does not suit the network
        self._ops32 = None

    @classmethod
    def for_network(cls, net: Network, device=None) -> "BoundEngine":
        """The sound float64 engine of an IR network (outward rounding, round-off margins, widening)."""
        return cls(network_ops(net, device=device), net, roundoff_margin(net))

    @classmethod
    def for_mlp(cls, layers, activations, n_in: int) -> "BoundEngine":
        """The differentiable engine of a torch MLP (no margins; see :func:`mlp_ops`)."""
        return cls(mlp_ops(layers, activations, n_in))

    @property
    def sound(self) -> bool:
        return self.roundoff > 0

    # -- numpy front end (sound IR bounds) -----------------------------------------------------------

    def bounds(self, lower, upper, start: dict | None = None, refine="all", splits: dict | None = None,
               optimise: dict | None = None, deadline: Deadline | None = None) -> EngineBounds:
        """Sound bounds (numpy, (B, size) per node) over the boxes ``[lower, upper]`` of shape (B, n).

        ``start`` maps node names to ``(lower, upper)`` (B, size) arrays already valid on each box;
        ``refine``, ``splits`` and ``optimise`` are described in the module docstring. In sound mode
        the result is widened so that it contains every float64 forward value of every input of each box.
        ``deadline`` (a :class:`~relumilp.limits.Deadline`) stops back-substitution once it passes: the
        neurons not yet refined keep their interval bounds and the result has ``complete = False``.
        """
        device = self.device
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), device=device)
        start_t = None if start is None else {k: (t(v[0]), t(v[1])) for k, v in start.items() if k in self.index}
        splits_t = None if splits is None else {k: t(v) for k, v in splits.items()}
        if optimise is not None and optimise.get("slopes") is not None:
            optimise = {**optimise, "slopes": {k: t(v) for k, v in optimise["slopes"].items()}}
        with torch.no_grad(), torch_threads(self.threads):
            result = self.propagate(t(lower), t(upper), start_t, refine, splits_t, optimise, deadline)
        lo = {k: v.cpu().numpy() for k, v in result.lower.items()}
        hi = {k: v.cpu().numpy() for k, v in result.upper.items()}
        if self.sound and self.net is not None:
            lo, hi = widen(self.net, lo, hi)
        numpy = lambda d: None if d is None else {k: v.cpu().numpy() for k, v in d.items()}
        lam = None if result.input_coefficients is None else result.input_coefficients.cpu().numpy()
        return EngineBounds(lo, hi, result.empty.cpu().numpy(), numpy(result.slopes), numpy(result.scores),
                            lam, result.complete)

    # -- the propagation -------------------------------------------------------------------------------

    def propagate(self, lower, upper, start: dict | None = None, refine="all", splits: dict | None = None,
                  optimise: dict | None = None, deadline: Deadline | None = None) -> EngineBounds:
        """Bounds of every op over the boxes ``[lower, upper]`` ((B, n) tensors), as (B, size) tensors.

        Differentiable when called outside ``torch.no_grad`` (the training losses; not with
        ``optimise``, whose own gradient pass is internal). No final widening. ``deadline``: as in
        :meth:`bounds` (the slope optimisation is skipped once it has passed).
        """
        deadline = Deadline() if deadline is None else deadline
        if not isinstance(refine, dict) and refine not in REFINE_POLICIES:
            raise RelumilpError(f"refine must be one of {', '.join(REFINE_POLICIES)} or a dict of masks, "
                                f"got {refine!r}")
        complete = True
        nodes = "output" if optimise is None else optimise.get("nodes", "output")
        if isinstance(nodes, str):
            if nodes not in ("output", "all"):
                raise RelumilpError(f"optimise nodes must be 'output', 'all' or node names, got {nodes!r}")
            nodes = set(self.symbolic) if nodes == "all" else set()
        else:
            nodes = set(nodes)
        lo: dict = {}
        hi: dict = {}
        relax: dict = {}
        empty = torch.zeros(lower.shape[0], dtype=torch.bool, device=lower.device)
        for index, op in enumerate(self.ops):
            if op.kind == "input":
                l, u = lower, upper
                l, u = self._start(op.name, l, u, start)
            elif op.kind == "affine":
                l, u = affine_interval(op, lo, hi, outward=self.sound)
                l, u = self._start(op.name, l, u, start)
                l, u, empty = self._split(op.name, l, u, splits, empty)
                mask = self._mask(op.name, l, u, refine)
                if mask is not None:
                    # past the deadline the interval bounds stand: sound for every later op, only looser
                    l, u, done = self._refine(index, l, u, mask, lo, hi, relax, deadline)
                    complete = complete and done
                    l, u, empty = self._split(op.name, l, u, splits, empty)
                if op.name in nodes and op.name in self.readers and op.name in self.symbolic:
                    # optimised slopes for this node's own bounds, on the neurons still undecided, so
                    # that the relaxations downstream are built from the tightened bounds; a smooth kind's
                    # neurons are never decided (every one would be optimised, 20 passes each: a ViT's
                    # bounds took minutes), so only kinds with kinks ask for it
                    l, u, done = self._refine(index, l, u, self._unstable(op.name, l, u, kinks_only=True), lo, hi,
                                              relax, deadline, optimise)
                    complete = complete and done
                    l, u, empty = self._split(op.name, l, u, splits, empty)
            else:
                src = op.inputs[0]
                # -- the activation's interval image and linear relaxation (the formulas' only two calls) --
                l, u = op.act.interval_torch(lo[src], hi[src])
                relax[op.name] = op.act.linear_relaxation(lo[src], hi[src])
                l, u = self._start(op.name, l, u, start)
            lo[op.name], hi[op.name] = l, u
        if optimise is None or self.output not in self.symbolic:
            return EngineBounds(lo, hi, empty, complete=complete)
        if deadline.expired():  # the plain back-substituted bounds stand
            return EngineBounds(lo, hi, empty, complete=False)
        slopes, scores, infeasible, lam = self._optimise(lo, hi, relax, optimise, deadline, splits)
        return EngineBounds(lo, hi, empty | infeasible, slopes, scores, lam, complete and slopes is not None)

    # -- optimised slopes (alpha-CROWN) ------------------------------------------------------------------

    def _optimise(self, lo: dict, hi: dict, relax: dict, options: dict, deadline: Deadline | None = None,
                  splits: dict | None = None):
        """Tighten the output's bounds in place by optimising the lower-line parameter of every neuron
        whose activation has a :meth:`~relumilp.activations.Activation.lower_family`, per box and per
        bound (module docstring); returns ``(slopes, scores, infeasible, lam)``: slopes, scores and ``lam``
        are None when the deadline passed during the steps (the plain bounds stand); ``lam`` (B, m, n) --
        the input coefficients of the optimised bounds (:attr:`EngineBounds.input_coefficients`);
        ``infeasible`` (B,) --
        boxes whose neuron splits the multipliers prove contradictory (their optimised bound crosses
        the other sound bound of the output by more than round-off, which no point can satisfy)."""
        index = self.index[self.output]
        out = self.ops[index]
        batch, m = lo[out.name].shape
        sense = options.get("sense", "both")
        eye = torch.eye(m, dtype=lo[out.name].dtype, device=lo[out.name].device)
        rows = {"lower": -eye, "upper": eye, "both": torch.cat([eye, -eye])}
        if sense not in rows:
            raise RelumilpError(f"optimise sense must be 'lower', 'upper' or 'both', got {sense!r}")
        C = rows[sense].expand(batch, -1, m)
        coefficients: dict = {}
        l, u = lo[out.name], hi[out.name]
        infeasible = torch.zeros(batch, dtype=torch.bool, device=l.device)
        warm = options.get("slopes")
        forms = C.shape[1]
        chosen = self._chosen_forms(options.get("rows"), sense, batch, forms, l.device)
        if chosen is not None:  # only these forms per box: their coefficients, and their warm starts
            C = C.gather(1, chosen.unsqueeze(-1).expand(-1, -1, m))
            warm = None if warm is None else {k: _forms(v, chosen) for k, v in warm.items()
                                              if v.dim() == 3 and v.shape[:2] == (batch, forms)}
        try:
            bound, params, final = self._optimised_bound(index, C, lo, hi, relax, options, warm,
                                                         collect=coefficients, deadline=deadline, splits=splits)
        except _Expired:  # the plain bounds stand
            return None, None, infeasible, None
        # the final pass's coefficients on the input: the forms are C t <= A x + c, C = -I for lower bounds
        lam = coefficients.pop(self.input)
        if chosen is not None:  # back to every form: the others' bounds unchanged (+inf), their parameters kept
            bound = bound.new_full((batch, forms), torch.inf).scatter(1, chosen, bound)
            lam = lam.new_zeros((batch, forms, lam.shape[-1])).scatter(
                1, chosen.unsqueeze(-1).expand(-1, -1, lam.shape[-1]), lam)
            params = {k: _unforms(v, chosen, forms, (options.get("slopes") or {}).get(k))
                      for k, v in params.items()}
        if splits:
            # both bounds are sound on the node's region, so crossing proves it empty; a crossing within
            # round-off of the values is left to intersect (kept open: never a claim on a hair's width)
            slack = 1e-9 * (1.0 + torch.maximum(l.abs(), u.abs()))
            if sense in ("upper", "both"):
                infeasible |= (bound[:, :m] < l - slack).any(dim=1)
            if sense in ("lower", "both"):
                infeasible |= (-bound[:, -m:] > u + slack).any(dim=1)
        if sense in ("upper", "both"):
            l, u = intersect(l, u, l, torch.minimum(u, bound[:, :m]))
        if sense in ("lower", "both"):
            l, u = intersect(l, u, torch.maximum(l, -bound[:, -m:]), u)
        lo[out.name], hi[out.name] = l, u
        lam = lam[:, :m] if sense == "upper" else -lam[:, -m:]
        return params, self._gap_scores(final, coefficients, lo, hi), infeasible, lam

    @staticmethod
    def _chosen_forms(rows, sense: str, batch: int, forms: int, device):
        """(B, r) indices of the bounded forms to optimise per box, from ``rows`` ((B, m) bool: the output
        rows whose bound matters, e.g. those not yet proven by the parent), the chosen ones first and
        padded with others to the batch's largest count; None for all forms."""
        if rows is None:
            return None
        mask = torch.as_tensor(np.asarray(rows, dtype=bool), device=device)
        if mask.shape != (batch, forms // (2 if sense == "both" else 1)):
            raise RelumilpError(f"optimise rows must have shape (boxes, output size), got {tuple(mask.shape)}")
        if sense == "both":
            mask = torch.cat([mask, mask], dim=1)
        count = max(1, int(mask.sum(dim=1).max()))
        if count == forms:
            return None
        return torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :count]

    def _search_ops(self, *groups: dict) -> list[_Op] | None:
        """The ops in float32, for work whose result is never trusted -- the projected Adam steps of the
        slope search, the branching estimates -- or None (stay in float64).

        Every sound bound is evaluated again in float64 at the parameters found, so the precision of the
        search only decides how good those parameters are; float32 halves the memory traffic of every
        product and doubles BLAS throughput. Used for sound IR engines whose weights and biases, and the
        tensors in ``groups`` (dicts of bounds), are all below :data:`SEARCH_FLOAT32_RANGE` in magnitude
        (so also finite)."""
        if not self.sound or self.net is None:
            return None
        if self._ops32 is None:
            largest = max([float(np.abs(node.bias).max(initial=0.0)) for node in self.net.affines]
                          + [float(abs_values(w).max(initial=0.0)) for node in self.net.affines for w in node.weights])
            suits = largest < SEARCH_FLOAT32_RANGE and all(op.bias is None or op.bias.dtype == torch.float64
                                                           for op in self.ops)
            self._ops32 = network_ops(self.net, dtype=torch.float32, device=self.device) if suits else False
        if self._ops32 is False:
            return None
        for group in groups:
            for t in group.values():
                if t.dtype != torch.float32 and not bool((t.abs() < SEARCH_FLOAT32_RANGE).all()):
                    return None
        return self._ops32

    def _optimised_bound(self, index: int, C, lo: dict, hi: dict, relax: dict, options: dict, warm=None,
                         collect: dict | None = None, deadline: Deadline | None = None, splits: dict | None = None,
                         precise: bool = True):
        r"""Sound upper bounds of the forms ``C @ t`` (``C`` (B, R, m), ``t = ops[index]``) with optimised
        lower-line parameters: ``steps`` projected Adam steps (``lr``) on the sum of the bounds, one ``t``
        per box, form and neuron of every activation before ``index`` that has a
        :meth:`~relumilp.activations.Activation.lower_family`, starting from ``warm`` or the plain
        relaxation, keeping per form the best ``t`` seen.

        With ``splits`` (``{activation: (B, size)}``, -1/0/+1), every split neuron also gets a multiplier
        ``beta >= 0`` per box and form (beta-CROWN, Wang et al. 2021): on a node every input satisfies
        ``s x >= 0`` for its split pre-activations ``x``, so ``C t <= C t + sum beta s x`` there for any
        ``beta >= 0``, and the right-hand side is bounded by the same back-substitution
        (``split_terms``). Clamping the split neuron's bounds makes its own relaxation exact; the
        multipliers carry the constraint back to the input, where it cuts off inputs of the box that
        no point of the node has. They are optimised with the slopes (Adam step ``beta_lr``, projected
        onto ``beta >= 0``), warm-started from ``warm[(BETA, activation)]`` and returned under that key.

        The steps run in float32 where :meth:`_search_ops` allows (the parameters found are only a choice).
        Returns ``(bound, params, relaxation)``: ``bound`` (B, R) evaluated again without gradients at the
        chosen parameters (slopes clamped to ``[0, 1]``, multipliers to ``beta >= 0``: every choice a
        valid bound), in float64 with the round-off margin in sound mode; without ``precise`` (an
        estimate, e.g. for branching) in the search's precision, without margin, and ``relaxation`` None.
        Raises :class:`_Expired` when ``deadline`` passes during the steps.
        """
        batch, R = C.shape[0], C.shape[1]
        warm = warm or {}
        families, params = {}, {}
        signs = {}  # (BETA, activation) -> (B, 1, size) split signs, for the activations with a split
        for op in self.ops[:index]:
            # every activation given a split row gets multipliers, even where no neuron is split yet, so
            # that every chunk of a batch returns the same parameters (they are joined and warm-start children)
            s = None if not splits else splits.get(op.name)
            if op.kind != "act" or s is None:
                continue
            key = (BETA, op.name)
            signs[key] = s.to(C.dtype).unsqueeze(1)
            b0 = warm.get(key)
            if b0 is None or tuple(b0.shape) != (batch, R, op.size):
                b0 = C.new_zeros((batch, R, op.size))
            params[key] = torch.clamp(b0.detach(), min=0.0).clone()
        for op in self.ops[:index]:
            if op.kind != "act":
                continue
            l3, u3 = lo[op.inputs[0]].unsqueeze(1), hi[op.inputs[0]].unsqueeze(1)
            if op.act.lower_family(l3, u3, l3) is None:
                continue
            families[op.name] = (op.act, l3, u3)
            t0 = warm.get(op.name)
            if t0 is None or tuple(t0.shape) != (batch, R, op.size):
                t0 = op.act.lower_family_start(l3, u3).expand(batch, R, op.size)
            params[op.name] = torch.clamp(t0.detach(), 0.0, 1.0).clone()

        def relaxed(ts, relax, families):
            # -- the activations' parameterised lower lines (the hook's only call) --
            result = dict(relax)
            for name, t in ts.items():
                if name in signs:
                    continue
                act, l3, u3 = families[name]
                mask, al_t, cl_t = act.lower_family(l3, u3, t)
                al, cl, au, cu = relax[name]
                result[name] = (torch.where(mask, al_t, al.unsqueeze(1)), torch.where(mask, cl_t, cl.unsqueeze(1)), au, cu)
            return result

        def split_terms(ps, signs):
            """The multipliers' coefficients ``beta s`` on each split activation's pre-activation node."""
            terms: dict = {}
            for key, sign in signs.items():
                src = self.ops[self.index[key[1]]].inputs[0]
                term = ps[key] * sign
                terms[src] = terms[src] + term if src in terms else term
            return terms or None

        steps = int(options.get("steps", 20))
        searching = bool(params) and steps > 0
        ops32 = self._search_ops(lo, hi) if searching or not precise else None
        if ops32 is None:
            ops, low = self.ops, lambda t: t
        else:
            ops, low = ops32, lambda t: t.to(torch.float32)
        lo_s, hi_s, C_s = {k: low(v) for k, v in lo.items()}, {k: low(v) for k, v in hi.items()}, low(C)
        relax_s = {k: tuple(low(a) for a in v) for k, v in relax.items()}
        families_s = {k: (act, low(l3), low(u3)) for k, (act, l3, u3) in families.items()}
        signs_s = {k: low(v) for k, v in signs.items()}
        if searching:
            best_t = {k: low(v).clone() for k, v in params.items()}
            best = None
            variables = {k: low(v).clone().requires_grad_(True) for k, v in params.items()}
            lr, beta1, beta2 = float(options.get("lr", 0.25)), 0.9, 0.999
            beta_lr = float(options.get("beta_lr", BETA_LR))
            moments = {k: (torch.zeros_like(v), torch.zeros_like(v)) for k, v in variables.items()}
            with torch.enable_grad():
                for step in range(steps + 1):
                    bound, _ = back_substitute(ops, index, lo_s, hi_s, relaxed(variables, relax_s, families_s), False,
                                               coefficients=C_s, split_terms=split_terms(variables, signs_s))
                    value = bound.detach()
                    better = torch.ones_like(value, dtype=torch.bool) if best is None else value < best
                    best = value if best is None else torch.where(better, value, best)
                    for k, v in variables.items():  # keep, per box and form, the parameters of the best bound
                        best_t[k] = torch.where(better.unsqueeze(-1), v.detach(), best_t[k])
                    if step == steps:
                        break
                    if deadline is not None and deadline.expired():
                        # no final pass past the deadline: the caller keeps its plain bounds (the deadline
                        # makes the result incomplete anyway, and one more pass can take seconds)
                        raise _Expired
                    if not bound.requires_grad:  # no parameter reaches the bound: nothing to optimise
                        break
                    # a parameter may not reach it (e.g. a PReLU fed only by a ReLU's outputs, never negative)
                    grads = torch.autograd.grad(bound.sum(), list(variables.values()), allow_unused=True)
                    with torch.no_grad():  # one Adam step (Kingma & Ba 2015), then the projection onto [0, 1]
                        for (k, v), g in zip(variables.items(), grads):
                            if g is None:
                                continue
                            m1, m2 = moments[k]
                            m1.mul_(beta1).add_(g, alpha=1 - beta1)
                            m2.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                            step_size = (beta_lr if k in signs else lr) / (1 - beta1 ** (step + 1))
                            denom = (m2 / (1 - beta2 ** (step + 1))).sqrt_().add_(1e-8)
                            v.addcdiv_(m1, denom, value=-step_size)
                            v.clamp_(min=0.0) if k in signs else v.clamp_(0.0, 1.0)
            params = {k: v.to(C.dtype) for k, v in best_t.items()}
        # a parameter the search left non-finite (clamp keeps NaN) becomes 0: a valid slope and multiplier
        params = {k: torch.where(torch.isfinite(v), v, torch.zeros_like(v)) for k, v in params.items()}
        params = {k: torch.clamp(v, min=0.0) if k in signs else torch.clamp(v, 0.0, 1.0) for k, v in params.items()}
        if not precise:  # an estimate: in the search's precision, no margin
            params_s = {k: low(v) for k, v in params.items()}
            bound, _ = back_substitute(ops, index, lo_s, hi_s, relaxed(params_s, relax_s, families_s), False,
                                       coefficients=C_s, collect=collect, split_terms=split_terms(params_s, signs_s))
            return bound.to(C.dtype), params, None
        # the bound itself: re-evaluated in float64 without gradients at the chosen parameters, with the
        # round-off margin (any t in [0, 1] is a valid relaxation; the optimisation pass is never trusted)
        final = relaxed(params, relax, families)
        bound, mag = back_substitute(self.ops, index, lo, hi, final, self.sound, coefficients=C, collect=collect,
                                     split_terms=split_terms(params, signs))
        if self.sound:
            bound = bound + self.roundoff * (1.0 + mag)
        return bound, params, final

    def _gap_scores(self, relax: dict, coefficients: dict, lo: dict, hi: dict) -> dict:
        """Per activation (B, size): ``sum over forms of (A+ gap_upper + |A-| gap_lower)``, the gaps being
        the largest distance between each relaxation line and ``f`` over ``l``, ``u`` and the kinks
        inside (``f`` is linear between kinks, so the distance is extreme there)."""
        scores = {}
        for name, A in coefficients.items():
            op = self.ops[self.index[name]]
            l, u = lo[op.inputs[0]], hi[op.inputs[0]]
            al, cl, au, cu = (a if a.dim() == 3 else a.unsqueeze(1) for a in relax[name])
            points = [l, u] + [torch.clamp(torch.full_like(l, b), min=l, max=torch.maximum(l, u)) for b in op.act.breakpoints]
            up = torch.zeros_like(A)
            down = torch.zeros_like(A)
            for p in points:
                f = op.act.apply_torch(p).unsqueeze(1)
                p = p.unsqueeze(1)
                up = torch.maximum(up, au * p + cu - f)
                down = torch.maximum(down, f - (al * p + cl))
            score = (torch.clamp(A, min=0.0) * up - torch.clamp(A, max=0.0) * down).sum(1)
            scores[name] = torch.nan_to_num(score, nan=0.0)
        return scores

    @staticmethod
    def _start(name, l, u, start):
        if start is None or name not in start:
            return l, u
        return intersect(l, u, *start[name])

    def _split(self, name, l, u, splits, empty):
        """Clamp the pre-activation bounds of split neurons at the kink (0); flag contradicted boxes."""
        if not splits:
            return l, u, empty
        for op in self.readers.get(name, ()):
            s = splits.get(op.name)
            if s is None:
                continue
            l = torch.where(s > 0, torch.clamp(l, min=0.0), l)
            u = torch.where(s < 0, torch.clamp(u, max=0.0), u)
            crossed = l > u
            if bool(crossed.any()):  # no input of the box satisfies its splits: bounds there are vacuous
                empty = empty | crossed.any(dim=1)
                l, u = torch.where(crossed, torch.zeros_like(l), l), torch.where(crossed, torch.zeros_like(u), u)
        return l, u, empty

    def _mask(self, name, l, u, refine):
        """Which neurons of affine node ``name`` to back-substitute: True (all), None (none) or a mask."""
        if name not in self.symbolic:
            return None
        if isinstance(refine, dict):
            mask = refine.get(name)
            return None if mask is None else torch.as_tensor(mask, dtype=torch.bool, device=l.device)
        if refine == "all" or name == self.output:
            return True
        if refine == "output":
            return None
        readers = self.readers.get(name)
        if not readers:
            return None
        lower, upper = l.cpu().numpy(), u.cpu().numpy()
        undecided = np.zeros(lower.shape, dtype=bool)
        for op in readers:
            ph = phases(self.nodes[op.name], lower, upper)
            undecided |= ~ph.stable_inactive  # off the identity piece: no bound needed
        return torch.from_numpy(undecided).to(l.device)

    def _unstable(self, name, l, u, kinks_only: bool = False):
        """(B, size) mask of the neurons of affine node ``name`` that some activation reading it has
        unstable (their phase open: the only ones whose bounds change a relaxation or a binary); with
        ``kinks_only``, activations of smooth kinds (every neuron "unstable") are left out."""
        lower, upper = l.cpu().numpy(), u.cpu().numpy()
        unstable = np.zeros(lower.shape, dtype=bool)
        for op in self.readers[name]:
            if kinks_only and getattr(op.act, "smooth", False):
                continue
            unstable |= phases(self.nodes[op.name], lower, upper).unstable
        return torch.from_numpy(unstable).to(l.device)

    def _refine(self, index, l, u, mask, lo, hi, relax, deadline: Deadline, optimise: dict | None = None):
        """Intersect ``[l, u]`` with back-substituted bounds on the masked neurons (per box).

        With ``optimise`` (``steps``, ``lr``), each chunk's bounds use optimised lower-line parameters
        (:meth:`_optimised_bound`; one parameter per neuron of every earlier activation and per bounded
        form, so chunks are smaller). Returns ``(l, u, done)``: ``done`` is False when ``deadline``
        passed before every chunk of neurons was back-substituted (or cut an optimisation short); the
        neurons not yet reached keep ``[l, u]`` as given (sound)."""
        if mask is None:
            return l, u, True
        batch, m = l.shape
        if optimise is None:
            rows = max(1, COEFFICIENT_BUDGET // (2 * batch * self.widest))  # neurons per back-substitution
        else:  # parameters (B, 2 rows, size) of every earlier activation, and their Adam moments
            before = sum(op.size for op in self.ops[:index] if op.kind == "act")
            rows = max(1, COEFFICIENT_BUDGET // (8 * batch * max(self.widest, before)))
        if deadline.expired():
            return l, u, False

        def forms(coefficients):
            """Sound upper bounds (B, R) of ``coefficients @ t`` (raises :class:`_Expired` at the deadline)."""
            if optimise is not None:
                C = coefficients
                if C is None:
                    eye = torch.eye(m, dtype=l.dtype, device=l.device)
                    C = torch.cat([eye, -eye]).expand(batch, 2 * m, m)
                return self._optimised_bound(index, C, lo, hi, relax, optimise, deadline=deadline)[0]
            bound, mag = back_substitute(self.ops, index, lo, hi, relax, self.sound, coefficients=coefficients,
                                         deadline=deadline)
            return bound + self.roundoff * (1.0 + mag) if self.sound else bound

        if mask is True and m <= rows:
            try:
                bound = forms(None)
            except _Expired:
                return l, u, False
            return (*intersect(l, u, -bound[:, m:], bound[:, :m]), True)
        if mask is True:  # too wide for one coefficient block: every neuron, a chunk at a time
            mask = torch.ones_like(l, dtype=torch.bool)
        count = int(mask.sum(dim=1).max()) if mask.numel() else 0
        if count == 0:
            return l, u, True
        # per box, the masked neurons first (padding with unmasked ones is harmless: still valid bounds)
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :count]  # (B, r)
        for start in range(0, count, rows):
            if deadline.expired():
                return l, u, False
            part = order[:, start : start + rows]
            r = part.shape[1]
            eye = torch.nn.functional.one_hot(part, m).to(l.dtype)  # (B, r, m)
            try:
                bound = forms(torch.cat([eye, -eye], dim=1))
            except _Expired:  # the chunks already done are kept
                return l, u, False
            new_l, new_u = intersect(l.gather(1, part), u.gather(1, part), -bound[:, r:], bound[:, :r])
            l, u = l.scatter(1, part, new_l), u.scatter(1, part, new_u)
        return l, u, True

    # -- strong neuron branching ---------------------------------------------------------------------------

    def split_bounds(self, lower: dict, upper: dict, splits: dict, params: dict | None, names: list,
                     layer: np.ndarray, neuron: np.ndarray, rows=None) -> np.ndarray:
        r"""Estimated output lower bounds of the two children of each candidate split, for choosing the
        neuron to split (filtered smart branching, De Palma et al. 2021; beta-CROWN's ``fsb``).

        Box ``b`` has bounds ``lower``/``upper`` (numpy, (B, size) per node: what :meth:`bounds` returned
        for it), neuron ``splits`` and optimised parameters ``params`` (its ``slopes``: lower-line
        parameters and split multipliers per output form). Its candidates are ``k`` neurons: neuron
        ``neuron[b, j]`` of activation ``names[layer[b, j]]`` (a negative layer: no candidate). Each
        child -- the candidate fixed active (``+1``, child 0) or inactive (``-1``, child 1) -- keeps its
        parent's intermediate bounds (clamped at the new split, so the candidate's relaxation becomes
        exact) and its parent's parameters (a zero multiplier on the new split), and gets one
        back-substitution of the output rows ``rows`` ((B, m) bool, or all): no optimisation steps, so a
        candidate costs two back-substitutions instead of a node's dozens. Returns (B, k, 2, m): each
        child's output lower bound, at least its parent's (which holds on it); ``+inf`` for a child whose
        splits contradict its bounds, and for absent candidates. An estimate for branching only: not
        widened for the forward pass's rounding, and computed in float32 where :meth:`_search_ops` allows
        (the children are bounded properly once they are popped).
        """
        B, k = neuron.shape
        m = self.ops[self.index[self.output]].size
        children = 2 * k
        box = np.repeat(np.arange(B), children)  # child c of box b: c = b * 2k + 2j + side
        cand = np.tile(np.repeat(np.arange(k), 2), B)
        sign = np.tile(np.array([1, -1], dtype=np.int8), B * k)
        where = layer[box, cand]
        with torch.no_grad(), torch_threads(self.threads):
            t = lambda a: torch.as_tensor(np.asarray(a), device=self.device)
            # the input's and the affine nodes' bounds: the activations' own are not read by back-substitution
            needed = [op.name for op in self.ops if op.kind != "act" and op.name in lower]
            parent_lo, parent_hi = {name: t(lower[name]) for name in needed}, {name: t(upper[name]) for name in needed}
            # an estimate: in float32 where the engine allows it (half the copying below, faster products)
            low = self._search_ops(parent_lo, parent_hi) is not None

            def rep(a):
                a = t(a)
                return (a.to(torch.float32) if low and a.is_floating_point() else a).repeat_interleave(children, dim=0)

            lo = {name: rep(v) for name, v in parent_lo.items()}
            hi = {name: rep(v) for name, v in parent_hi.items()}
            child_splits = {name: rep(v).clone() for name, v in splits.items()}
            for position, name in enumerate(names):
                here = np.flatnonzero(where == position)
                if here.size:
                    child_splits[name][t(here), t(neuron[box[here], cand[here]])] = t(sign[here]).to(
                        child_splits[name].dtype)
            empty = torch.zeros(B * children, dtype=torch.bool, device=self.device)
            relax = {}
            for op in self.ops:
                if op.kind == "affine":
                    lo[op.name], hi[op.name], empty = self._split(op.name, lo[op.name], hi[op.name], child_splits, empty)
                elif op.kind == "act":
                    relax[op.name] = op.act.linear_relaxation(lo[op.inputs[0]], hi[op.inputs[0]])
            index = self.index[self.output]
            C = -torch.eye(m, dtype=lo[self.output].dtype, device=self.device).expand(B * children, m, m)
            chosen = self._chosen_forms(None if rows is None else np.repeat(np.asarray(rows, dtype=bool), children, axis=0),
                                        "lower", B * children, m, self.device)
            warm = {key: rep(v) for key, v in (params or {}).items()}
            if chosen is not None:
                C = C.gather(1, chosen.unsqueeze(-1).expand(-1, -1, m))
                warm = {key: _forms(v, chosen) for key, v in warm.items() if v.dim() == 3 and v.shape[1] == m}
            bound, _, _ = self._optimised_bound(index, C, lo, hi, relax, {"steps": 0}, warm, splits=child_splits,
                                                precise=False)
            estimate = -bound
            if chosen is not None:  # rows not evaluated keep the parent's bound
                estimate = torch.full((B * children, m), -torch.inf, dtype=bound.dtype,
                                      device=self.device).scatter(1, chosen, estimate)
            # the parent's bound holds on each child (taken in its own precision, not the estimate's)
            estimate = torch.maximum(estimate.to(parent_lo[self.output].dtype),
                                     parent_lo[self.output].repeat_interleave(children, dim=0))
            estimate[empty] = torch.inf
            estimate[t(where < 0)] = torch.inf
        return estimate.cpu().numpy().reshape(B, k, 2, m)

    # -- input coefficients (branching scores) ------------------------------------------------------------

    def input_coefficients(self, lower: dict, upper: dict, node: str | None = None, sense: str = "lower"):
        """``Λ`` of shape (B, size, n): the linear bound of ``node`` (default: the output) used by
        back-substitution from the bounds ``lower``/``upper`` (numpy dicts, (B, size) per node) is
        ``Λ x + c``, minimised (``sense="lower"``) or maximised (``"upper"``) over each box.
        """
        node = self.output if node is None else node
        index = self.index[node]
        with torch.no_grad(), torch_threads(self.threads):
            device = self.device
            lo = {k: torch.as_tensor(v, device=device) for k, v in lower.items()}
            hi = {k: torch.as_tensor(v, device=device) for k, v in upper.items()}
            # -- the activations' linear relaxations (the formula's only call here) --
            relax = {op.name: op.act.linear_relaxation(lo[op.inputs[0]], hi[op.inputs[0]])
                     for op in self.ops[:index] if op.kind == "act"}
            k = self.ops[index].size
            batch = lo[node].shape[0]
            sign = -1.0 if sense == "lower" else 1.0
            eye = sign * torch.eye(k, dtype=lo[node].dtype, device=device).expand(batch, k, k)
            coefficients = back_substitute(self.ops, index, lo, hi, relax, coefficients=eye, input_coefficients=True)
            return (sign * coefficients).cpu().numpy()
