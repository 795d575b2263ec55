"""OMLT as a peer: the same relumilp network built with OMLT's ``ReluBigMFormulation`` (interval bounds).

OMLT is an optional benchmark dependency (``pip install relumilp[bench]``); :func:`omlt_available`
tells whether it can be imported. Only sequential ReLU MLPs are translated; anything else raises
``NotImplementedError`` with the reason, which the benchmarks print as "OMLT cannot read this network".
"""

from __future__ import annotations

import pyomo.environ as pyo

from relumilp.domain import InputDomain
from relumilp.ir import Network


def omlt_available() -> bool:
    try:
        import omlt  # noqa: F401
    except ImportError:
        return False
    return True


def omlt_network_definition(net: Network, domain: InputDomain):
    """An OMLT ``NetworkDefinition`` of a sequential ReLU MLP (OMLT stores weights as (in, out))."""
    from omlt.neuralnet import NetworkDefinition
    from omlt.neuralnet.layer import DenseLayer, InputLayer

    if not net.is_sequential or any(node.kind != "relu" for node in net.activations):
        raise NotImplementedError("OMLT's ReluBigMFormulation takes sequential ReLU networks only")
    definition = NetworkDefinition(scaled_input_bounds={i: (float(lo), float(hi))
                                                        for i, (lo, hi) in enumerate(zip(domain.lower, domain.upper))})
    previous = InputLayer([net.input_size])
    definition.add_layer(previous)
    layers = net.dense_layers()
    for k, (w, b) in enumerate(layers):
        activation = "relu" if k < len(layers) - 1 else "linear"
        layer = DenseLayer([w.shape[1]], [w.shape[0]], w.T.copy(), b.copy(), activation=activation)
        definition.add_layer(layer)
        definition.add_edge(previous, layer)
        previous = layer
    return definition


def omlt_block(model: pyo.Block, net: Network, domain: InputDomain, name: str = "omlt"):
    """Add an ``OmltBlock`` with OMLT's ``ReluBigMFormulation`` of ``net`` to ``model``; returns it."""
    from omlt import OmltBlock
    from omlt.neuralnet import ReluBigMFormulation

    definition = omlt_network_definition(net, domain)
    block = OmltBlock()
    model.add_component(name, block)
    block.build_formulation(ReluBigMFormulation(definition))
    return block
