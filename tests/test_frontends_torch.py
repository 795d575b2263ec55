"""Tests of the PyTorch frontends: nn.Module (torch.fx), TorchScript and torch.export to the IR, and load_network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from relumilp.errors import InvalidNetworkError, ModelFileError, UnsupportedOperatorError
from relumilp.frontends import load_network
from relumilp.frontends.torch import from_torch
from conftest import assert_same_ir
from relumilp.ir import Network

# torch.jit / torch.onnx TorchScript APIs are deprecated upstream but are exactly what is under test.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]


def assert_matches(net: Network, module, x: torch.Tensor, tol: float = 1e-12) -> None:
    with torch.no_grad():
        expected = module(x).reshape(len(x), -1).numpy()
    np.testing.assert_allclose(net(x.reshape(len(x), -1).numpy()), expected, rtol=tol, atol=tol)


def randomise_batch_norms(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so folding is really exercised."""
    gen = torch.Generator().manual_seed(seed)
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm1d):
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n, generator=gen, dtype=bn.running_mean.dtype))
            bn.running_var.copy_(0.3 + torch.rand(n, generator=gen, dtype=bn.running_var.dtype) * 2)
            bn.weight.data.copy_(torch.randn(n, generator=gen, dtype=bn.weight.dtype))
            bn.bias.data.copy_(torch.randn(n, generator=gen, dtype=bn.bias.dtype))
    return module


def every_layer_mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(5, 8),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.Sequential(nn.Linear(8, 8), nn.LeakyReLU(0.1), nn.Dropout(0.3)),
        nn.Linear(8, 6),
        nn.Hardtanh(0.0, 2.5),
        nn.Flatten(),
        nn.Identity(),
        nn.Linear(6, 6),
        nn.ReLU6(),
        nn.Linear(6, 3),
    )
    return randomise_batch_norms(net.double().eval())


