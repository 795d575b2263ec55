"""The compiler pipeline: network + input domain -> bounds -> (scaling) -> big-M MILP.

Data flows forward only: :func:`compile_network` loads the network, computes bounds with the chosen
method, optionally rescales neurons, and builds the matrix-form MILP. The result,
:class:`CompiledNetwork`, is the lower-level object behind :func:`relumilp.add_network`: it can be
emitted into a Pyomo block, handed to HiGHS directly, or written as MPS/LP.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .bounds import Bounds, big_m_values, check_valid_domain, compute_bounds, stability_counts
from .domain import InputDomain
from .errors import RelumilpError
from .formulation.bigm import build_milp
from .formulation.milp import MILP
from .ir import Network


@dataclass
class CompiledNetwork:
    """A network compiled over an input domain: its bounds, its MILP and what it cost."""

    network: Network
    domain: InputDomain
    bounds: Bounds
    milp: MILP
    times: dict[str, float] = field(default_factory=dict)
    #: the network as given, when scaling replaced ``network`` by an equivalent rescaled one
    original: Network | None = None

    @property
    def layers(self) -> list[dict]:
        """Per activation layer: stable-active / stable-inactive / unstable counts and binaries."""
        return stability_counts(self.network, self.bounds)

    def stats(self) -> dict:
        """Model size and neuron stability in one flat dict."""
        layers = self.layers
        return {
            **self.milp.size_report(),
            "stable_active": sum(r["stable_active"] for r in layers),
            "stable_inactive": sum(r["stable_inactive"] for r in layers),
            "unstable": sum(r["unstable"] for r in layers),
            "neurons": sum(r["size"] for r in layers),
        }

    def big_m(self) -> np.ndarray:
        """The big-M magnitudes of the unstable neurons, all layers concatenated
        (:func:`relumilp.bounds.base.big_m_values`)."""
        values = list(big_m_values(self.network, self.bounds).values())
        return np.concatenate(values) if values else np.zeros(0)

    def to_pyomo(self, block=None):
        """Emit the MILP into ``block`` (a new ``ConcreteModel`` when None); returns the block."""
        import pyomo.environ as pyo

        from .formulation.pyomo_block import emit_block

        block = pyo.ConcreteModel() if block is None else block
        emit_block(self.milp, block)
        return block

    def to_highs(self, objective: np.ndarray | None = None, sense: str = "min", log: bool = False):
        """A ``highspy.Highs`` model of the MILP, with ``objective @ outputs`` when given."""
        from .backends.highs import to_highs
        from .formulation.highs import warn_dropped_entries

        milp = self.milp if objective is None else self.milp.with_objective(objective, sense)
        warn_dropped_entries(milp, "the highspy model", stacklevel=3)
        return to_highs(milp, log=log)

    def write(self, path, objective: np.ndarray | None = None, sense: str = "min", names_path=None):
        """Write the MILP to ``path`` (``.mps`` or ``.lp``), whole or not at all; with ``names_path``, the
        column/row name map beside it (:func:`relumilp.formulation.highs.write_model`)."""
        from .formulation.highs import write_model

        milp = self.milp if objective is None else self.milp.with_objective(objective, sense)
        return write_model(milp, path, names_path)


#: random domain points (besides the centre) at which precomputed bounds are checked
BOUNDS_CHECK_POINTS = 256


def _check_given_bounds(net: Network, domain: InputDomain, bounds) -> None:
    """Refuse precomputed bounds that cannot be this network's over this domain: missing or mis-sized
    nodes, an input box that does not cover the domain's, or a forward value (at the domain's centre,
    corners of its box and random points) outside them. Not a proof that they are sound, but bounds
    made for another box or network cut off points without a word."""
    if not isinstance(bounds, Bounds):
        raise RelumilpError(f"bounds must be a relumilp Bounds (from compute_bounds), got {type(bounds).__name__}")
    check_valid_domain(net, domain)  # a pruned network's domain, as compute_bounds checks it
    for node in net.order:
        lo, hi = bounds.lower.get(node.name), bounds.upper.get(node.name)
        if lo is None or hi is None or np.shape(lo) != (node.size,) or np.shape(hi) != (node.size,):
            raise RelumilpError(f"the given bounds do not fit this network (node {node.name!r} of size {node.size}); "
                                "compute them with compute_bounds on this network")
    lo, hi = bounds[net.input.name]
    if np.any(lo > domain.lower) or np.any(hi < domain.upper):
        raise RelumilpError("the given bounds were computed for a smaller input box than this domain; compute them "
                            "on this domain")
    rng = np.random.default_rng(0)
    corners = np.where(rng.random((8, net.input_size)) < 0.5, domain.lower, domain.upper)
    points = np.vstack([(domain.lower + domain.upper) / 2, corners, domain.sample(BOUNDS_CHECK_POINTS, rng)])
    points = points[domain.contains(points)] if domain.A is not None else points
    for name, value in net.forward_all(points).items():
        if np.any(value < bounds.lower[name]) or np.any(value > bounds.upper[name]):
            raise RelumilpError(f"the given bounds do not hold for this network on this domain (node {name!r}): "
                                "they were computed for another network or domain")


def compile_network(
    network,
    domain,
    tighten: str = "interval",
    scale: bool | str = False,
    bounds: Bounds | None = None,
    **bound_options,
) -> CompiledNetwork:
    """Compile ``network`` (IR, torch module or model file) over ``domain`` into a big-M MILP.

    ``tighten`` names the bound method (``interval``, ``symbolic``, ``alpha``, ``lp``, ``milp``; each runs the
    cheaper ones first); precomputed ``bounds`` skip that step. ``scale`` applies a-posteriori ReLU
    scaling to normalise the big-M coefficients (function unchanged).
    """
    if isinstance(network, Network):
        net = network
    else:
        from .frontends import load_network

        net = load_network(network)
    domain = InputDomain.of(domain, net.input_size)
    start = time.perf_counter()
    if bounds is None:
        bounds = compute_bounds(net, domain, tighten, **bound_options)
    else:
        _check_given_bounds(net, domain, bounds)
    return compile_with_bounds(net, domain, bounds, scale, {"bounds": time.perf_counter() - start})


def compile_with_bounds(net: Network, domain: InputDomain, bounds: Bounds, scale: bool | str = False,
                        times: dict | None = None) -> CompiledNetwork:
    """:func:`compile_network`'s last steps with ``bounds`` taken as they are: for bounds relumilp made
    itself, including a branch-and-bound node's (valid on the node's region only, which the forward-pass
    check of user-given bounds would refuse)."""
    times = {"bounds": 0.0} if times is None else times
    original = None
    if scale:
        from .scaling import scale_network

        start = time.perf_counter()
        original = net
        net, bounds = scale_network(net, bounds, rule=scale if isinstance(scale, str) else "unit")
        times["scaling"] = time.perf_counter() - start
    start = time.perf_counter()
    milp = build_milp(net, bounds, domain)
    times["formulation"] = time.perf_counter() - start
    return CompiledNetwork(net, domain, bounds, milp, times, original)
