"""The remaining activations, norms, reductions, contractions and re-indexings of torch and ONNX (erf,
softsign, SELU, CELU, Mish, shrinks, Lp pooling and normalisation, the Reduce* family, GroupNormalization,
CumSum, Einsum, sign times magnitude, flips, rolls, stacks, GLU, attention): against torch in float64 and
onnxruntime, bounds by sampling with no tolerance, and the
one-line refusals of what is not continuous or not a valid model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from onnx import helper
from torch import nn
from torch.nn import functional as F

from conftest import (assert_bounds_hold, assert_onnx_export_matches_ort, assert_onnx_model_matches_ort,
                      assert_torch_sources_match, onnx_graph_model)
from relumilp.domain import InputDomain
from relumilp.errors import InvalidNetworkError, RelumilpError, UnsupportedOperatorError
from relumilp.frontends import from_onnx, from_torch
from relumilp.frontends._builder import NetworkBuilder

ort = pytest.importorskip("onnxruntime")


class _Affine(nn.Module):
    """A linear layer ``fc`` in front of the operations a test module's ``forward`` exercises."""

    def __init__(self, n_in: int = 4, n_out: int = 4):
        super().__init__()
        self.fc = nn.Linear(n_in, n_out)


class Activations(_Affine):
    """Every activation layer and function added here, side by side on one affine layer."""

    def __init__(self):
        super().__init__(4, 6)
        self.layers = nn.ModuleList([nn.SELU(), nn.CELU(0.7), nn.Mish(), nn.Softsign(), nn.Tanhshrink(),
                                     nn.LogSigmoid(), nn.Softmin(dim=-1), nn.ELU(1.5), nn.Softplus(beta=2.0),
                                     nn.GELU(approximate="tanh")])

    def forward(self, x):
        h = self.fc(x)
        positive = 1.5 + h * h
        elementary = [torch.erf(h), torch.exp(h) - 1.0, torch.log2(positive), torch.log10(positive)]
        return torch.cat([layer(h) for layer in self.layers] + elementary, dim=-1)


class Reductions(_Affine):
    """Norms, cumulative sums, log-sum-exp and contractions with a constant and of two network values."""

    def __init__(self):
        super().__init__(4, 6)
        self.register_buffer("w", torch.randn(6, 2, generator=torch.Generator().manual_seed(3)))

    def forward(self, x):
        h = self.fc(x)
        return torch.cat([F.normalize(h, dim=-1), torch.cumsum(h, dim=-1), torch.logsumexp(h, dim=-1, keepdim=True),
                          torch.linalg.vector_norm(h, ord=1, dim=-1, keepdim=True),
                          torch.einsum("bi,ij->bj", h, self.w), torch.einsum("bi,bi->b", h, h)[:, None]], dim=-1)


