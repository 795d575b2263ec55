"""Tests of the MILP-friendly training pieces: sub-box bound losses, the unstable-count and phase
penalties, per-layer weights, the weight schedule, warm starts and the target-driven recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from relumilp.errors import RelumilpError
from relumilp.train import (
    BigMPenalty,
    LambdaSchedule,
    PhasePenalty,
    ReLUStabilityPenalty,
    UnstableCountPenalty,
    fit_surrogate,
    grid_boxes,
    pre_activation_bounds,
)
from relumilp.train.recipe import MilpFriendlyRecipe, milp_cost, stable_phases

F64 = torch.float64
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad:UserWarning")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one torch thread (several threads only contend on a shared machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def mlp(seed=0, widths=(3, 6, 5, 1)) -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mods = []
        for a, b in zip(widths[:-1], widths[1:]):
            mods += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*mods[:-1]).double()


def pre_activations(model, x) -> list[torch.Tensor]:
    out, h = [], x
    for m in model:
        h = m(h)
        if isinstance(m, nn.Linear):
            out.append(h)
    return out[:-1]


def test_grid_boxes_tile_the_box():
    lo, hi = torch.tensor([-1.0, 0.0, 2.0], dtype=F64), torch.tensor([1.0, 3.0, 2.5], dtype=F64)
    cl, cu = grid_boxes(lo, hi, 3)
    assert cl.shape == cu.shape == (27, 3)
    assert bool((cl >= lo).all() and (cu <= hi).all() and (cl < cu).all())
    # the cells' volumes add up to the box's and every sample lies in some cell
    assert float(torch.prod(cu - cl, dim=1).sum()) == pytest.approx(float(torch.prod(hi - lo)))
    x = lo + (hi - lo) * torch.rand(500, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    inside = ((x[:, None, :] >= cl[None]) & (x[:, None, :] <= cu[None])).all(dim=2)
    assert bool(inside.any(dim=1).all())
    one = grid_boxes(lo, hi, 1)
    assert torch.equal(one[0][0], lo) and torch.equal(one[1][0], hi)
    with pytest.raises(RelumilpError):
        grid_boxes(lo, hi, 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sub_box_bounds_contain_sampled_pre_activations_and_are_tighter(seed):
    model = mlp(seed)
    lo, hi = -torch.ones(3, dtype=F64), torch.ones(3, dtype=F64)
    cl, cu = grid_boxes(lo, hi, 2)
    cells, _ = pre_activation_bounds(model, cl, cu, "symbolic")
    whole, _ = pre_activation_bounds(model, lo, hi, "symbolic")
    gen = torch.Generator().manual_seed(seed)
    for c in range(cl.shape[0]):
        x = cl[c] + (cu[c] - cl[c]) * torch.rand(400, 3, dtype=F64, generator=gen)
        x = torch.cat([x, cl[c : c + 1], cu[c : c + 1]])  # the corners too
        with torch.no_grad():
            for (l, u), z in zip(cells, pre_activations(model, x)):
                assert bool((z >= l[c] - 1e-12).all() and (z <= u[c] + 1e-12).all())
    for (l, u), (wl, wu) in zip(cells, whole):  # on average a cell's bounds are narrower than the box's
        assert float((u - l).mean()) < float((wu - wl).mean())
    # interval arithmetic is monotone in the box: each cell's bounds lie inside the whole box's
    icells, _ = pre_activation_bounds(model, cl, cu, "interval")
    iwhole, _ = pre_activation_bounds(model, lo, hi, "interval")
    for (l, u), (wl, wu) in zip(icells, iwhole):
        assert bool((l >= wl - 1e-12).all() and (u <= wu + 1e-12).all())


def test_unstable_count_penalty_value_and_gradient():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.5, 0.0]], dtype=F64))
        model[0].bias.copy_(torch.tensor([0.2, -3.0, 2.0], dtype=F64))
    # over [-1, 1]^2 the pre-activations lie in [-0.8, 1.2], [-5, -1], [1.5, 2.5]: only neuron 0 is unstable
    pen = UnstableCountPenalty(2.0, [-1, -1], [1, 1], method="interval", tau=0.5)
    expected = np.tanh(min(1.2, 0.8) / 0.5)
    assert float(pen.value(model)) == pytest.approx(expected, rel=1e-12)
    assert float(pen(model)) == pytest.approx(2 * expected, rel=1e-12)
    pen(model).backward()
    grad = model[0].bias.grad
    assert float(grad[0]) < 0 and float(grad[1]) == 0.0 and float(grad[2]) == 0.0  # pushes neuron 0 up (nearer side)
    with torch.no_grad():
        model[0].bias[0] = 1.5  # now stable: no term, no gradient
    assert float(pen.value(model)) == 0.0


@pytest.mark.parametrize("penalty", [
    lambda lo, hi: UnstableCountPenalty(1.0, lo, hi, sub_boxes=2),
    lambda lo, hi: ReLUStabilityPenalty(1.0, lo, hi, "symbolic", sub_boxes=2),
    lambda lo, hi: BigMPenalty(1.0, lo, hi, "symbolic", variant="width", sub_boxes=2),
])
def test_bound_losses_are_differentiable(penalty):
    """Directional finite differences match autograd (float64, generic point)."""
    model = mlp(3)
    pen = penalty([-1.0] * 3, [1.0] * 3)
    params = list(model.parameters())
    loss = pen(model)
    grads = [torch.zeros_like(p) if g is None else g  # the output layer does not enter hidden bounds
             for p, g in zip(params, torch.autograd.grad(loss, params, allow_unused=True))]
    assert all(torch.isfinite(g).all() for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)
    direction = [torch.randn(p.shape, dtype=F64, generator=torch.Generator().manual_seed(i)) for i, p in enumerate(params)]
    h = 1e-6
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.add_(h * d)
        plus = float(pen(model))
        for p, d in zip(params, direction):
            p.sub_(2 * h * d)
        minus = float(pen(model))
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction))
    assert (plus - minus) / (2 * h) == pytest.approx(analytic, rel=1e-4, abs=1e-7)


def test_layer_weights_weight_each_layer():
    model = mlp(4)
    lo, hi = [-1.0] * 3, [1.0] * 3
    first = ReLUStabilityPenalty(1.0, lo, hi, "symbolic", layer_weights=(1.0, 0.0)).value(model)
    second = ReLUStabilityPenalty(1.0, lo, hi, "symbolic", layer_weights=(0.0, 1.0)).value(model)
    both = ReLUStabilityPenalty(1.0, lo, hi, "symbolic", layer_weights=(2.0, 3.0)).value(model)
    assert float(both) == pytest.approx(2 * float(first) + 3 * float(second), rel=1e-12)
    with pytest.raises(RelumilpError):
        ReLUStabilityPenalty(1.0, lo, hi, layer_weights=(1.0,)).value(model)


def test_phase_penalty_is_zero_exactly_when_phases_hold():
    model = nn.Sequential(nn.Linear(1, 3), nn.ReLU(), nn.Linear(3, 1)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0], [1.0], [1.0]], dtype=F64))
        model[0].bias.copy_(torch.tensor([2.0, -2.0, 0.0], dtype=F64))
    # x in [-1, 1]: pre-activations [1, 3] (active), [-3, -1] (inactive), [-1, 1] (unstable)
    ok = PhasePenalty([torch.tensor([1, -1, 0])], 1.0, [-1.0], [1.0], margin=0.0)
    assert float(ok(model)) == 0.0
    wrong = PhasePenalty([torch.tensor([-1, 1, 1])], 3.0, [-1.0], [1.0], margin=0.5)
    # violations: u + m = 3.5, b - l + m... : relu(3 + .5) + relu(.5 - (-3)) + relu(.5 - (-1))
    assert float(wrong(model)) == pytest.approx(3.0 * (3.5 + 3.5 + 1.5))
    with pytest.raises(RelumilpError):
        PhasePenalty([torch.tensor([1, 0])], 1.0, [-1.0], [1.0])(model)


def test_schedule_warmup_then_ramp():
    s = LambdaSchedule(2, 4)
    assert [s(e) for e in range(8)] == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert LambdaSchedule()(0) == 1.0
    with pytest.raises(RelumilpError):
        LambdaSchedule(-1)


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 2))
    return X, np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2


def test_warmup_covering_all_epochs_equals_plain_training_and_init_model_round_trips():
    X, y = _data()
    common = dict(hidden=(8, 8), epochs=3, batch_size=50, seed=1, device="cpu", progress=False, dtype=torch.float64)
    plain, _ = fit_surrogate(X, y, **common)
    warm, hist = fit_surrogate(X, y, stability=1.0, bound_method="symbolic", schedule=LambdaSchedule(3, 2), **common)
    for a, b in zip(plain.parameters(), warm.parameters()):
        assert torch.equal(a, b)
    assert hist["stability"] == [0.0] * 3
    # epochs=0 from an initial model returns the same function (standardisation unfolded and refolded)
    same, _ = fit_surrogate(X, y, **dict(common, epochs=0), init_model=plain)
    x = torch.as_tensor(X[:50])
    with torch.no_grad():
        np.testing.assert_allclose(same(x).numpy(), plain(x).numpy(), rtol=1e-10, atol=1e-10)
    with pytest.raises(RelumilpError):
        fit_surrogate(X, y, **dict(common, hidden=(4,)), init_model=plain)
    with pytest.raises(RelumilpError, match="milp_friendly"):
        fit_surrogate(X, y, steps=3, **common)


def test_milp_friendly_recipe_respects_its_budget_and_keeps_phases():
    X, y = _data(300)
    model, hist = fit_surrogate(
        X, y, hidden=(10, 10), epochs=30, batch_size=100, lr=1e-2, seed=0, device="cpu", progress=False,
        milp_friendly=True, max_mse_ratio=1.5, lambda_min=1e-3, lambda_max=0.3, steps=2, proxy="symbolic",
        finetune_epochs=15,
    )
    rec = hist["recipe"]
    plain_cost = rec["candidates"][0]["cost"]
    assert rec["candidates"][0]["lambda"] == 0.0 and len(rec["candidates"]) == 3
    # the returned model is the chosen candidate, within the budget on the validation rows
    from relumilp.train.recipe import _val_mse

    val = _val_mse(model, X, y[:, None], hist["split"])
    assert val == pytest.approx(rec["chosen"]["val_mse"], rel=1e-12)
    assert val <= 1.5 * rec["plain_val_mse"] * (1 + 1e-12)
    assert rec["chosen"]["cost"]["key"] <= plain_cost["key"]
    for c in rec["candidates"][1:]:
        assert c["within"] == (c["val_mse"] <= rec["budget"])
        assert c["fixed"] > 0 and "phases_kept" in c
    box = hist["input_bounds"]
    cost = milp_cost(model, *box, "symbolic")
    assert cost["key"] == rec["chosen"]["cost"]["key"]


def test_phase_preserving_finetune_keeps_fixed_neurons_stable():
    X, y = _data(200, 3)
    common = dict(hidden=(10, 10), epochs=30, batch_size=50, lr=1e-2, seed=2, device="cpu", progress=False)
    reg, hist = fit_surrogate(X, y, stability=0.05, bound_method="symbolic", **common)
    box = hist["input_bounds"]
    fixed = stable_phases(reg, *box)
    assert sum(int((f != 0).sum()) for f in fixed) > 0
    tuned, th = fit_surrogate(X, y, **dict(common, epochs=10, lr=3e-3), init_model=reg, phases=fixed, phase_weight=100.0)
    now = stable_phases(tuned, *box)
    for f, n in zip(fixed, now):
        assert np.array_equal(n[f != 0], f[f != 0])
    assert len(th["phase"]) == 10


def test_recipe_rejects_bad_options():
    with pytest.raises(RelumilpError):
        MilpFriendlyRecipe(max_mse_ratio=0.5)
    with pytest.raises(RelumilpError):
        MilpFriendlyRecipe(penalty="l2")
    with pytest.raises(RelumilpError):
        MilpFriendlyRecipe(lambda_min=1.0, lambda_max=0.1)
    with pytest.raises(RelumilpError):
        MilpFriendlyRecipe(confirm=("best", 0))


@pytest.mark.parametrize("options,pattern", [
    ({"stability": 1.0}, "chooses stability itself"),
    ({"schedule": LambdaSchedule(0, 2)}, "chooses schedule itself"),
    ({"lamda_max": 0.3}, "unknown fit_surrogate option"),
    ({"activation": "clipped"}, "finetune_epochs=0"),
    ({"activation": "sigmoid"}, "piecewise-linear"),
])
def test_milp_friendly_refuses_what_it_would_ignore_or_fail_on(options, pattern):
    X, y = _data(40)
    with pytest.raises(RelumilpError, match=pattern):
        fit_surrogate(X, y, hidden=(4,), epochs=2, progress=False, milp_friendly=True, steps=1, proxy="symbolic",
                      **options)


def test_milp_friendly_trains_with_the_other_settings():
    """Options such as group_l1 train the plain network and the candidates (they were once dropped)."""
    X, y = _data(60)
    common = dict(hidden=(6,), epochs=4, batch_size=30, seed=0, device="cpu", progress=False, milp_friendly=True,
                  steps=1, proxy="symbolic", finetune_epochs=0)
    plain, _ = fit_surrogate(X, y, **common)
    grouped, hist = fit_surrogate(X, y, group_l1=0.5, **common)
    assert not torch.equal(plain[0].weight, grouped[0].weight)
    clipped, _ = fit_surrogate(X, y, activation="clipped", **common)  # two kinks: no phase fine-tune
    assert len(hist["recipe"]["candidates"]) == 2 and clipped is not None
