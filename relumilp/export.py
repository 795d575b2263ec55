"""Export a torch module to ONNX in a way that works with the pinned torch, and check the result.

torch 2.9 and later default to the ``torch.export``-based ONNX exporter, which needs the separate
``onnxscript`` package; :func:`export_onnx` uses the TorchScript-based exporter (``dynamo=False``),
which needs nothing beyond torch and onnx, gives the file a dynamic batch dimension, writes it whole
or not at all, and then reads it back with relumilp to check that the IR computes what the module does.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ._io import atomic_path
from .errors import ModelFileError, RelumilpError


def export_onnx(module, path, input_shape=None, opset: int = 17, check: bool = True):
    """Write ``module`` (a ``torch.nn.Module``) to ``path`` as ONNX; returns the relumilp :class:`Network`.

    ``input_shape`` is one sample's shape (no batch dimension); by default it is read from the first
    ``Linear`` layer. With ``check``, the exported file is read back and its forward pass compared
    with the module's on random inputs (float32 accuracy), raising :class:`RelumilpError` on a mismatch.
    """
    import onnx
    import torch

    from .frontends import load_network

    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ModelFileError(f"cannot write {path}: the file name must end in .onnx")
    if input_shape is None:
        first = next((m for m in module.modules() if isinstance(m, torch.nn.Linear)), None)
        if first is None:
            raise RelumilpError("give input_shape=(...): the module has no Linear layer to read it from")
        input_shape = (first.in_features,)
    parameter = next(module.parameters(), None)
    example = torch.zeros((1, *input_shape), dtype=parameter.dtype if parameter is not None else torch.float32)
    was_training = module.training
    module.eval()
    try:
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes about the legacy path and constant folding
            torch.onnx.export(module, (example,), str(tmp), dynamo=False, opset_version=opset,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
            exported = onnx.load(str(tmp))
            exported.producer_name = "relumilp"  # how a later export knows the file is ours to replace
            onnx.save(exported, str(tmp))
        net = load_network(path)
        if check:
            x = torch.randn((64, *input_shape), dtype=example.dtype)
            with torch.no_grad():
                expected = module(x).reshape(64, -1).double().numpy()
            got = net.forward(x.reshape(64, -1).double().numpy())
            tolerance = 1e-4 * (1.0 + np.abs(expected).max())
            if not np.allclose(got, expected, rtol=1e-4, atol=tolerance):
                raise RelumilpError(f"the exported {path.name} does not compute what the module does "
                                    f"(max difference {np.abs(got - expected).max():.3g})")
        return net
    finally:
        module.train(was_training)