class Pools(nn.Module):
    """Lp pooling (torch's spelling: ``sign(s) * relu(|s|)`` of the window sums) and image-shaped einsums."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 2)
        self.pool = nn.LPPool2d(2, 2)
        self.register_buffer("v", torch.tensor([1.0, -2.0]))

    def forward(self, x):
        h = self.conv(x)
        return torch.cat([self.pool(h).flatten(1), F.lp_pool1d(h.flatten(2), 1, 3).flatten(1),
                          torch.einsum("bchw,c->bhw", h, self.v).flatten(1), torch.einsum("bchw->bc", h),
                          torch.einsum("...ij,...jk->...ik", h, h.transpose(2, 3)).flatten(1)], dim=1)


class Rearrangements(_Affine):
    """Re-indexing and elementwise tensor functions (no new kind): flips, rolls, chunks, stacks, moves, channel
    shuffles, differences, interpolations, tensor clamps, GLU and attention."""

    def __init__(self):
        super().__init__(4, 8)
        self.glu, self.threshold, self.rrelu = nn.GLU(), nn.Threshold(0.2, 0.2), nn.RReLU(0.1, 0.3)
        self.shuffle, self.unflatten, self.bilinear = nn.ChannelShuffle(2), nn.Unflatten(1, (2, 4)), nn.Bilinear(8, 4, 3)
        self.register_buffer("low", torch.arange(8.0) / 8.0 - 1.0)  # exact in float32, as its sum with 1

    def forward(self, x):
        h = self.fc(x)
        a, c = h.chunk(2, 1)
        q = self.unflatten(h)
        parts = [torch.flip(h, [1]), torch.roll(h, 3, 1), h.narrow(1, 2, 3), torch.stack([a, -c], 2).flatten(1),
                 q.movedim(1, 2).flatten(1), self.shuffle(h.view(-1, 4, 2, 1)).flatten(1), torch.diff(h, dim=1),
                 torch.addcmul(h, a.repeat(1, 2), h, value=0.5), torch.lerp(h, torch.flip(h, [1]), 0.25),
                 torch.clamp(h, self.low, self.low + 1.0), self.glu(h), self.threshold(h), self.rrelu(h),
                 F.scaled_dot_product_attention(q, q, q).flatten(1), self.bilinear(h, a),
                 torch.erfc(h), torch.expm1(h), torch.exp2(h), torch.sinh(h), torch.cosh(h)]  # no ONNX export of these
        return torch.cat(parts, dim=1)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True)

    def forward(self, x):
        return self.layer(x.view(-1, 3, 4)).flatten(1)


MODULES = {"activations": (Activations, (4,)), "reductions": (Reductions, (4,)), "pools": (Pools, (1, 5, 5)),
           "rearrangements": (Rearrangements, (4,))}


def _module(key):
    cls, shape = MODULES[key]
    torch.manual_seed(0)
    return cls().eval(), shape


@pytest.mark.parametrize("key", sorted(MODULES))
def test_torch_sources_compile_to_torch_s_function(key):
    assert_torch_sources_match(*_module(key))


def test_multi_head_attention_compiles_through_export_and_trace_and_a_baked_batch_is_named():
    """torch.export (batch 1) and a TorchScript trace decompose nn.MultiheadAttention into reshapes, products
    and scaled_dot_product_attention; an export at batch 2 bakes the batch into reshapes: one line saying so."""
    torch.manual_seed(0)
    module = Encoder().eval()
    x = np.random.default_rng(3).normal(size=(4, 12))
    expected = module.double()(torch.as_tensor(x)).detach().numpy()
    module.float()
    for source in (torch.export.export(module, (torch.randn(1, 12),)), torch.jit.trace(module, torch.randn(1, 12),
                                                                                        check_trace=False)):
        np.testing.assert_allclose(from_torch(source, input_shape=(12,)).forward(x), expected, rtol=1e-9, atol=1e-9)
    with pytest.raises(InvalidNetworkError, match="exported with a batch of 2: export it with a batch of 1") as err:
        from_torch(torch.export.export(module, (torch.randn(2, 12),)), input_shape=(12,))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("key", sorted(set(MODULES) - {"rearrangements"}))  # torch cannot export channel_shuffle
def test_onnx_exports_match_onnxruntime(key, opset):
    assert_onnx_export_matches_ort(*_module(key), opset)


# -- single ONNX nodes against onnxruntime ---------------------------------------------------------------


def _graph(nodes, in_shape, initializers=(), opset=18):
    return onnx_graph_model(nodes, in_shape, initializers, opset)


_against_ort = assert_onnx_model_matches_ort


@pytest.mark.parametrize("op, attrs", [
    ("Erf", {}), ("Softsign", {}), ("Mish", {}), ("Selu", {}), ("Selu", {"alpha": 0.5, "gamma": 2.0}),
    ("Celu", {"alpha": 0.3}), ("Elu", {"alpha": 2.5}), ("Shrink", {"lambd": 0.4, "bias": 0.4}),
    ("ThresholdedRelu", {"alpha": 0.0}), ("Gelu", {"approximate": "tanh"}), ("Gelu", {}), ("Sinh", {}), ("Cosh", {})])
def test_activation_nodes_match_onnxruntime(op, attrs):
    opset = 20 if op == "Gelu" else 18
    _against_ort(_graph([helper.make_node(op, ["x"], ["y"], **attrs)], [1, 7], opset=opset), [1, 7], -4.0, 4.0)


@pytest.mark.parametrize("op", ["ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp", "ReduceLogSum"])
@pytest.mark.parametrize("axes, keep", [([1], 1), ([-1, 1], 0), (None, 1)])
def test_reductions_match_onnxruntime(op, axes, keep):
    nodes, inits = [helper.make_node(op, ["x"] + ([] if axes is None else ["axes"]), ["y"], keepdims=keep)], []
    if axes is not None:
        inits = [("axes", np.array(axes, np.int64))]
    low = 0.1 if op == "ReduceLogSum" else -3.0  # a logarithm of a sum needs a positive sum
    _against_ort(_graph(nodes, [1, 3, 4], inits), [1, 3, 4], low, 3.0)


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("attrs", [{"kernel_shape": [2, 2]}, {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1]},
                                   {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1},
                                   {"kernel_shape": [2, 2], "dilations": [2, 1]}, {"kernel_shape": [3, 2], "auto_pad": "SAME_UPPER"}])
# (onnxruntime's LpPool ignores dilations in its SAME padding, against its own shape inference and the spec)
def test_lp_pool_matches_onnxruntime(p, attrs):
    _against_ort(_graph([helper.make_node("LpPool", ["x"], ["y"], p=p, **attrs)], [1, 2, 5, 5]), [1, 2, 5, 5])
    _against_ort(_graph([helper.make_node("GlobalLpPool", ["x"], ["y"], p=p)], [1, 2, 3, 4]), [1, 2, 3, 4])


@pytest.mark.parametrize("p, axis", [(1, -1), (2, 1), (2, 0)])
def test_lp_normalization_matches_onnxruntime(p, axis):
    _against_ort(_graph([helper.make_node("LpNormalization", ["x"], ["y"], p=p, axis=axis)], [1, 3, 4]), [1, 3, 4])


@pytest.mark.parametrize("opset", [18, 21])
def test_group_normalization_reads_its_scale_per_group_or_per_channel_by_opset(opset):
    count = 2 if opset < 21 else 6
    rng = np.random.default_rng(4)
    inits = [("s", rng.normal(size=count).astype(np.float32)), ("b", rng.normal(size=count).astype(np.float32))]
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=2, epsilon=1e-3)
    model = _graph([node], [1, 6, 2, 3], inits, opset)
    x = rng.normal(size=(3, 6, 2, 3))
    groups = x.reshape(3, 2, -1)
    normal = ((groups - groups.mean(-1, keepdims=True)) / np.sqrt(groups.var(-1, keepdims=True) + 1e-3)).reshape(x.shape)
    scale, shift = (np.repeat(v, 3) if opset < 21 else v for v in (inits[0][1], inits[1][1]))
    expected = normal * scale[:, None, None].astype(np.float64) + shift[:, None, None].astype(np.float64)
    np.testing.assert_allclose(from_onnx(model).forward(x.reshape(3, -1)), expected.reshape(3, -1), rtol=1e-6, atol=1e-6)
    with pytest.raises(InvalidNetworkError, match=f"scale and a bias of {count} values"):
        bad = [(k, np.ones(5, np.float32)) for k, _ in inits]
        from_onnx(_graph([node], [1, 6, 2, 3], bad, opset))


@pytest.mark.parametrize("exclusive, reverse", itertools.product([0, 1], [0, 1]))
def test_cumsum_matches_onnxruntime(exclusive, reverse):
    node = helper.make_node("CumSum", ["x", "axis"], ["y"], exclusive=exclusive, reverse=reverse)
    _against_ort(_graph([node], [1, 3, 4], [("axis", np.array(-1, np.int64))]), [1, 3, 4])


@pytest.mark.parametrize("equation, constant", [
    ("bij,jk->bik", (4, 5)), ("bij->bji", None), ("bii->bi", None), ("bij,bij->b", "self"), ("...j,jk", (4, 2)),
    ("bij,k->bkij", (2,)), ("bij->", None)])
def test_einsum_nodes_match_onnxruntime(equation, constant):
    if constant == "self":
        node, inits = helper.make_node("Einsum", ["x", "x"], ["y"], equation=equation), []
    elif constant is None:
        node, inits = helper.make_node("Einsum", ["x"], ["y"], equation=equation), []
    else:
        node = helper.make_node("Einsum", ["x", "w"], ["y"], equation=equation)
        inits = [("w", np.random.default_rng(5).normal(size=constant).astype(np.float32))]
    shape = [1, 4, 4]
    _against_ort(_graph([node], shape, inits, 13), shape)


def test_einsum_of_network_values_and_constants_matches_numpy():
    """Every pairing (value-value, value-constant, three operands, diagonals, broadcast ellipses) against
    numpy.einsum on the same numbers."""
    rng = np.random.default_rng(6)
    cases = [("ij,jk->ik", [(2, 3), (3, 4)]), ("bij,bjk->bik", [(2, 2, 3), (2, 3, 2)]), ("ii->i", [(3, 3)]),
             ("ij,jk,kl->il", [(2, 3), (3, 2), (2, 2)]), ("...ij,...jk->...ik", [(1, 2, 3), (4, 3, 2)]),
             ("ijk,ik", [(2, 3, 2), (2, 2)]), ("ij,ij->", [(2, 3), (2, 3)]), ("iji->j", [(2, 3, 2)])]
    for equation, shapes in cases:
        for network in itertools.product([True, False], repeat=len(shapes)):
            if not any(network):
                continue
            values = [rng.normal(size=s) for s in shapes]
            b = NetworkBuilder()
            x = b.input((sum(v.size for v in values),), batched=False)
            flat, operands, start = np.concatenate([v.ravel() for v in values]), [], 0
            for v, is_input in zip(values, network):
                operands.append(b.reshape(b.index(x, slice(start, start + v.size)), v.shape) if is_input else v)
                start += v.size
            y = b.einsum(equation, operands)
            net = b.finish(b.reshape(y, (-1,)), "einsum")
            np.testing.assert_allclose(net.forward(flat[None]).ravel(), np.einsum(equation, *values).ravel(),
                                       rtol=1e-12, atol=1e-12, err_msg=f"{equation} {network}")


@pytest.mark.parametrize("left, right, network_left", [((2, 3, 4), (2, 4, 5), True), ((3, 4), (2, 4, 5), True),
                                                       ((1, 5, 4), (2, 4, 3), False), ((2, 3, 4), (4, 5), True)])
def test_matmul_with_a_batched_constant_is_a_block_diagonal_map(left, right, network_left):
    rng = np.random.default_rng(11)
    shape, weight = (left, rng.normal(size=right)) if network_left else (right, rng.normal(size=left))
    b = NetworkBuilder()
    x = b.reshape(b.input((int(np.prod(shape)),), batched=False), shape)
    y = b.matmul(x, weight) if network_left else b.matmul(weight, x)
    net = b.finish(b.reshape(y, (-1,)), "batched")
    value = rng.normal(size=shape)
    expected = value @ weight if network_left else weight @ value
    np.testing.assert_allclose(net.forward(value.reshape(1, -1)).ravel(), expected.ravel(), rtol=1e-12, atol=1e-12)


def test_sign_times_magnitude_is_the_value_and_any_other_sign_is_refused():
    pooled = Pools().eval()
    net = from_torch(torch.jit.trace(pooled, torch.randn(1, 1, 5, 5)), input_shape=(1, 5, 5))
    # torch spells the root of a window sum sign(s) * relu(|s|): s itself, so no abs or relu neuron is left
    assert {a.activation.kind for a in net.activations} == {"square", "sqrt"}

    class Stepped(nn.Module):
        def forward(self, x):
            return torch.sign(x) + x

    for source in (Stepped(), torch.export.export(Stepped(), (torch.randn(1, 3),))):
        with pytest.raises(UnsupportedOperatorError, match="sign.*not continuous") as err:
            from_torch(source, input_shape=(3,))
        assert "\n" not in str(err.value)
    with pytest.raises(UnsupportedOperatorError, match="Sign by ONNX operator 'Add'.*not continuous"):
        from_onnx(_graph([helper.make_node("Sign", ["x"], ["s"]), helper.make_node("Add", ["s", "x"], ["y"])], [1, 3]))
    with pytest.raises(UnsupportedOperatorError, match="Sign"):  # a sign times anything but its own magnitude
        from_onnx(_graph([helper.make_node("Sign", ["x"], ["s"]), helper.make_node("Mul", ["s", "x"], ["y"])], [1, 3]))


# -- bounds ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["interval", "symbolic", "alpha"])
def test_bounds_contain_every_sampled_value(method):
    nets = [from_torch(_module(key)[0], input_shape=(4,)) for key in ("activations", "reductions")]
    torch.manual_seed(8)
    nets.append(from_torch(nn.Sequential(nn.Linear(3, 5), nn.Softsign(), nn.Linear(5, 4)).eval(), input_shape=(3,)))
    for net in nets:
        n = net.input_size
        assert_bounds_hold(net, InputDomain(np.full(n, -0.5), np.full(n, 0.5)), [method], samples=20_000, seed=9)


def test_reductions_bound_soundly_away_from_their_domain_edges():
    """ReduceL2 and LogSumExp through sqrt, log, exp and the maximum's ReLU tree."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "c"], ["g"]),
             helper.make_node("ReduceL2", ["g", "axes"], ["n"], keepdims=1),
             helper.make_node("ReduceLogSumExp", ["g", "axes"], ["m"], keepdims=1),
             helper.make_node("Concat", ["n", "m"], ["y"], axis=1)]
    rng = np.random.default_rng(10)
    inits = [("w", rng.normal(size=(3, 4)).astype(np.float32)), ("c", np.full(4, 3.0, np.float32)),
             ("axes", np.array([1], np.int64))]
    net = from_onnx(_graph(nodes, [1, 3], inits))
    assert_bounds_hold(net, InputDomain(-0.3 * np.ones(3), 0.3 * np.ones(3)), ["interval", "symbolic"], samples=20_000)


