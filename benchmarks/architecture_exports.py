"""Architecture-shaped ONNX exports for :mod:`benchmarks.onnx_census`: the operators public networks contain.

Small torch networks (random weights, 16 x 16 inputs) with the building blocks of public architectures,
each exported by torch's ONNX exporter at opsets 11, 13 and 17 (the spellings change with the opset:
HardSwish below 14 is ``x * HardSigmoid(x)``, GELU below 20 uses Erf, LayerNorm below 17 is
ReduceMean / Pow / Sqrt). They stand in for the public files of issue #14's survey, which are not in this
repository: what blocks them is what still blocks the public networks built from the same blocks. ::

    nice python -m benchmarks.architecture_exports /tmp/exports
    nice python -m benchmarks.onnx_census /tmp/exports

| name | blocks |
| --- | --- |
| resnet | conv, batch norm, ceil-mode max pooling, residual sums, adaptive average pooling |
| unet | max pooling (ceil mode), bilinear Upsample, skip concatenation |
| yolo_neck | SiLU (as ``x * sigmoid(x)``), nearest Upsample, concatenation, transpose |
| mobilenetv3 / _se | HardSwish, depthwise conv; with a squeeze-and-excitation gate ``x * hardsigmoid(f(x))`` |
| efficientnet / _se | SiLU, batch norm, mean over axes; with a squeeze-and-excitation gate ``x * sigmoid(f(x))`` |
| gelu_mlp | GELU |
| vit | patch embedding, LayerNorm, multi-head attention (softmax, products of values), GELU |
| softmax_cnn | a classifier that ends in Softmax |
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, gate: nn.Module):
        super().__init__()
        self.a, self.b, self.gate = nn.Conv2d(channels, 4, 1), nn.Conv2d(4, channels, 1), gate

    def forward(self, x):
        return x * self.gate(self.b(F.relu(self.a(F.adaptive_avg_pool2d(x, 1)))))


class MobileNetV3(nn.Module):
    def __init__(self, se: bool):
        super().__init__()
        self.c1, self.dw = nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 1, 1, groups=8)
        self.se = SqueezeExcite(8, nn.Hardsigmoid()) if se else nn.Identity()
        self.pw, self.head = nn.Conv2d(8, 8, 1), nn.Linear(8, 10)

    def forward(self, x):
        h = F.hardswish(self.c1(x))
        h = self.se(F.hardswish(self.dw(h)))
        h = self.pw(h) + h
        return self.head(F.adaptive_avg_pool2d(h, 1).flatten(1))


class EfficientNet(nn.Module):
    def __init__(self, se: bool):
        super().__init__()
        self.c1, self.bn, self.dw = nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3, 1, 1, groups=8)
        self.se = SqueezeExcite(8, nn.Sigmoid()) if se else nn.Identity()
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        h = F.silu(self.bn(self.c1(x)))
        return self.head(self.se(F.silu(self.dw(h))).mean((2, 3)))


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.e1, self.e2 = nn.Conv2d(1, 4, 3, 1, 1), nn.Conv2d(4, 8, 3, 1, 1)
        self.d, self.o = nn.Conv2d(12, 4, 3, 1, 1), nn.Conv2d(4, 1, 1)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)

    def forward(self, x):
        a = F.relu(self.e1(x))
        b = F.relu(self.e2(F.max_pool2d(a, 2, ceil_mode=True)))
        return self.o(F.relu(self.d(torch.cat([a, self.up(b)], 1))))


class YoloNeck(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 2, 1)
        self.c3, self.det = nn.Conv2d(16, 8, 1), nn.Conv2d(8, 6, 1)

    def forward(self, x):
        a = F.silu(self.c1(x))
        b = F.silu(self.c2(a))
        h = F.silu(self.c3(torch.cat([a, F.interpolate(b, scale_factor=2, mode="nearest")], 1)))
        return self.det(h).flatten(2).transpose(1, 2)


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.bn, self.c2 = nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3, 1, 1)
        self.pool, self.avg, self.fc = nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.AdaptiveAvgPool2d(1), nn.Linear(8, 10)

    def forward(self, x):
        h = self.pool(F.relu(self.bn(self.c1(x))))
        h = F.relu(h + self.c2(h))
        return self.fc(torch.flatten(self.avg(h), 1))


class ViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.norm = nn.Conv2d(3, 16, 4, 4), nn.LayerNorm(16)
        self.attention = nn.MultiheadAttention(16, 2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        h = self.norm(t)
        t = t + self.attention(h, h, h)[0]
        return self.fc((t + self.mlp(self.norm(t))).mean(1))


class SoftmaxCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4 * 14 * 14, 10)

    def forward(self, x):
        return F.softmax(self.fc(F.relu(self.c(x)).flatten(1)), 1)


def networks() -> dict:
    image = (1, 3, 16, 16)
    return {
        "resnet": (ResNet(), image), "unet": (UNet(), (1, 1, 16, 16)), "yolo_neck": (YoloNeck(), image),
        "mobilenetv3": (MobileNetV3(False), image), "mobilenetv3_se": (MobileNetV3(True), image),
        "efficientnet": (EfficientNet(False), image), "efficientnet_se": (EfficientNet(True), image),
        "gelu_mlp": (nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 2)), (1, 8)),
        "vit": (ViT(), image), "softmax_cnn": (SoftmaxCNN(), image),
    }  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where to write the .onnx files")
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for name, (model, shape) in networks().items():
        model.eval()
        for opset in (13, 17) if name == "vit" else (11, 13, 17):  # torch exports unflatten from opset 13
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, torch.randn(shape), args.folder / f"{name}_opset{opset}.onnx", dynamo=False,
                                  opset_version=opset, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    print(f"wrote {len(list(args.folder.glob('*.onnx')))} files to {args.folder}")


if __name__ == "__main__":
    main()
