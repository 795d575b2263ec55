"""The same trained net read from torch, TorchScript, torch.export and ONNX gives identical optima."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from relumilp import load_network, optimize
from relumilp.train import ClippedReLU


def test_all_formats_give_identical_irs_and_optima(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.LeakyReLU(0.125),
        torch.nn.Linear(8, 6), ClippedReLU(1.5), torch.nn.Linear(6, 2),
    ).double().eval()
    example = torch.zeros(1, 3, dtype=torch.float64)
    torch.jit.save(torch.jit.trace(model, example), tmp_path / "m.pt")
    torch.export.save(torch.export.export(model, (example,)), tmp_path / "m.pt2")
    torch.onnx.export(model, (example,), tmp_path / "m.onnx", dynamo=False, opset_version=17)
    nets = {"module": load_network(model)} | {
        suffix: load_network(tmp_path / f"m.{suffix}") for suffix in ("pt", "pt2", "onnx")
    }
    reference = nets["module"]
    for name, net in nets.items():
        assert [type(n).__name__ for n in net.order] == [type(n).__name__ for n in reference.order], name
        for a, b in zip(net.affines, reference.affines):
            np.testing.assert_allclose(a.weight, b.weight, rtol=0, atol=1e-12)
            np.testing.assert_allclose(a.bias, b.bias, rtol=0, atol=1e-12)
    box = ([-1.0] * 3, [1.0] * 3)
    optima = {name: optimize(net, box, maximize=1).objective for name, net in nets.items()}
    for name, value in optima.items():
        assert value == pytest.approx(optima["module"], abs=1e-9), name
    x = torch.tensor(optimize(reference, box, maximize=1).x).unsqueeze(0)
    assert model(x)[0, 1].item() == pytest.approx(optima["module"], abs=1e-9)