# -- refusals -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nodes, match", [
    ([helper.make_node("Softmax", ["x"], ["y"], axis=3)], "axis 3 is out of range for a tensor of rank 2"),
    ([helper.make_node("Concat", ["x", "x"], ["y"], axis=-3)], "axis -3 is out of range"),
    ([helper.make_node("ReduceSum", ["x"], ["y"], axes=[2])], "axis 2 is out of range"),
    ([helper.make_node("Shrink", ["x"], ["y"], lambd=0.5)], "bias = lambd.*not continuous"),
    ([helper.make_node("ThresholdedRelu", ["x"], ["y"], alpha=1.0)], "alpha = 0.*not continuous"),
    ([helper.make_node("Einsum", ["x"], ["y"], equation="ij,jk->ik")], "names 2 operands, got 1"),
    ([helper.make_node("Einsum", ["x"], ["y"], equation="ijk->i")], "do not fit an operand of shape"),
    ([helper.make_node("Einsum", ["x"], ["y"], equation="ij->iz")], "bad output subscripts"),
    ([helper.make_node("LpNormalization", ["x"], ["y"], p=3)], "p must be 1 or 2"),
])
def test_invalid_or_discontinuous_nodes_are_one_line_errors(nodes, match):
    opset = 11 if nodes[0].op_type == "ReduceSum" else 18
    with pytest.raises(RelumilpError, match=match) as err:
        from_onnx(_graph(nodes, [1, 3], opset=opset))
    assert "\n" not in str(err.value)


