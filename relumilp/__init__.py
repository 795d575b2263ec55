"""relumilp: compile trained ReLU networks into mixed-integer linear programs and solve them globally.

The pipeline is a small compiler: frontends (PyTorch, ONNX, VNN-LIB) produce one IR
(:class:`Network`); bound passes annotate it; a-posteriori scaling transforms it; the big-M backend
emits a MILP into a Pyomo block (:func:`add_network`) or straight into HiGHS; :func:`solve` /
:func:`optimize` solve it and check the answer against the network's own forward pass.
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING

from .errors import (InvalidDomainError, InvalidNetworkError, ModelFileError, RelumilpError, SolveError,
                     UnsupportedOperatorError)

if TYPE_CHECKING:
    from .ir import Network

# Everything numerical loads on first use (PEP 562): ``relumilp --help`` imports no numpy, scipy, Pyomo
# or torch, and ``import relumilp.bounds.obbt`` in a worker process does not pay for Pyomo.
_LAZY = {
    "InputDomain": (".domain", "InputDomain"),
    "Network": (".ir", "Network"),
    "ActivationNode": (".ir", "ActivationNode"),
    "AffineNode": (".ir", "AffineNode"),
    "InputNode": (".ir", "InputNode"),
    "examples": (".examples", None),
    "add_network": (".api", "add_network"),
    "NetworkBlock": (".api", "NetworkBlock"),
    "Bounds": (".bounds", "Bounds"),
    "compute_bounds": (".bounds", "compute_bounds"),
    "CompiledNetwork": (".pipeline", "CompiledNetwork"),
    "compile_network": (".pipeline", "compile_network"),
    "SolveResult": (".optimization", "SolveResult"),
    "optimize": (".optimization", "optimize"),
    "solve": (".optimization", "solve"),
    "verify": (".verify", "verify"),
    "VerificationResult": (".verify", "VerificationResult"),
    "prune": (".pruning", "prune"),
    "pruning": (".pruning", None),
    "train": (".train", None),
    "scale_network": (".scaling", "scale_network"),
    "analyze_network": (".analysis.report", "analyze_network"),
    "export_onnx": (".export", "export_onnx"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'relumilp' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name, __name__)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def load_network(source, **options) -> Network:
    """Read a network from a torch module, an ONNX/TorchScript/torch.export/.npz file, or a Network."""
    from .frontends import load_network as _load

    return _load(source, **options)


__all__ = [
    "ActivationNode", "AffineNode", "Bounds", "CompiledNetwork", "InputDomain", "InputNode", "InvalidDomainError",
    "InvalidNetworkError", "ModelFileError", "Network", "NetworkBlock", "RelumilpError", "SolveError", "SolveResult",
    "UnsupportedOperatorError", "VerificationResult", "add_network", "analyze_network", "compile_network",
    "compute_bounds", "examples", "export_onnx", "load_network", "optimize", "prune", "scale_network", "solve", "verify",
]
