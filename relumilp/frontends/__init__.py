"""Model frontends: read a trained network from PyTorch, TorchScript, torch.export, ONNX, scikit-learn or
.npz into the IR.

:func:`load_network` picks the frontend from the object's type or the file's extension; the frontend
modules (:mod:`relumilp.frontends.torch`, :mod:`relumilp.frontends.onnx`) are imported only when needed,
so reading an ONNX or .npz file never imports torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelFileError
from ..ir import Network

TORCHSCRIPT_EXTENSIONS = (".pt", ".pth", ".ts", ".jit")
EXTENSIONS = (".onnx", *TORCHSCRIPT_EXTENSIONS, ".pt2", ".npz")

__all__ = ["load_network", "from_torch", "from_onnx", "from_sklearn", "EXTENSIONS"]


def from_torch(module, input_shape=None, name=None) -> Network:
    """See :func:`relumilp.frontends.torch.from_torch`."""
    from .torch import from_torch as convert

    return convert(module, input_shape, name)


def from_onnx(source, name=None) -> Network:
    """See :func:`relumilp.frontends.onnx.from_onnx`."""
    from .onnx import from_onnx as convert

    return convert(source, name)


def from_sklearn(model, name=None) -> Network:
    """See :func:`relumilp.frontends.sklearn.from_sklearn`."""
    from .sklearn import from_sklearn as convert

    return convert(model, name)


def load_network(source, input_shape=None) -> Network:
    """Read a network into the IR.

    ``source`` is a :class:`Network` (returned as is), a live ``torch.nn.Module``, TorchScript module or
    ``torch.export`` ExportedProgram, an ``onnx.ModelProto``, a fitted scikit-learn ``MLPRegressor`` /
    ``MLPClassifier`` (or a ``Pipeline`` of scalers and one), or a path: ``.onnx`` (ONNX),
    ``.pt``/``.pth``/``.ts``/``.jit`` (TorchScript, ``torch.jit.save``), ``.pt2`` (``torch.export.save``)
    or ``.npz`` (:meth:`Network.save`). ``input_shape`` (per sample, no batch dimension) is needed only
    for torch models that do not start with a Linear layer.
    """
    if isinstance(source, Network):
        return source
    if not isinstance(source, (str, os.PathLike)):
        if type(source).__module__.startswith("onnx"):
            return from_onnx(source)
        if type(source).__module__.startswith("sklearn."):
            return from_sklearn(source)
        return from_torch(source, input_shape)
    path = Path(source)
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder: give the model file itself (.onnx, .pt, .pt2, .ts, .npz)")
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return from_onnx(path)
    if suffix == ".npz":
        return Network.load(path)
    if suffix == ".pt2":
        from .torch import load_exported

        return from_torch(load_exported(path), input_shape, path.stem)
    if suffix in TORCHSCRIPT_EXTENSIONS:
        from .torch import load_torchscript

        return from_torch(load_torchscript(path), input_shape, path.stem)
    raise ModelFileError(
        f"unsupported model file extension {suffix or '(none)'!r} for {path}; supported: {', '.join(EXTENSIONS)}"
    )