def test_torch_axes_out_of_range_and_hardshrink_are_one_line_errors():
    b = NetworkBuilder()
    x = b.input((3,))
    for call in (lambda: b.softmax(x, 2), lambda: b.flatten(x, 0, 5), lambda: b.cumsum(x, -3),
                 lambda: b.reduce_sum(x, [4]), lambda: b.take(x, np.array([0]), 2)):
        with pytest.raises(InvalidNetworkError, match="out of range"):
            call()
    with pytest.raises(UnsupportedOperatorError, match="not continuous"):
        from_torch(nn.Sequential(nn.Linear(2, 2), nn.Hardshrink()))


# -- in-place updates, indexed assignment, gathers and scatters ------------------------------------------


class InPlace(_Affine):
    """``h.relu_()``, ``F.relu(h, inplace=True)``: later uses of ``h`` read the updated value."""

    def forward(self, x):
        h = self.fc(x)
        h.relu_()
        g = self.fc(x) - 0.5
        F.relu(g, inplace=True)
        return torch.cat([h * 2.0, g + 1.0], dim=1)


class Aliased(_Affine):
    """An in-place ReLU on a tensor a view of which is read afterwards: refused, not misread."""

    def __init__(self):
        super().__init__()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        h = self.fc(x)
        view = h.view(-1, 2, 2)
        self.act(h)
        return view.flatten(1) + h


