"""Census of torch.nn layers: which compile through torch.fx, torch.export and a TorchScript trace (issue #14).

Each layer is put behind a ``Linear`` (so that the network's input is a plain vector), reshaped to the input
its kind takes (a vector, a sequence, an image), and converted from the module itself (torch.fx), from
``torch.export.export`` at batch 1 and from ``torch.jit.trace``; a conversion counts as ``ok`` when the
IR's float64 forward pass matches torch's float64 forward pass within 1e-8 on three random inputs. Every
other outcome gives the error's first line. ::

    nice python -m benchmarks.torch_layer_census --csv benchmarks/results/torch_layer_census.csv
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import warnings

import numpy as np
import torch
from torch import nn

from relumilp._io import any_file, atomic_write_text
from relumilp.frontends import from_torch

#: layer name -> (constructor, the per-sample shape it reads)
VECTOR, SEQUENCE, IMAGE, SIGNAL = (8,), (3, 4), (2, 4, 4), (2, 8)
LAYERS = {
    "ReLU": (nn.ReLU, VECTOR), "ReLU6": (nn.ReLU6, VECTOR), "LeakyReLU": (nn.LeakyReLU, VECTOR),
    "PReLU": (nn.PReLU, VECTOR), "RReLU": (nn.RReLU, VECTOR), "ELU": (nn.ELU, VECTOR), "SELU": (nn.SELU, VECTOR),
    "CELU": (lambda: nn.CELU(0.5), VECTOR), "GELU": (nn.GELU, VECTOR), "GELU(tanh)": (lambda: nn.GELU("tanh"), VECTOR),
    "SiLU": (nn.SiLU, VECTOR), "Mish": (nn.Mish, VECTOR), "Sigmoid": (nn.Sigmoid, VECTOR), "Tanh": (nn.Tanh, VECTOR),
    "Hardtanh": (nn.Hardtanh, VECTOR), "Hardsigmoid": (nn.Hardsigmoid, VECTOR), "Hardswish": (nn.Hardswish, VECTOR),
    "Softplus": (nn.Softplus, VECTOR), "Softplus(beta=2)": (lambda: nn.Softplus(2.0), VECTOR),
    "Softsign": (nn.Softsign, VECTOR), "Tanhshrink": (nn.Tanhshrink, VECTOR), "Softshrink": (nn.Softshrink, VECTOR),
    "Hardshrink": (nn.Hardshrink, VECTOR), "Threshold(v=t)": (lambda: nn.Threshold(0.1, 0.1), VECTOR),
    "LogSigmoid": (nn.LogSigmoid, VECTOR), "Softmax": (lambda: nn.Softmax(-1), VECTOR),
    "LogSoftmax": (lambda: nn.LogSoftmax(-1), VECTOR), "Softmin": (lambda: nn.Softmin(-1), VECTOR),
    "Softmax2d": (nn.Softmax2d, IMAGE), "GLU": (nn.GLU, VECTOR),
    "Linear": (lambda: nn.Linear(8, 3), VECTOR), "Bilinear": (None, VECTOR), "Identity": (nn.Identity, VECTOR),
    "Flatten": (nn.Flatten, IMAGE), "Unflatten": (lambda: nn.Unflatten(1, (2, 4)), VECTOR),
    "Dropout": (nn.Dropout, VECTOR), "AlphaDropout": (nn.AlphaDropout, VECTOR),
    "BatchNorm1d": (lambda: nn.BatchNorm1d(8), VECTOR), "BatchNorm2d": (lambda: nn.BatchNorm2d(2), IMAGE),
    "LayerNorm": (lambda: nn.LayerNorm(4), SEQUENCE), "GroupNorm": (lambda: nn.GroupNorm(1, 2), IMAGE),
    "InstanceNorm2d": (lambda: nn.InstanceNorm2d(2, affine=True), IMAGE),
    "RMSNorm": (lambda: nn.RMSNorm(4, eps=1e-6), SEQUENCE),
    "LocalResponseNorm": (lambda: nn.LocalResponseNorm(2), IMAGE),
    "Conv1d": (lambda: nn.Conv1d(2, 3, 3), SIGNAL), "Conv2d": (lambda: nn.Conv2d(2, 3, 3, padding=1), IMAGE),
    "ConvTranspose2d": (lambda: nn.ConvTranspose2d(2, 3, 2, stride=2), IMAGE),
    "MaxPool1d": (lambda: nn.MaxPool1d(2), SIGNAL), "MaxPool2d": (lambda: nn.MaxPool2d(2), IMAGE),
    "AvgPool2d": (lambda: nn.AvgPool2d(2), IMAGE), "LPPool2d": (lambda: nn.LPPool2d(1, 2), IMAGE),
    "AdaptiveAvgPool2d": (lambda: nn.AdaptiveAvgPool2d(1), IMAGE),
    "AdaptiveMaxPool2d": (lambda: nn.AdaptiveMaxPool2d(2), IMAGE),
    "ZeroPad2d": (lambda: nn.ZeroPad2d(1), IMAGE), "ReflectionPad2d": (lambda: nn.ReflectionPad2d(1), IMAGE),
    "ReplicationPad2d": (lambda: nn.ReplicationPad2d(1), IMAGE), "CircularPad2d": (lambda: nn.CircularPad2d(1), IMAGE),
    "Upsample(nearest)": (lambda: nn.Upsample(scale_factor=2), IMAGE),
    "Upsample(bilinear)": (lambda: nn.Upsample(scale_factor=2, mode="bilinear"), IMAGE),
    "PixelShuffle": (lambda: nn.PixelShuffle(2), (4, 2, 2)), "ChannelShuffle": (lambda: nn.ChannelShuffle(2), IMAGE),
    "MultiheadAttention": (None, SEQUENCE), "TransformerEncoderLayer": (None, SEQUENCE),
}  # fmt: skip


class _Wrapped(nn.Module):
    """``layer(Linear(x).view(shape))``: a vector input for every layer kind."""

    def __init__(self, name: str, layer, shape):
        super().__init__()
        self.shape, self.name = shape, name
        self.fc = nn.Linear(math.prod(shape), math.prod(shape))
        self.layer = layer

    def forward(self, x):
        h = self.fc(x).view(-1, *self.shape)
        if self.name == "Bilinear":
            return self.layer(h, h)
        if self.name == "MultiheadAttention":
            return self.layer(h, h, h, need_weights=False)[0].flatten(1)
        return self.layer(h).flatten(1)


def _layer(name: str):
    if name == "Bilinear":
        return nn.Bilinear(8, 8, 3)
    if name == "MultiheadAttention":
        return nn.MultiheadAttention(4, 2, batch_first=True)
    if name == "TransformerEncoderLayer":
        return nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True)
    return LAYERS[name][0]()


def census(names) -> list[dict]:
    rows = []
    for name in names:
        shape = LAYERS[name][1]
        torch.manual_seed(0)
        module = _Wrapped(name, _layer(name), shape).eval()
        x = np.random.default_rng(1).normal(size=(3, math.prod(shape)))
        expected = module.double()(torch.as_tensor(x)).detach().numpy().reshape(3, -1)
        module.float()
        row = {"layer": name}
        for source in ("fx", "export", "trace"):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    example = torch.randn(1, math.prod(shape))
                    model = module if source == "fx" else torch.export.export(module, (example,)) \
                        if source == "export" else torch.jit.trace(module, example, check_trace=False)
                    got = from_torch(model, input_shape=(math.prod(shape),)).forward(x)
                error = float(np.max(np.abs(got - expected)))
                row[source] = "ok" if error <= 1e-8 else f"differs by {error:.2g}"
            except Exception as exc:  # the census reports every failure, whatever it is
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                row[source] = f"{type(exc).__name__}: {text[:140]}"
        rows.append(row)
        print(f"{name:26} " + "  ".join(f"{s}={'ok' if row[s] == 'ok' else 'no'}" for s in ("fx", "export", "trace")),
              flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", help="write the rows here (whole or not at all)")
    args = parser.parse_args(argv)
    rows = census(list(LAYERS))
    for source in ("fx", "export", "trace"):
        print(f"{source}: {sum(r[source] == 'ok' for r in rows)} of {len(rows)} layers compile to torch's function")
    print(f"any source: {sum(any(r[s] == 'ok' for s in ('fx', 'export', 'trace')) for r in rows)} of {len(rows)}")
    if args.csv:
        text = io.StringIO()
        writer = csv.DictWriter(text, ["layer", "fx", "export", "trace"])
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(args.csv, text.getvalue(), ours=any_file)


if __name__ == "__main__":
    main()
