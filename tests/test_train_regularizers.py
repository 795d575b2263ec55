"""Tests of relumilp.train.regularizers and the monotonicity penalty of relumilp.train.losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from relumilp.errors import RelumilpError, UnsupportedOperatorError
from relumilp.ir import Network
from relumilp.train import (
    BigMPenalty,
    ClippedReLU,
    GroupL1Penalty,
    L1Penalty,
    ReLUStabilityPenalty,
    RePU,
    make_regularizers,
    monotonicity_penalty,
    sequential_layers,
)
from relumilp.train.regularizers import _adam_step_size

F64 = torch.float64
# float(t) on a tensor that requires grad is intended in these checks
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad:UserWarning")


def t64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def seeded(fn, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


def mixed_model() -> nn.Sequential:
    return seeded(
        lambda: nn.Sequential(
            nn.Linear(3, 5),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Sequential(nn.Linear(5, 4), nn.LeakyReLU(0.1)),
            nn.Linear(4, 6),
            nn.Identity(),
            nn.Linear(6, 4, bias=False),
            ClippedReLU(2.0),
            nn.Linear(4, 2),
        ).double()
    )


def to_network(model) -> Network:
    layers, acts = sequential_layers(model)
    return Network.sequential(
        [(w.detach().numpy(), b.detach().numpy()) for w, b in layers],
        acts,
    )


def one_layer(w1, b1) -> nn.Sequential:
    """``Linear(2, k) -> ReLU -> Linear(k, 1)`` with the given first layer."""
    model = nn.Sequential(nn.Linear(2, len(b1)), nn.ReLU(), nn.Linear(len(b1), 1)).double()
    with torch.no_grad():
        model[0].weight.copy_(t64(w1))
        model[0].bias.copy_(t64(b1))
    return model


# -- the live (layers, activations) view -------------------------------------------------------------


def test_sequential_layers_view_computes_the_model_and_shares_parameters():
    model = mixed_model().eval()
    layers, acts = sequential_layers(model)
    assert [a.kind for a in acts] == ["relu", "leaky_relu", "clipped_relu"]
    assert acts[1].alpha == pytest.approx(0.1) and acts[2].cap == 2.0
    assert len(layers) == 4 and layers[0][0] is model[0].weight  # the live parameter itself
    x = torch.randn(200, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(to_network(model).forward(x.numpy()), expected, rtol=1e-12, atol=1e-12)
    # the composed Linear(4,6) -> Linear(6,4) layer is differentiable w.r.t. both
    layers[2][0].sum().backward()
    assert model[4].weight.grad is not None and model[6].weight.grad is not None


@pytest.mark.parametrize(
    "model",
    [
        nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)),
        nn.Sequential(nn.Linear(2, 3), nn.ReLU()),
        nn.Sequential(nn.ReLU(), nn.Linear(2, 3)),
    ],
)
def test_sequential_layers_rejects_what_does_not_compile(model):
    with pytest.raises(UnsupportedOperatorError):
        sequential_layers(model)


# -- sparsity penalties ------------------------------------------------------------------------------


def test_l1_penalty_value_and_prox():
    model = mixed_model()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    total = sum(float(m.weight.detach().abs().sum()) for m in linears)
    assert float(L1Penalty(0.5)(model)) == pytest.approx(0.5 * total)
    assert float(L1Penalty(1.0, include_output=False).value(model)) == pytest.approx(total - float(linears[-1].weight.detach().abs().sum()))
    before = [m.weight.detach().clone() for m in linears]
    L1Penalty(2.0).prox(model, step=0.05)
    for w0, m in zip(before, linears):
        expected = torch.sign(w0) * torch.clamp(w0.abs() - 0.1, min=0.0)
        assert torch.allclose(m.weight, expected)
    assert sum(int((m.weight == 0).sum()) for m in linears) > 0


def test_group_l1_penalty_value_and_prox_zero_whole_rows():
    model = one_layer([[0.05, 0.0], [1.0, -2.0], [0.0, 0.1]], [0.3, 0.0, -0.2])
    norms = torch.linalg.vector_norm(model[0].weight, dim=1).detach()
    # only hidden neurons' incoming rows (the output layer is not a group)
    assert float(GroupL1Penalty(1.0)(model)) == pytest.approx(float(norms.sum()))
    GroupL1Penalty(1.0).prox(model, step=0.2)  # threshold 0.2
    w = model[0].weight.detach()
    assert torch.equal(w[0], torch.zeros(2, dtype=F64)) and torch.equal(w[2], torch.zeros(2, dtype=F64))
    assert torch.allclose(w[1], t64([1.0, -2.0]) * (1 - 0.2 / math.sqrt(5.0)))
    assert torch.equal(model[0].bias.detach(), t64([0.3, 0.0, -0.2]))  # biases untouched by default
    with_bias = one_layer([[0.05, 0.0], [1.0, -2.0], [0.0, 0.1]], [0.3, 0.0, -0.2])
    GroupL1Penalty(1.0, include_bias=True).prox(with_bias, step=0.25)
    bias = with_bias[0].bias.detach()
    assert float(bias[0]) != 0.0 and float(bias[2]) == 0.0  # ||(0.05, 0, 0.3)|| > 0.25 > ||(0, 0.1, -0.2)||


def test_adam_step_size_is_the_step_adam_takes():
    model = one_layer([[0.5, -0.5], [0.2, 0.1]], [0.0, 0.1])
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x = torch.randn(16, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        loss = (model(x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    w = model[0].weight
    state = opt.state[w]
    v_hat = state["exp_avg_sq"] / (1 - 0.999 ** float(state["step"]))
    assert torch.allclose(_adam_step_size(opt, w, None), 0.01 / (v_hat.sqrt() + 1e-8))
    sgd = torch.optim.SGD(model.parameters(), lr=0.3)
    assert _adam_step_size(sgd, w, None) == 0.3
    with pytest.raises(RelumilpError):
        _adam_step_size(None, w, None)


# -- bound-based penalties on a hand-checked example --------------------------------------------------
# W1 = [[1, -1], [2, 0]], b1 = [0.5, -3] over [0, 1]^2: l = [-0.5, -3], u = [1.5, -1].


HAND = dict(w1=[[1.0, -1.0], [2.0, 0.0]], b1=[0.5, -3.0])


def test_stability_penalty_is_xiao_formula_on_interval_bounds():
    model = one_layer(HAND["w1"], HAND["b1"])
    pen = ReLUStabilityPenalty(2.0, [0.0, 0.0], [1.0, 1.0])
    expected = -math.tanh(1 + (-0.5) * 1.5) - math.tanh(1 + (-3.0) * (-1.0))
    value = pen(model)
    assert float(value) == pytest.approx(2.0 * expected, rel=1e-12)
    value.backward()
    assert float(model[0].weight.grad.abs().sum()) > 0  # differentiable w.r.t. the weights


def test_stability_penalty_adds_the_cap_kink_of_clipped_relu():
    model = one_layer(HAND["w1"], HAND["b1"])
    model[1] = ClippedReLU(1.0)
    value = ReLUStabilityPenalty(1.0, [0.0, 0.0], [1.0, 1.0]).value(model)
    kinks = [(-0.5, 1.5), (-3.0, -1.0)]
    expected = sum(-math.tanh(1 + l * u) - math.tanh(1 + (l - 1) * (u - 1)) for l, u in kinks)
    assert float(value) == pytest.approx(expected, rel=1e-12)


def test_big_m_penalty_variants():
    model = one_layer(HAND["w1"], HAND["b1"])
    assert float(BigMPenalty(1.0, [0, 0], [1, 1])(model)) == pytest.approx(1.5 + 3.0)
    assert float(BigMPenalty(1.0, [0, 0], [1, 1], variant="area")(model)) == pytest.approx(0.5 * 1.5 * 0.5)
    with pytest.raises(RelumilpError):
        BigMPenalty(1.0, [0, 0], [1, 1], variant="huge")


def test_epsilon_balls_average_per_sample_penalties_inside_the_box():
    model = seeded(lambda: nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1)).double())
    x = t64([[0.0, 0.0], [0.95, -0.5], [-1.0, 1.0]])
    box = ([-1.0, -1.0], [1.0, 1.0])
    for cls in (ReLUStabilityPenalty, BigMPenalty):
        ball = cls(1.0, *box, epsilon=0.1)
        per_sample = [
            float(cls(1.0, np.maximum(xi - 0.1, box[0]), np.minimum(xi + 0.1, box[1])).value(model)) for xi in x.numpy()
        ]
        assert float(ball.value(model, x)) == pytest.approx(np.mean(per_sample), rel=1e-12)
        with pytest.raises(RelumilpError, match="batch"):
            ball(model)
    # a smaller ball has tighter bounds: more stable neurons, lower stability penalty
    small = float(ReLUStabilityPenalty(1.0, *box, epsilon=0.01).value(model, x))
    large = float(ReLUStabilityPenalty(1.0, *box, epsilon=0.5).value(model, x))
    assert small < large


def test_symbolic_bounds_give_a_smaller_big_m_penalty():
    model = seeded(lambda: nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1)).double())
    interval = float(BigMPenalty(1.0, [-1] * 3, [1] * 3, method="interval").value(model))
    symbolic = float(BigMPenalty(1.0, [-1] * 3, [1] * 3, method="symbolic").value(model))
    assert symbolic < interval


def test_bound_penalty_argument_checks():
    with pytest.raises(RelumilpError):
        ReLUStabilityPenalty(1.0)  # no box, no epsilon
    with pytest.raises(RelumilpError):
        ReLUStabilityPenalty(1.0, [0.0], [1.0], method="lp")
    with pytest.raises(RelumilpError):
        ReLUStabilityPenalty(1.0, [1.0], [0.0])
    with pytest.raises(RelumilpError):
        ReLUStabilityPenalty(1.0, [0.0], [1.0], epsilon=-0.1)
    with pytest.raises(RelumilpError):
        make_regularizers(l1=-1.0)
    assert set(make_regularizers(l1=1, group_l1=1, stability=1, big_m=1, lower=[0], upper=[1])) == {
        "l1",
        "group_l1",
        "stability",
        "big_m",
    }


# -- monotonicity penalty ----------------------------------------------------------------------------


def test_monotonicity_penalty_value_and_gradient():
    lin = nn.Linear(2, 1).double()
    with torch.no_grad():
        lin.weight.copy_(t64([[1.0, -2.0]]))
    x = torch.randn(10, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    assert float(monotonicity_penalty(lin, x, inputs=[0], weight=3.0)) == 0.0
    pen = monotonicity_penalty(lin, x, inputs=[1], weight=3.0)
    assert float(pen) == pytest.approx(6.0)
    assert float(monotonicity_penalty(lin, x, decreasing=[1])) == 0.0
    assert float(monotonicity_penalty(lin, x, inputs=[0, 1])) == pytest.approx(1.0)  # mean over inputs
    pen.backward()  # create_graph: the penalty trains the weights
    assert torch.allclose(lin.weight.grad, t64([[0.0, -3.0]]))
    with pytest.raises(RelumilpError):
        monotonicity_penalty(lin, x)
    with pytest.raises(RelumilpError):
        monotonicity_penalty(nn.Linear(2, 2).double(), x, inputs=[0])


def test_monotonicity_penalty_makes_a_fit_monotone():
    """Fitting y = x^2 on [-1, 1] with an increasing constraint gives a non-decreasing fit."""
    x = torch.linspace(-1, 1, 101, dtype=F64)[:, None]
    y = x**2

    def train(weight):
        net = seeded(lambda: nn.Sequential(nn.Linear(1, 16), RePU(2), nn.Linear(16, 1)).double())
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(300):
            loss = ((net(x) - y) ** 2).mean()
            if weight:
                loss = loss + monotonicity_penalty(net, x, inputs=[0], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        grid = torch.linspace(-1, 1, 401, dtype=F64)[:, None]
        return float(torch.relu(-torch.diff(net(grid).detach().ravel())).sum())  # total decrease

    assert train(0.0) > 0.5  # the unconstrained fit follows the parabola down (by ~1)
    assert train(10.0) < 0.02


def test_l1_reaches_every_layer_and_group_l1_refuses_what_it_cannot_see():
    """L1 once silently gave 0 on a custom module and skipped convolutions; group L1 gave 0 on both."""

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 3), nn.Linear(3, 1)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    custom = MLP()
    expected = custom.a.weight.abs().sum() + custom.b.weight.abs().sum()
    assert torch.isclose(L1Penalty(1.0)(custom), expected)
    assert torch.isclose(L1Penalty(1.0, include_output=False)(custom), custom.a.weight.abs().sum())
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 1))
    assert torch.isclose(L1Penalty(1.0)(conv), conv[0].weight.abs().sum() + conv[3].weight.abs().sum())
    assert L1Penalty(1.0)(nn.Sequential(nn.ReLU())) == 0.0  # no parameters: no StopIteration
    for model in (custom, conv):
        with pytest.raises(UnsupportedOperatorError):
            GroupL1Penalty(1.0)(model)


def test_penalties_refuse_bad_boxes_and_weights_and_keep_balls_inside_the_box():
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)).double()
    with pytest.raises(RelumilpError, match="inputs but the model takes"):
        ReLUStabilityPenalty(1.0, lower=-np.ones(3), upper=np.ones(3))(model)
    for lower in ([np.nan, 0.0], [-np.inf, 0.0]):
        with pytest.raises(RelumilpError, match="finite"):
            ReLUStabilityPenalty(1.0, lower=lower, upper=[1.0, 1.0])
    with pytest.raises(RelumilpError, match="weight"):
        BigMPenalty(-1.0, lower=-np.ones(2), upper=np.ones(2))
    # a sample outside the box: its ball is clamped to the box's nearest point, never inverted
    penalty = BigMPenalty(1.0, lower=-np.ones(2), upper=np.ones(2), epsilon=0.1, variant="width")
    lo, hi = penalty.domain(torch.tensor([[5.0, 0.0]], dtype=torch.float64))
    assert bool((lo <= hi).all()) and float(penalty(model, torch.tensor([[5.0, 0.0]], dtype=torch.float64))) >= 0.0
