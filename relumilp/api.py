"""The one-call public API: embed a trained network into a Pyomo model.

>>> import pyomo.environ as pyo, relumilp
>>> m = pyo.ConcreteModel()
>>> m.x = pyo.Var(range(2), bounds=(-3, 3))
>>> m.y = pyo.Var()
>>> block = relumilp.add_network(m, relumilp.examples.peaks(), inputs=m.x, outputs=m.y)
>>> m.obj = pyo.Objective(expr=m.y, sense=pyo.maximize)
>>> result = relumilp.solve(m)  # doctest: +SKIP
"""

from __future__ import annotations

import itertools

import pyomo.environ as pyo

from .errors import InvalidDomainError
from .formulation.pyomo_block import bounds_of, emit_block, flatten_vars, link
from .pipeline import CompiledNetwork, compile_network

_counter = itertools.count()


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
) -> pyo.Block:
    """Add ``network``'s big-M formulation to ``model`` as a new block and return the block.

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
        An :class:`relumilp.InputDomain` or ``(lower, upper)``; defaults to the bounds of ``inputs``.
    tighten, scale, bounds:
        Bound method (``interval``, ``symbolic``, ``lp``, ``milp``), a-posteriori scaling, or
        precomputed bounds; see :func:`relumilp.compile_network`.

    The block carries ``block.compiled`` (the :class:`~relumilp.pipeline.CompiledNetwork`: network,
    bounds, matrix-form MILP, timings), which :func:`relumilp.solve` uses to check the answer against
    the network's own forward pass.
    """
    input_vars = flatten_vars(inputs)
    if input_bounds is None and input_vars:
        input_bounds = bounds_of(input_vars)
        if input_bounds is None:
            raise InvalidDomainError("some input variables are unbounded: give them bounds or pass input_bounds=")
    compiled = compile_network(network, input_bounds, tighten=tighten, scale=scale, bounds=bounds, **bound_options)
    name = name or f"network_{next(_counter)}"
    while model.component(name) is not None:
        name = f"{name}_{next(_counter)}"
    block = pyo.Block(concrete=True)
    model.add_component(name, block)
    return populate_block(block, compiled, inputs=input_vars, outputs=outputs)


def populate_block(block: pyo.Block, compiled: CompiledNetwork, inputs=None, outputs=None) -> pyo.Block:
    """Emit a compiled network into an existing (empty) block and link it to the user's variables."""
    block.column_vars = emit_block(compiled.milp, block)
    block.compiled = compiled
    if inputs:
        link(block, "link_inputs", block.inputs, inputs, compiled.network.input_size)
    if outputs is not None:
        link(block, "link_outputs", block.outputs, outputs, compiled.network.output_size)
    return block


def warm_start(block: pyo.Block, x) -> None:
    """Set every variable of a network block from the forward pass at input ``x``: a MIP start.

    The values come from :func:`relumilp.formulation.bigm.start_vector` (binaries follow the
    activation pattern), so the start satisfies every row of the block. :func:`relumilp.solve` hands
    them to HiGHS, which then never lacks an incumbent.
    """
    from .formulation.bigm import start_vector

    compiled = block.compiled
    vector = start_vector(compiled.network, compiled.milp, x)
    for var, value in zip(block.column_vars, vector):
        var.set_value(float(value), skip_validation=True)


def network_blocks(model: pyo.Block) -> list[pyo.Block]:
    """All blocks in ``model`` that hold a compiled network."""
    found = []
    for block in model.block_data_objects(active=True, descend_into=True):
        if isinstance(getattr(block, "compiled", None), CompiledNetwork):
            found.append(block)
    return found