class ResidualCat(nn.Module):
    """A traceable custom module: residual add, concatenation and the functional activations."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, 6)
        self.mid = nn.Linear(6, 6)
        self.bn = nn.BatchNorm1d(6)
        self.out = nn.Linear(12, 3)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        y = h + self.mid(F.relu(h))
        y = F.leaky_relu(self.bn(y), 0.2)
        z = torch.cat([y, F.hardtanh(h, 0.0, 1.5)], dim=1)
        z = torch.clamp(z.view(z.size(0), -1), min=0, max=3.0)
        return self.out(z.reshape(z.shape[0], -1).flatten(1))


def residual_cat(seed: int = 0) -> ResidualCat:
    torch.manual_seed(seed)
    return randomise_batch_norms(ResidualCat().double().eval(), seed)


def n_inputs(module: nn.Module) -> int:
    return next(m for m in module.modules() if isinstance(m, nn.Linear)).in_features


def inputs(n_in: int, seed: int = 1, n: int = 64) -> torch.Tensor:
    return torch.randn(n, n_in, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2


# -- nn.Module through torch.fx -----------------------------------------------------------------------------


def test_sequential_with_every_supported_layer():
    module = every_layer_mlp()
    net = from_torch(module)
    assert_matches(net, module, inputs(5))
    assert net.is_sequential
    assert [n.name for n in net] == [
        "input", "linear0", "act0", "linear1", "act1", "linear2", "act2", "linear3", "act3", "linear4",
    ]  # fmt: skip
    kinds = [(a.kind, a.alpha, a.cap) for a in net.activations]
    assert kinds == [
        ("relu", 0.0, math.inf), ("leaky_relu", 0.1, math.inf), ("clipped_relu", 0.0, 2.5), ("clipped_relu", 0.0, 6.0),
    ]  # fmt: skip
    assert net.input_shape == (5,) and net.output_shape == (3,)
    assert all(w.dtype == np.float64 for a in net.affines for w in a.weights)


def test_consecutive_affine_layers_fuse_into_one_node():
    torch.manual_seed(3)
    layers = [nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Dropout(), nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 2)]
    module = randomise_batch_norms(nn.Sequential(*layers).double().eval())
    net = from_torch(module)
    assert [type(n).__name__ for n in net] == ["InputNode", "AffineNode", "ActivationNode", "AffineNode"]
    bn = module[1]
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    shift = (bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    w1, b1, w2, b2 = (p.detach().numpy() for p in (module[0].weight, module[0].bias, module[3].weight, module[3].bias))
    np.testing.assert_allclose(net["linear0"].weight, w2 @ (scale[:, None] * w1), atol=1e-12)
    np.testing.assert_allclose(net["linear0"].bias, w2 @ (scale * b1 + shift) + b2, atol=1e-12)
    assert_matches(net, module, inputs(4))


def test_batch_norm_uses_running_statistics_even_in_train_mode():
    torch.manual_seed(4)
    module = randomise_batch_norms(nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 2)).double())
    module.train()
    with pytest.warns(UserWarning, match="training mode"):  # compiled with eval semantics, never silently
        net = from_torch(module)
    assert module.training  # the caller's module is left as it was
    assert_matches(net, module.eval(), inputs(3))


def test_fx_traced_custom_module_with_residual_and_cat():
    module = residual_cat()
    net = from_torch(module)
    assert_matches(net, module, inputs(4))
    assert not net.is_sequential
    # the residual sum h + mid(relu(h)) reads h (act0) and relu(h) (act1): one two-input affine node.
    assert len(net["linear1"].inputs) == 2
    assert [a.kind for a in net.activations] == ["relu", "relu", "leaky_relu", "clipped_relu", "clipped_relu"]


def test_clipped_relu_subclass_of_hardtanh_and_input_shape():
    class ClippedReLU(nn.Hardtanh):
        def __init__(self, cap: float = 1.0):
            super().__init__(0.0, cap)

    torch.manual_seed(5)
    module = nn.Sequential(nn.Flatten(), nn.Linear(6, 4), ClippedReLU(0.7), nn.Linear(4, 1)).double().eval()
    net = from_torch(module, input_shape=(2, 3))
    assert net.input_shape == (2, 3) and net.activations[0].cap == 0.7
    x = inputs(6).reshape(-1, 2, 3)
    assert_matches(net, module, x)
    assert_same_ir(from_torch(module), net.replace([], input_shape=(6,)))


def test_input_shape_is_required_without_a_leading_linear():
    module = nn.Sequential(nn.ReLU(), nn.Flatten())
    with pytest.raises(InvalidNetworkError, match="input_shape"):
        from_torch(module)
    assert from_torch(module, input_shape=3).activations[0].inputs == ("input",)


# -- TorchScript and torch.export ----------------------------------------------------------------------


@pytest.mark.parametrize("make", [every_layer_mlp, residual_cat], ids=["mlp", "residual"])
@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_file_gives_the_same_ir(tmp_path, make, how):
    module = make()
    x = inputs(n_inputs(module))
    scripted = torch.jit.script(module) if how == "script" else torch.jit.trace(module, x[:2])
    path = tmp_path / f"model.{'pt' if how == 'script' else 'ts'}"
    scripted.save(str(path))
    net = load_network(path)
    assert_same_ir(net, from_torch(module))
    assert_matches(net, module, x)


@pytest.mark.parametrize("make", [every_layer_mlp, residual_cat], ids=["mlp", "residual"])
def test_torch_export_file_gives_the_same_ir(tmp_path, make):
    module = make()
    x = inputs(n_inputs(module))
    exported = torch.export.export(module, (x[:3],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(exported, str(tmp_path / "model.pt2"))
    net = load_network(tmp_path / "model.pt2")
    assert_same_ir(net, from_torch(module))
    assert_matches(net, module, x)


def test_torch_export_with_a_static_batch_size():
    module = residual_cat(7)
    x = inputs(4)
    net = from_torch(torch.export.export(module, (x[:5],)))  # view(5, -1) is baked into the graph
    assert_same_ir(net, from_torch(module))


def test_nan_weights_name_the_layer():
    module = every_layer_mlp()
    with torch.no_grad():
        module[4].weight[0, 0] = float("nan")
    for source in (module, torch.jit.script(module)):
        with pytest.raises(InvalidNetworkError, match="NaN") as err:
            from_torch(source)
        assert "module 4" in str(err.value) and "\n" not in str(err.value)


# -- unsupported layers and operations --------------------------------------------------------------------


class SoftExponential(nn.Module):
    def forward(self, x):
        return torch.exp(x) - 1


class RePU(nn.Module):
    def forward(self, x):
        return torch.relu(x) ** 2


SMOOTH_LAYERS = [
    SoftExponential(), RePU(),
]  # fmt: skip  (user layers of these names; torch's smooth layers compile: tests/test_smooth.py, test_frontends_activations.py)


@pytest.mark.parametrize("layer", SMOOTH_LAYERS, ids=lambda m: type(m).__name__)
def test_smooth_activation_is_refused_with_a_retraining_hint(layer):
    module = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.ReLU(), layer), nn.Linear(4, 1))
    with pytest.raises(UnsupportedOperatorError) as err:
        from_torch(module)
    message = str(err.value)
    assert f"'{type(layer).__name__}' (module 1.1)" in message
    assert "not piecewise-linear" in message and "ClippedReLU" in message and "Linear" in message
    assert "\n" not in message


def test_smooth_custom_layer_in_an_exported_program_compiles_through_its_operations():
    """torch.export decomposes RePU into ``relu(x).pow(2)``: a ReLU and a square neuron, the same function."""
    module = nn.Sequential(nn.Linear(3, 4), RePU(), nn.Linear(4, 1))
    net = from_torch(torch.export.export(module, (torch.randn(2, 3),)))
    x = np.random.default_rng(0).normal(size=(8, 3))
    np.testing.assert_allclose(net.forward(x), module.double()(torch.as_tensor(x)).detach().numpy(), rtol=1e-10)
    assert [a.activation.kind for a in net.activations] == ["relu", "square"]


def test_smooth_functions_in_traced_and_scripted_graphs():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return torch.erf(self.fc(x))

    torch.manual_seed(0)
    module = Net().eval()
    x = torch.randn(5, 3)
    for source in (module, torch.jit.script(module)):
        net = from_torch(source)
        assert [a.activation.kind for a in net.activations] == ["erf"]
        np.testing.assert_allclose(net.forward(x.numpy()), module(x).detach().numpy(), rtol=1e-6, atol=1e-6)


def test_other_unsupported_layers_and_clip_ranges():
    with pytest.raises(UnsupportedOperatorError, match="'Hardshrink' \\(module 0\\).*not continuous") as err:
        from_torch(nn.Sequential(nn.Hardshrink(0.5), nn.Flatten(), nn.Linear(5, 1)), input_shape=(1, 5))
    assert "not piecewise-linear" not in str(err.value) and "\n" not in str(err.value)
    class ClampReversed(nn.Module):  # low above high: not a clip relumilp compiles
        def forward(self, x):
            return torch.clamp(x, min=1.0, max=0.5)

    with pytest.raises(UnsupportedOperatorError, match="clip range \\[1, 0.5\\].*low < high") as err:
        from_torch(nn.Sequential(nn.Linear(2, 2), ClampReversed()))
    assert "\n" not in str(err.value)
    with pytest.raises(UnsupportedOperatorError, match="batch statistics"):
        from_torch(torch.export.export(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).train(), (torch.randn(4, 2),)))


# -- load_network on files ---------------------------------------------------------------------------


def test_load_network_passes_networks_and_modules_through(tmp_path):
    rng = np.random.default_rng(0)
    net = Network.sequential([(rng.normal(size=(3, 2)), rng.normal(size=3)), (rng.normal(size=(1, 3)), np.zeros(1))])
    assert load_network(net) is net
    net.save(tmp_path / "net.npz")
    assert load_network(tmp_path / "net.npz").content_hash == net.content_hash
    module = every_layer_mlp()
    assert_same_ir(load_network(module), from_torch(module))


def bad_file(tmp_path, kind: str):
    if kind == "missing":
        return tmp_path / "nope.pt"
    if kind == "extension":
        path = tmp_path / "model.h5"
        path.write_bytes(b"\x89HDF")
        return path
    if kind == "state_dict":
        torch.save(every_layer_mlp().state_dict(), tmp_path / "weights.pt")
        return tmp_path / "weights.pt"
    if kind == "pickled_module":
        torch.save(nn.Sequential(nn.Linear(2, 1)), tmp_path / "whole.pth")
        return tmp_path / "whole.pth"
    path = tmp_path / ("model.pt" if kind == "corrupt_pt" else "model.pt2")
    path.write_bytes(b"PK\x03\x04 definitely not a zip archive" * 10)
    return path


@pytest.mark.parametrize(
    "kind, pattern",
    [
        ("missing", "model file not found"),
        ("extension", "unsupported model file extension '.h5'.*\\.onnx, \\.pt, \\.pth"),
        ("state_dict", "state dict, which has no architecture; save the model with torch.jit.script"),
        ("pickled_module", "is a pickled Python object"),
        ("corrupt_pt", "cannot read .* as a TorchScript model"),
        ("corrupt_pt2", "cannot read .* as a torch.export program"),
    ],
)
def test_bad_model_files_give_one_line_errors(tmp_path, kind, pattern):
    with pytest.raises(ModelFileError, match=pattern) as err:
        load_network(bad_file(tmp_path, kind))
    assert "\n" not in str(err.value)


# -- general clipping: Hardtanh(a, b), clamp, ReLU6 ----------------------------------------------------------


class ClampNet(nn.Module):
    """Functional clipping anywhere: torch.clamp and F.hardtanh with general bounds."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(3, 6), nn.Linear(6, 6), nn.Linear(6, 2)

    def forward(self, x):
        h = torch.clamp(self.a(x), -0.5, 0.7)
        h = F.hardtanh(self.b(h), 0.25, 2.0)
        return self.c(h)