class Assigned(_Affine):
    """Indexed assignment and gathers / scatters with constant indices."""

    def __init__(self):
        super().__init__(4, 8)
        self.register_buffer("order", torch.tensor([[2, 0, 1, 3, 3, 0, 1, 2]]))

    def forward(self, x):
        h = self.fc(x)
        z = h.clone()
        z[:, 2:5] = h[:, :3] * 2.0
        w = torch.zeros_like(h)
        w[:, 1] = h[:, 0]
        picked = torch.gather(h, 1, self.order.expand(h.shape[0], 8))
        spread = torch.scatter(h, 1, torch.tensor([[7, 6, 5]]).expand(h.shape[0], 3), h[:, :3])
        return torch.cat([z, w, picked, spread], dim=1)


def _compare(module, shape, sources):
    x = np.random.default_rng(14).normal(size=(3, int(np.prod(shape))))
    expected = module.double()(torch.as_tensor(x).view(-1, *shape)).detach().numpy().reshape(3, -1)
    module.float()
    for source in sources:
        np.testing.assert_allclose(from_torch(source, input_shape=shape).forward(x), expected, rtol=1e-9, atol=1e-9)


def test_in_place_updates_are_read_as_torch_runs_them_and_aliased_ones_refused():
    torch.manual_seed(0)
    module = InPlace().eval()
    _compare(module, (4,), [module, torch.export.export(module, (torch.randn(1, 4),)),
                            torch.jit.trace(module, torch.randn(1, 4))])
    aliased = Aliased().eval()
    for source in (aliased, torch.jit.trace(aliased, torch.randn(1, 4))):
        with pytest.raises(UnsupportedOperatorError, match="in-place operation 'relu_'.*shares its storage") as err:
            from_torch(source, input_shape=(4,))
        assert "\n" not in str(err.value)
    _compare(aliased, (4,), [torch.export.export(aliased, (torch.randn(1, 4),))])  # export makes it functional


