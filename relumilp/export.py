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

from ._io import atomic_path, stdout_discarded
from .errors import ModelFileError, RelumilpError


def export_onnx(module, path, input_shape=None, opset: int = 17, check: bool = True):
    """Write ``module`` (a ``torch.nn.Module``) to ``path`` as ONNX; returns the relumilp :class:`Network`.

    ``input_shape`` is one sample's shape (no batch dimension); by default it is read from the first
    ``Linear`` layer (a module that starts with a convolution or pooling needs it). With ``check``, the
    exported model is read back and its forward pass compared with the module's on random inputs, to
    the accuracy of the module's dtype; a mismatch raises :class:`RelumilpError` and leaves ``path`` as
    it was, as does a module that torch cannot export.
    """
    import onnx
    import torch

    from .frontends import from_onnx
    from .frontends._builder import one_line

    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ModelFileError(f"cannot write {path}: the file name must end in .onnx")
    if input_shape is None:
        spatial = (torch.nn.modules.conv._ConvNd, torch.nn.modules.pooling._MaxPoolNd,
                   torch.nn.modules.pooling._AvgPoolNd)
        first = next((m for m in module.modules() if isinstance(m, (torch.nn.Linear, *spatial))), None)
        if not isinstance(first, torch.nn.Linear):
            raise RelumilpError("give input_shape=(...) (one sample's shape, e.g. (3, 32, 32)): the module does not "
                                "start with a Linear layer to read it from")
        input_shape = (first.in_features,)
    parameter = next(module.parameters(), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    example = torch.zeros((1, *input_shape), dtype=dtype)
    was_training = module.training
    module.eval()
    try:
        with atomic_path(path) as tmp:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the exporter's notes about the legacy path and constant folding
                try:  # a failing export prints its whole TorchScript graph: kept off the user's screen
                    with stdout_discarded():
                        torch.onnx.export(module, (example,), str(tmp), dynamo=False, opset_version=opset,
                                          input_names=["input"], output_names=["output"],
                                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
                except Exception as exc:  # torch's own errors (an operator it cannot export at this opset)
                    raise RelumilpError(f"torch cannot export this module to ONNX (opset {opset}): "
                                        f"{one_line(exc)}") from None
            exported = onnx.load(str(tmp))
            exported.producer_name = "relumilp"  # how a later export knows the file is ours to replace
            onnx.save(exported, str(tmp))
            net = from_onnx(tmp, path.stem)
            if check:  # before the file takes its place
                _check_export(module, net, input_shape, dtype, path)
        return net
    finally:
        module.train(was_training)


def _check_export(module, net, input_shape, dtype, path) -> None:
    """Raise unless ``net`` computes what ``module`` does on 64 random inputs, to the accuracy of ``dtype``
    (float32's 1e-4 relative, or a few units in the last place of a lower precision)."""
    import torch

    x = torch.randn((64, *input_shape), dtype=dtype)
    with torch.no_grad():
        expected = module(x).reshape(64, -1).double().numpy()
    got = net.forward(x.reshape(64, -1).double().numpy())
    rtol = max(1e-4, 8.0 * torch.finfo(dtype).eps)
    if not np.allclose(got, expected, rtol=rtol, atol=rtol * (1.0 + np.abs(expected).max())):
        raise RelumilpError(f"the exported {path.name} does not compute what the module does "
                            f"(max difference {np.abs(got - expected).max():.3g})")