def test_hardtanh_relu6_and_clamp_with_general_bounds():
    torch.manual_seed(5)
    module = nn.Sequential(
        nn.Linear(3, 6), nn.Hardtanh(-1.0, 0.5), nn.Linear(6, 4), nn.ReLU6(), nn.Linear(4, 4), nn.Hardtanh(), nn.Linear(4, 2),
    ).double().eval()
    net = from_torch(module)
    assert_matches(net, module, inputs(3))
    assert [a.activation.to_spec() for a in net.activations] == [
        {"kind": "clip", "low": -1.0, "high": 0.5}, {"kind": "clipped_relu", "cap": 6.0},
        {"kind": "clip", "low": -1.0, "high": 1.0},
    ]  # fmt: skip
    functional = ClampNet().double().eval()
    net = from_torch(functional)
    assert_matches(net, functional, inputs(3))
    assert [a.activation.to_spec() for a in net.activations] == [
        {"kind": "clip", "low": -0.5, "high": 0.7}, {"kind": "clip", "low": 0.25, "high": 2.0},
    ]


class _Extremes(nn.Module):
    """torch.max / torch.min in every form: along a dim (unpacked and ``.values``), of all, of two tensors."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(6, 8)

    def forward(self, x):
        h = torch.relu(self.layer(x)).reshape(-1, 2, 4) - 0.3
        values, _ = torch.max(h, dim=2)
        lowest = h.min(dim=1, keepdim=True).values.flatten(1)
        both = torch.max(h[:, 0], h[:, 1]) + torch.min(h[:, 0], h[:, 1])
        return torch.cat([values, lowest, both, h.flatten(1).max(1, True)[0]], 1)


@pytest.mark.parametrize("how", ["fx", "script", "trace", "export"])
def test_max_and_min_along_a_dimension_compile_their_values(how):
    torch.manual_seed(0)
    model = _Extremes().eval()
    example = torch.randn(1, 6)
    source = {"fx": lambda: model, "script": lambda: torch.jit.script(model),
              "trace": lambda: torch.jit.trace(model, example), "export": lambda: torch.export.export(model, (example,))}
    net = from_torch(source[how](), (6,))
    x = np.random.default_rng(0).normal(size=(16, 6))
    expected = model(torch.tensor(x, dtype=torch.float32)).detach().numpy()
    np.testing.assert_allclose(net.forward(x), expected, atol=1e-5)


def test_reading_the_indices_of_max_is_a_one_line_error():
    class ArgMax(nn.Module):
        def forward(self, x):
            values, indices = torch.max(x.reshape(-1, 2, 3), dim=2)
            return values + indices

    class Masked(nn.Module):  # the comparison reads no network value: it must not be evaluated as a constant
        def forward(self, x):
            values, indices = torch.max(x.reshape(-1, 2, 3), dim=2)
            return torch.where(indices == 0, values, -values)

    for model in (ArgMax(), Masked()):
        with pytest.raises(UnsupportedOperatorError, match="indices of max / min along a dimension"):
            from_torch(model, (6,))


@pytest.mark.parametrize("write", [lambda p: p.write_bytes(b"garbage"),
                                   lambda p: __import__("zipfile").ZipFile(p, "w").writestr("a.txt", "hello")])
def test_a_corrupt_pt2_file_gives_one_line_and_no_logged_traceback(tmp_path, capfd, write):
    path = tmp_path / "model.pt2"
    write(path)
    with pytest.raises(ModelFileError, match="cannot read .* as a torch.export program") as info:
        load_network(path)
    assert "\n" not in str(info.value) and "warnings above" not in str(info.value)
    assert "Traceback" not in capfd.readouterr().err


def test_a_convolutional_module_without_input_shape_asks_for_it():
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 2))
    with pytest.raises(InvalidNetworkError, match="pass input_shape"):
        load_network(module.eval())


def test_export_onnx_keeps_the_file_on_failure_and_checks_to_the_modules_precision(tmp_path, capfd):
    from relumilp import export_onnx
    from relumilp.errors import RelumilpError
    from relumilp.train import SoftExponential

    path = tmp_path / "m.onnx"
    module = nn.Sequential(nn.Linear(2, 3), SoftExponential(0.5), nn.Linear(3, 1))  # expm1: not at opset 17
    with pytest.raises(RelumilpError, match="torch cannot export"):
        export_onnx(module, path)
    assert not path.exists() and list(tmp_path.iterdir()) == []
    assert "graph" not in capfd.readouterr().out  # torch's printed TorchScript graph is dropped
    for dtype in (torch.float16, torch.bfloat16):
        half = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).to(dtype)
        net = export_onnx(half, tmp_path / f"{str(dtype)[6:]}.onnx")
        assert net.output_size == 2
    with pytest.raises(RelumilpError, match="input_shape"):
        export_onnx(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 1)), tmp_path / "c.onnx")