def test_a_tracer_that_drops_an_in_place_add_is_caught_by_the_source_s_own_forward_pass():
    """torch.fx records ``h += 1`` as a new value, so ``g = h`` keeps the old one: the compiled network would
    differ from the model. Comparing with the model's own forward pass refuses it in one line."""

    class Rebound(_Affine):
        def forward(self, x):
            h = self.fc(x)
            g = h
            h += 1
            return torch.cat([g, h], 1)

    torch.manual_seed(0)
    module = Rebound().eval()
    with pytest.raises(InvalidNetworkError, match="differs from the model's own forward pass") as err:
        from_torch(module, input_shape=(4,))
    assert "\n" not in str(err.value)
    _compare(module, (4,), [torch.export.export(module, (torch.randn(1, 4),)), torch.jit.trace(module, torch.randn(1, 4))])


def test_indexed_assignment_gathers_and_scatters_compile_through_export_and_trace():
    torch.manual_seed(0)
    module = Assigned().eval()
    _compare(module, (4,), [torch.export.export(module, (torch.randn(1, 4),)), torch.jit.trace(module, torch.randn(1, 4))])


@pytest.mark.parametrize("op, inputs, attrs", [
    ("GatherElements", {"indices": np.array([[[1, 0, 2, 2], [0, 0, 1, 2], [2, 1, 0, 0]]])}, {"axis": 1}),
    ("GatherND", {"indices": np.array([[0, 2, 1], [0, 1, 3]])}, {}),
    ("ScatterElements", {"indices": np.array([[[2, 0, 1, 1]]]), "updates": np.ones((1, 1, 4), np.float32) * 5}, {"axis": 1}),
    ("ScatterND", {"indices": np.array([[0, 1], [0, 2]]), "updates": np.arange(8, dtype=np.float32).reshape(2, 4)}, {}),
])
def test_gather_and_scatter_nodes_match_onnxruntime(op, inputs, attrs):
    names = ["x"] + list(inputs)
    node = helper.make_node(op, names, ["y"], **attrs)
    _against_ort(_graph([node], [1, 3, 4], [(k, v.astype(np.int64) if k == "indices" else v) for k, v in inputs.items()],
                        opset=16), [1, 3, 4])


def test_rms_normalization_and_wrap_padding_match_onnxruntime():
    scale = ("s", np.array([1.0, 2.0, -1.0, 0.5], np.float32))
    _against_ort(_graph([helper.make_node("RMSNormalization", ["x", "s"], ["y"], epsilon=1e-3)], [1, 2, 3, 4], [scale],
                        opset=23), [1, 2, 3, 4])
    pads = ("p", np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64))
    _against_ort(_graph([helper.make_node("Pad", ["x", "p"], ["y"], mode="wrap")], [1, 2, 3, 4], [pads], opset=19),
                 [1, 2, 3, 4])


