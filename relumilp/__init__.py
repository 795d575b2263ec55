"""relumilp: compile trained ReLU networks into mixed-integer linear programs and solve them globally.

The pipeline is a small compiler: frontends (PyTorch, ONNX, VNN-LIB) produce one IR
(:class:`Network`); bound passes annotate it; a-posteriori scaling transforms it; the big-M backend
emits a MILP into a Pyomo block (:func:`add_network`) or straight into HiGHS; :func:`solve` /
:func:`optimize` solve it and check the answer against the network's own forward pass.
"""

__version__ = "0.1.0"

from . import examples
from .api import add_network
from .bounds import Bounds, compute_bounds
from .domain import InputDomain
from .errors import (InvalidDomainError, InvalidNetworkError, ModelFileError, RelumilpError, SolveError,
                     UnsupportedOperatorError)
from .ir import ActivationNode, AffineNode, InputNode, Network
from .pipeline import CompiledNetwork, compile_network
from .solve import SolveResult, optimize, solve


def load_network(source, **options) -> Network:
    """Read a network from a torch module, an ONNX/TorchScript/torch.export/.npz file, or a Network."""
    from .frontends import load_network as _load

    return _load(source, **options)


__all__ = [
    "ActivationNode", "AffineNode", "Bounds", "CompiledNetwork", "InputDomain", "InputNode", "InvalidDomainError",
    "InvalidNetworkError", "ModelFileError", "Network", "RelumilpError", "SolveError", "SolveResult",
    "UnsupportedOperatorError", "add_network", "compile_network", "compute_bounds", "examples", "load_network",
    "optimize", "solve",
]
