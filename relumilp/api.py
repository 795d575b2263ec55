"""The one-call public API: embed a trained network into a Pyomo model as a :class:`NetworkBlock`.

The block is a declared Pyomo block type (like OMLT's blocks and gurobi-machinelearning's predictor
constraints): besides the variables and rows, it carries the compiled network and can start itself
from a forward pass (:meth:`~NetworkBlockData.warm_start`) or from the engine's best point
(:meth:`~NetworkBlockData.warm_start_from_search`), check solver values against the forward
pass (:meth:`~NetworkBlockData.check`) and report its size (:meth:`~NetworkBlockData.stats`).

>>> import pyomo.environ as pyo, relumilp
>>> m = pyo.ConcreteModel()
>>> m.x = pyo.Var(range(2), bounds=(-3, 3))
>>> m.y = pyo.Var()
>>> block = relumilp.add_network(m, relumilp.examples.peaks(), inputs=m.x, outputs=m.y)
>>> m.obj = pyo.Objective(expr=m.y, sense=pyo.maximize)
>>> result = relumilp.solve(m)  # doctest: +SKIP
>>> float(block.get_error().max()) < 1e-6  # doctest: +SKIP
True
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pyomo.environ as pyo
from pyomo.core.base.block import BlockData, declare_custom_block

from .domain import InputDomain
from .errors import InvalidDomainError, RelumilpError, SolveError
from .formulation.pyomo_block import bounds_of, current_range, emit_block, flatten_vars, link, value_of
from .pipeline import CompiledNetwork, compile_network

_counter = itertools.count()


@dataclass
class BlockCheck:
    """A network block's variable values against the forward pass at its input values.

    ``x`` the block's input values, ``y`` the forward pass at ``x``, ``y_milp`` the block's output
    values, ``errors`` ``|y - y_milp|`` per output, ``max_error`` their maximum (infinite when any input
    or output has no value), ``nodes`` (with ``check(nodes=True)``) the largest error of every node.
    """

    x: np.ndarray
    y: np.ndarray
    y_milp: np.ndarray
    errors: np.ndarray
    max_error: float
    nodes: dict[str, float] = field(default_factory=dict)

    def matches(self, tolerance: float = 1e-6) -> bool:
        """Whether the outputs agree with the forward pass up to ``tolerance * (1 + max|y|)``."""
        return self.max_error <= tolerance * (1.0 + float(np.max(np.abs(self.y), initial=0.0)))


def _values(variables) -> np.ndarray:
    """Values of an indexed Var (or Reference) in index order; NaN where unset."""
    return np.array([np.nan if variables[i].value is None else variables[i].value for i in variables.index_set()],
                    dtype=np.float64)


@declare_custom_block(name="NetworkBlock")
class NetworkBlockData(BlockData):
    """A compiled network's big-M MILP in a Pyomo model (see :mod:`relumilp.formulation.pyomo_block`
    for the layout: ``inputs``, ``outputs``, ``nodes[name].y/z/z_cap/rows``, ...).

    ``compiled`` is the :class:`~relumilp.pipeline.CompiledNetwork` (network, domain, bounds,
    matrix-form MILP, times); it is set by :func:`add_network`.
    """

    compiled: CompiledNetwork | None = None
    column_vars: list | None = None
    #: the user's variables tied to the block's ``inputs`` / ``outputs`` by ``add_network`` (flat lists)
    linked_inputs: list | None = None
    linked_outputs: list | None = None
    #: whether the domain was read from ``linked_inputs``' bounds (no ``input_bounds``): :func:`relumilp.solve`
    #: then checks that they still lie in it
    domain_from_inputs: bool = False

    def check_domain(self) -> None:
        """Raise unless every linked input can only take values in the box the block was compiled for
        (when that box was read from their bounds): a bound widened, a fixed value moved or a parameter
        changed after :func:`add_network` would otherwise be cut off by the block without a word."""
        if not (self.domain_from_inputs and self.linked_inputs):
            return
        domain = self.compiled.domain
        for i, item in enumerate(self.linked_inputs):
            low, high = current_range(item)
            slack = 1e-9 * max(1.0, abs(domain.lower[i]), abs(domain.upper[i]))
            if low < domain.lower[i] - slack or high > domain.upper[i] + slack:
                raise SolveError(
                    f"network block {self.name}: input {i} ({item}) can now take values in [{low:.6g}, {high:.6g}], "
                    f"outside the box [{domain.lower[i]:.6g}, {domain.upper[i]:.6g}] it was compiled for from the "
                    "variables' bounds; add the network again, or pass input_bounds= covering every case")

    def warm_start(self, x=None) -> None:
        """Set every variable of the block from the forward pass at input ``x``: a MIP start.

        Without ``x``, the block's current input values are used, then the values of the user's
        input variables tied to them, and the domain's centre where both are unset. The values come
        from :func:`relumilp.formulation.bigm.start_vector` (binaries follow the activation pattern),
        so the start satisfies every row of the block; the user's tied input and output variables get
        the same values, so the link rows hold too.
        """
        from .formulation.bigm import start_vector

        compiled = self.compiled
        if x is not None:
            try:
                x = np.asarray(x, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                raise RelumilpError("warm_start takes one input point (numbers)") from None
            if x.size != compiled.network.input_size or not compiled.domain.contains(x[None], tol=1e-9)[0]:
                raise RelumilpError(f"warm_start needs a point of the block's domain ({compiled.network.input_size} "
                                    "finite numbers inside it): the start must satisfy every row of the block")
        if x is None:
            x = _values(self.inputs)
            if self.linked_inputs:
                unset = np.isnan(x)
                x[unset] = np.array([value_of(v) for v in self.linked_inputs])[unset]
            unset = np.isnan(x)
            x[unset] = ((compiled.domain.lower + compiled.domain.upper) / 2)[unset]
        vector = start_vector(compiled.network, compiled.milp, x)
        for var, value in zip(self.column_vars, vector):
            var.set_value(float(value), skip_validation=True)
        for ours, theirs in ((self.inputs, self.linked_inputs), (self.outputs, self.linked_outputs)):
            for i, var in enumerate(theirs or ()):
                # a user's expression takes its value from its own variables; a fixed variable keeps its own
                if getattr(var, "is_variable_type", lambda: False)() and not var.fixed:
                    var.set_value(ours[i].value, skip_validation=True)

    def warm_start_from_search(self, maximize: int | None = None, minimize: int | None = None, objective=None,
                               time_limit: float | None = None, **optimize_options):
        """Start the block from the engine's best point: :func:`relumilp.optimize` on this network alone.

        Runs ``relumilp.optimize(network, domain, maximize / minimize / objective, time_limit=...)``
        over the block's input domain, with the block's bounds (``optimize_options`` go to it, e.g.
        ``method="bab"``), and, when it found a point, sets the block (and the user's variables tied to
        its inputs and outputs) from the forward pass there (:meth:`warm_start`), so that
        :func:`relumilp.solve` hands it to HiGHS as a MIP start. Returns :func:`~relumilp.optimize`'s
        :class:`~relumilp.optimization.SolveResult` (its ``bound`` is a bound of the network alone).

        The search knows only the network, its input domain and the objective given here (a linear
        function of the outputs), not the rest of the model. The start is just a hint: where the
        model's other constraints (rows on the inputs or outputs, further variables left unset) make
        the point infeasible or poor, HiGHS may reject it or improve on it; the certificate of
        :func:`relumilp.solve` does not depend on it.
        """
        from .optimization import optimize

        compiled = self.compiled
        result = optimize(compiled.network, compiled.domain, maximize, minimize, objective, bounds=compiled.bounds,
                          time_limit=time_limit, **optimize_options)
        if result.x is not None:
            self.warm_start(np.asarray(result.x, dtype=np.float64))
        return result

    def check(self, nodes: bool = False) -> BlockCheck:
        """Compare the block's output values with the forward pass at its input values.

        Works after any solver that loads values into the Pyomo variables. With ``nodes``, also the
        largest error of every node's ``y`` (where the MILP departs from the network first).
        """
        network = self.compiled.network
        x = _values(self.inputs)
        y_milp = _values(self.outputs)
        everything = network.forward_all(x)
        y = everything[network.output]
        errors = np.abs(y - y_milp)
        # the user's side of the link rows is what the objective sees: a link row that the solver held
        # only to its tolerances (or that equilibration relaxed) must not hide behind a consistent block
        if self.linked_outputs or self.linked_inputs:
            x_user = np.array([value_of(v) for v in self.linked_inputs]) if self.linked_inputs else x
            y_user = np.array([value_of(v) for v in self.linked_outputs]) if self.linked_outputs else y_milp
            with np.errstate(invalid="ignore"):
                y_at_user = y if np.array_equal(x_user, x) else network.forward(np.nan_to_num(x_user, nan=0.0))
                user_errors = np.abs(y_at_user - y_user)
                user_errors = np.where(np.isnan(x_user).any(), np.inf, user_errors)
            errors = np.maximum(errors, user_errors)
        max_error = float(np.max(errors, initial=0.0)) if np.isfinite(errors).all() else float("inf")
        report = BlockCheck(x=x, y=y, y_milp=y_milp, errors=errors, max_error=max_error)
        if nodes:
            for name in self.compiled.milp.node_columns:
                error = np.abs(everything[name] - _values(self.nodes[name].y))
                report.nodes[name] = float(np.max(error, initial=0.0)) if np.isfinite(error).all() else float("inf")
        return report

    def get_error(self) -> np.ndarray:
        """``|forward(x) - outputs|`` per output at the block's current values (as gurobi-machinelearning's
        ``get_error``); :meth:`check` gives the input, both outputs and per-node errors too."""
        return self.check().errors

    def stats(self) -> dict:
        """Model size and neuron stability (:meth:`relumilp.pipeline.CompiledNetwork.stats`)."""
        return self.compiled.stats()


def add_network(
    model: pyo.Block,
    network,
    inputs=None,
    outputs=None,
    input_bounds=None,
    *,
    tighten: str = "interval",
    scale: bool | str = False,
    bounds=None,
    name: str | None = None,
    **bound_options,
) -> NetworkBlockData:
    """Add ``network``'s big-M formulation to ``model`` as a new :class:`NetworkBlock` and return it.

    Parameters
    ----------
    model:
        A Pyomo model or block to add the network block to.
    network:
        A :class:`relumilp.Network`, a ``torch.nn.Module``, or a model file (.onnx, TorchScript,
        ``torch.export`` .pt2, relumilp .npz).
    inputs, outputs:
        Optional Pyomo variables (indexed Var, list or array) that the network's flat input and output
        are tied to by equality rows. Without them, use ``block.inputs`` / ``block.outputs``.
    input_bounds:
        An :class:`relumilp.InputDomain`, ``(lower, upper)`` or a dict with ``lower``/``upper``/``A``/``b``;
        defaults to the bounds of ``inputs``.
    tighten, scale, bounds:
        Bound method (``interval``, ``symbolic``, ``alpha``, ``lp``, ``milp``), a-posteriori scaling, or
        precomputed bounds; see :func:`relumilp.compile_network`.

    The block carries ``block.compiled`` (the :class:`~relumilp.pipeline.CompiledNetwork`), which
    :func:`relumilp.solve` uses, through :meth:`NetworkBlockData.check`, to check the answer against
    the network's own forward pass.

    **Batches.** When ``inputs`` holds several samples -- a Var indexed by ``(sample, feature)``, a 2-D
    array or a list of lists of variables -- one block per sample is created (an indexed
    ``NetworkBlock`` over the samples, returned), from one compiled network per distinct input box:
    bounds are computed once per box, not once per sample. ``outputs`` is then indexed the same way.
    """
    if not isinstance(model, pyo.Block):
        raise RelumilpError(f"add_network needs a Pyomo model or block to add to, got {type(model).__name__}")
    samples = _sample_rows(inputs)
    if samples is not None:
        return _add_batch(model, network, samples, outputs, input_bounds, name,
                          dict(tighten=tighten, scale=scale, bounds=bounds, **bound_options))
    input_vars = flatten_vars(inputs)
    from_inputs = input_bounds is None
    if input_bounds is None and input_vars:
        input_bounds = bounds_of(input_vars)
        if input_bounds is None:
            raise InvalidDomainError("some input variables are unbounded: give them bounds or pass input_bounds=")
    compiled = compile_network(network, input_bounds, tighten=tighten, scale=scale, bounds=bounds, **bound_options)
    name = _free_name(model, name)
    block = NetworkBlock(concrete=True)
    model.add_component(name, block)
    populate_block(block, compiled, inputs=input_vars, outputs=outputs)
    block.domain_from_inputs = from_inputs
    return block


def _sample_rows(variables) -> list[list] | None:
    """The variables of each sample when ``variables`` is 2-D (indexed by (sample, feature), an array
    with two dimensions, or a list of lists); None for a single sample."""
    if hasattr(variables, "is_indexed") and variables.is_indexed() and variables.index_set().dimen == 2:
        rows: dict = {}
        for index in variables.index_set():
            rows.setdefault(index[0], []).append(variables[index])
        return list(rows.values())
    if isinstance(variables, np.ndarray) and variables.ndim == 2:
        return [list(row) for row in variables]
    if isinstance(variables, (list, tuple)) and variables and all(isinstance(r, (list, tuple, np.ndarray))
                                                                  for r in variables):
        return [flatten_vars(row) for row in variables]
    return None


def _add_batch(model, network, samples, outputs, input_bounds, name, options) -> pyo.Block:
    """One network block per sample, sharing one compiled network per distinct input box. ``outputs`` is
    2-D like the inputs, or flat (``m.Y[s]`` for a one-output network): ``output_size`` per sample."""
    if outputs is not None:
        rows = _sample_rows(outputs)
        if rows is None:
            flat = flatten_vars(outputs)
            width = len(flat) // len(samples) if len(flat) % len(samples) == 0 else 0
            rows = [flat[k * width:(k + 1) * width] for k in range(len(samples))] if width else None
        if rows is None or len(rows) != len(samples):
            raise InvalidDomainError(f"{len(samples)} input samples, but the outputs cannot be split into as many "
                                     "samples: give them indexed by (sample, output), or one per sample")
        outputs = rows
    name = _free_name(model, name)
    blocks = NetworkBlock(range(len(samples)), concrete=True)
    model.add_component(name, blocks)
    compiled_for: dict = {}
    for k, row in enumerate(samples):
        box = input_bounds if input_bounds is not None else bounds_of(row)
        if box is None:
            raise InvalidDomainError(f"sample {k}: some input variables are unbounded: give them bounds or "
                                     "pass input_bounds=")
        domain = InputDomain.of(box, len(row))
        key = domain.content_hash
        if key not in compiled_for:
            compiled_for[key] = compile_network(network, domain, **options)
        populate_block(blocks[k], compiled_for[key], inputs=row, outputs=None if outputs is None else outputs[k])
        blocks[k].domain_from_inputs = input_bounds is None
    return blocks


def _free_name(model, name: str | None) -> str:
    name = name or f"network_{next(_counter)}"
    while model.component(name) is not None:
        name = f"{name}_{next(_counter)}"
    return name


def populate_block(block: NetworkBlockData, compiled: CompiledNetwork, inputs=None, outputs=None) -> NetworkBlockData:
    """Emit a compiled network into an existing (empty) network block and link it to the user's variables."""
    block.column_vars = emit_block(compiled.milp, block)
    block.compiled = compiled
    if inputs:
        block.linked_inputs = link(block, "link_inputs", block.inputs, inputs, compiled.network.input_size)
    if outputs is not None:
        block.linked_outputs = link(block, "link_outputs", block.outputs, outputs, compiled.network.output_size)
    return block


def network_blocks(model: pyo.Block) -> list[NetworkBlockData]:
    """All active, populated network blocks in ``model`` (at any depth)."""
    return [block for block in model.block_data_objects(active=True, descend_into=True)
            if isinstance(block, NetworkBlockData) and block.compiled is not None]