class Images(nn.Module):
    """RMSNorm (torch's float32 epsilon by default), circular padding, Softmax2d and LocalResponseNorm, whose
    exports decompose into avg_pool3d."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular")
        self.layers = nn.ModuleList([nn.RMSNorm(4), nn.CircularPad2d((1, 0, 2, 1)), nn.Softmax2d(),
                                     nn.LocalResponseNorm(3)])

    def forward(self, x):
        h = self.conv(x)
        return torch.cat([self.layers[0](h).flatten(1)] + [layer(h).flatten(1) for layer in self.layers[1:]], 1)


def test_image_layers_compile_in_every_torch_source():
    torch.manual_seed(0)
    module = Images().eval()
    x = np.random.default_rng(15).normal(size=(3, 32))
    expected = module(torch.as_tensor(x, dtype=torch.float32).view(-1, 2, 4, 4)).detach().numpy().reshape(3, -1)
    example = torch.randn(1, 2, 4, 4)
    for source in (module, torch.export.export(module, (example,)), torch.jit.trace(module, example)):
        net = from_torch(source, input_shape=(2, 4, 4))
        np.testing.assert_allclose(net.forward(x), expected, rtol=1e-5, atol=1e-5)  # float32 torch, float64 IR


def test_fuzz_findings_einsum_subscripts_reduce_noop_and_broadcast_signs():
    """Found by a fuzzing helper: two ellipses or non-ASCII subscripts were accepted; Reduce* with
    ``noop_with_empty_axes`` dropped the element-wise part (|x|, x^2, log x); ``sign(column) * |row|`` (an
    outer table) was read as the value itself."""
    b = NetworkBuilder()
    x = b.input((8,), batched=False)
    for equation in ("......->...", "éi->i", "i.j->ij"):
        with pytest.raises(InvalidNetworkError, match="subscripts are letters"):
            b.einsum(equation, [b.reshape(x, (2, 2, 2))])
    for op in ("ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp"):
        node = helper.make_node(op, ["x"], ["y"], keepdims=1, noop_with_empty_axes=1)
        _against_ort(_graph([node], [1, 3]), [1, 3])
    node = helper.make_node("ReduceLogSum", ["x"], ["y"], keepdims=1, noop_with_empty_axes=1)
    _against_ort(_graph([node], [1, 3]), [1, 3], 0.1, 2.0)

    class Outer(nn.Module):
        def forward(self, x):
            return (torch.sign(x.reshape(3, 1)) * torch.abs(x)).reshape(1, -1)

    with pytest.raises(UnsupportedOperatorError, match="Sign"):
        from_torch(Outer(), input_shape=(3,))


# -- choices by comparisons -------------------------------------------------------------------------------


class Chosen(_Affine):
    """Piecewise functions written with comparisons: each choice agrees where its condition flips."""

    def __init__(self):
        super().__init__(3, 6)

    def forward(self, x):
        h = self.fc(x)
        return torch.cat([torch.where(h > 0, h, 0.1 * h), h * (h > 0).float(),
                          torch.where(h < 1.0, h - 1.0, 2.0 * (h - 1.0)), torch.where(~(h > 0.5), 0.2 * h - 0.1, h - 0.5),
                          torch.where(h > 1, torch.ones_like(h), h)], dim=1)


def test_choices_by_comparisons_compile_exactly_as_relus():
    torch.manual_seed(0)
    module = Chosen().eval()
    assert_torch_sources_match(module, (3,))
    assert_onnx_export_matches_ort(module, (3,), 17)
    net = from_torch(module, input_shape=(3,))
    assert {a.activation.kind for a in net.activations} == {"relu"}
    domain = InputDomain(-np.ones(3), np.ones(3))
    assert_bounds_hold(net, domain, ["interval", "symbolic"], samples=5000)
    from relumilp import optimize

    result = optimize(net, domain, maximize=2, method="milp")
    assert result.status == "optimal"
    samples = np.random.default_rng(16).uniform(-1, 1, (20_000, 3))
    assert result.objective >= net.forward(samples)[:, 2].max() - 1e-9
    np.testing.assert_allclose(net.forward(result.x).ravel()[2], result.objective, atol=1e-7)


def test_a_choice_that_jumps_or_a_comparison_used_as_a_number_is_refused():
    class Jump(nn.Module):
        def forward(self, x):
            return torch.where(x > 0, x + 1.0, x)

    class Counted(nn.Module):
        def forward(self, x):
            return x + (x > 0).float()

    for module, match in ((Jump(), "differ where it flips"), (Counted(), "comparison")):
        for source in (module, torch.export.export(module, (torch.randn(1, 3),))):
            with pytest.raises(UnsupportedOperatorError, match=match) as err:
                from_torch(source, input_shape=(3,))
            assert "\n" not in str(err.value) and "not continuous" in str(err.value)


def test_fuzz_findings_softplus_thresholds_and_repeated_axes():
    """torch's softplus returns x above its threshold, a jump of log1p(exp(-threshold)) / beta: refused unless
    negligible (the default 20). An axis named twice is refused, as torch does; so is a group of one value."""
    with pytest.raises(UnsupportedOperatorError, match="Softplus threshold 1 .*not continuous"):
        from_torch(nn.Sequential(nn.Linear(2, 2), nn.Softplus(threshold=1.0)))
    assert_torch_sources_match(nn.Sequential(nn.Linear(2, 3), nn.Softplus(beta=2.0, threshold=15.0)).eval(), (2,),
                               tol=1e-8)
    b = NetworkBuilder()
    x = b.reshape(b.input((4,)), (1, 2, 2))
    for call in (lambda: b.reduce_log_sum_exp(x, [1, -2]), lambda: b.reduce_sum(x, [2, 2]),
                 lambda: b.group_norm(b.reshape(x, (1, 4)), 4, 1e-5)):
        with pytest.raises(InvalidNetworkError, match="twice|more than one value"):
            call()


def test_fuzz_findings_in_place_chains_copies_casts_and_hidden_jumps():
    """Found by a second fuzzing helper: chained in-place writes (``h.relu_().add_(1)``, a slice written twice,
    TorchScript threading each write's result into the next) were half applied; writes into copies (a reshape
    of a transpose, advanced indexing) were scattered into the source; a view returned after a write, and
    ``transpose_``, were compiled stale; integer casts were dropped; a jump hidden beside a large coefficient
    passed as continuous; fx's ``h *= 2`` beside a view escaped a source check scaled by the largest output."""

    class Chains(nn.Module):
        def forward(self, x):
            h = x * 1.0
            h.relu_().add_(1.0)
            g = x * 1.0
            g[:, 1:3].neg_().mul_(0.5)
            v = (x * 1.0)
            w = v[:, 0:2]
            w.neg_()
            w.mul_(0.5)
            return torch.cat([h, g, v, 100.0 + x], 1)

    torch.manual_seed(0)
    assert_torch_sources_match(Chains().eval(), (4,), sources=("fx", "trace"))

    def refused(forward, match, shape=(3, 3)):
        module = type("M", (nn.Module,), {"forward": lambda self, x: forward(x)})().eval()
        for source in (module, torch.jit.trace(module, torch.randn(1, *shape), check_trace=False)):
            with pytest.raises(RelumilpError, match=match) as err:
                from_torch(source, input_shape=shape)
            assert "\n" not in str(err.value)

    def copy_then_write(x):
        h = x * 1
        y = h.transpose(1, 2).reshape(-1, 9)
        y.relu_()
        return h

    def returned_view(x):
        h = x * 1
        z = h[:, 1:3]
        h[:, :2].mul_(2)
        return z

    def transposed_in_place(x):
        h = x * 1
        y = h[:, :, :]
        y.transpose_(1, 2)
        return h

    refused(copy_then_write, "shares its storage")
    refused(returned_view, "shares its storage")
    refused(transposed_in_place, "in-place view change")
    refused(lambda x: (10 * x).to(torch.int32).to(torch.float32), "conversion of a network value", (2,))
    with pytest.raises(UnsupportedOperatorError, match="differ where it flips"):
        from_torch(type("J", (nn.Module,), {"forward": lambda self, x: torch.where(
            x > 1e5, x - 1e5 - 5.0, torch.zeros_like(x))})(), input_shape=(1,))

    class Stale(nn.Module):
        def forward(self, x):
            h = x * 1.0
            v = h[:, 0:1]
            h *= 2.0
            return torch.cat([v * 1, 100 + x], 1)

    with pytest.raises(InvalidNetworkError, match="differs from the model's own forward pass"):
        from_torch(Stale(), input_shape=(3,))


def test_a_view_made_after_a_write_reads_the_written_value_and_is_not_refused():
    class Twice(nn.Module):
        def forward(self, x):
            h = x * 1.0
            h[:, 0:2].relu_()
            v = h[:, 1:3]
            v.mul_(2.0)
            return h + 0

    assert_torch_sources_match(Twice().eval(), (3,), sources=("fx", "trace"))
