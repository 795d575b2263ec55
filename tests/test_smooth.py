"""Smooth activations (relumilp.activations.smooth, relumilp.smooth): the float64 evaluation error model
against mpmath, the certified sandwiches, intervals and linear relaxations by sampling with no tolerance,
bounds of whole networks, the certified interval of optimize against sampling, verify, and the frontends."""

from __future__ import annotations

import io
import math

import mpmath
import numpy as np
import pytest
import torch
from torch import nn

from conftest import random_mlp
from relumilp import optimize
from relumilp.activations import (ELU, GELU, Erf, Exp, HardSwish, Log, Power, Reciprocal, RePU, SiLU, Sigmoid,
                                  SoftExponential, Softplus, Softsign, Sqrt, Square, Tanh)
from relumilp.activations.smooth import EVAL_ULPS, MAX_SEGMENTS, UNIT
from relumilp.bounds import compute_bounds
from relumilp.domain import InputDomain
from relumilp.errors import InvalidNetworkError, UnsupportedOperatorError

KINDS = [Sigmoid(), Tanh(), Erf(), Softsign(), Softplus(), SiLU(), GELU(), ELU(1.0), ELU(0.4), SoftExponential(0.6),
         SoftExponential(-0.4), RePU(2), RePU(3), HardSwish(), Square(), Exp(), Log(), Sqrt(), Reciprocal(),
         Power(0.75), Power(-0.75), Power(2.5)]
#: the kinds defined for positive inputs only, and their intervals (wide ones: a softmax's sum, a variance)
POSITIVE = (Log, Sqrt, Reciprocal, Power)
POSITIVE_INTERVALS = [(0.5, 5.0), (0.05, 0.07), (1.0, 3.0), (1.0, 1e5), (2.0, 200.0), (0.3, 0.3 + 1e-7), (1e-6, 1e-3)]
#: per kind: intervals across every curvature region, near-degenerate ones and far tails
INTERVALS = [(-6.0, 5.0), (-0.5, 0.7), (1.0, 3.0), (-3.0, -1.0), (-2.0, 2.0), (0.3, 0.3 + 1e-7), (-30.0, -20.0)]


def intervals_of(act):
    if isinstance(act, POSITIVE):
        yield from POSITIVE_INTERVALS
        return
    for l, u in INTERVALS:
        if isinstance(act, SoftExponential) and act.alpha < 0 and act._w(l) <= 0.2:
            continue  # the domain edge of the log (checked separately)
        if isinstance(act, (SoftExponential, RePU, Exp)) and u > 3.0:
            l, u = l / 2, u / 2  # keep the exponential and power kinds at moderate values
        yield l, u


def exact(act, x: float) -> mpmath.mpf:
    """The activation in 50-digit arithmetic, written independently of the float formulas."""
    x = mpmath.mpf(x)
    if isinstance(act, Sigmoid):
        return 1 / (1 + mpmath.exp(-x))
    if isinstance(act, Tanh):
        return mpmath.tanh(x)
    if isinstance(act, Erf):
        return mpmath.erf(x)
    if isinstance(act, Softsign):
        return x / (1 + abs(x))
    if isinstance(act, Softplus):
        return mpmath.log(1 + mpmath.exp(x))
    if isinstance(act, SiLU):
        return x / (1 + mpmath.exp(-x))
    if isinstance(act, GELU):
        return x * mpmath.ncdf(x)
    if isinstance(act, ELU):
        return x if x > 0 else act.alpha * (mpmath.exp(x) - 1)
    if isinstance(act, SoftExponential):
        a = mpmath.mpf(act.alpha)
        return (mpmath.exp(a * x) - 1) / a + a if a > 0 else -mpmath.log(1 - a * (x + a)) / a
    if isinstance(act, RePU):
        return max(x, 0) ** act.p
    if isinstance(act, HardSwish):
        return x * min(max(x + 3, 0), 6) / 6
    if isinstance(act, Square):
        return x * x
    if isinstance(act, Exp):
        return mpmath.exp(x)
    if isinstance(act, Log):
        return mpmath.log(x)
    if isinstance(act, Sqrt):
        return mpmath.sqrt(x)
    if isinstance(act, Reciprocal):
        return 1 / x
    if isinstance(act, Power):
        return mpmath.power(x, mpmath.mpf(act.p))
    raise AssertionError(act)


@pytest.mark.parametrize("act", KINDS, ids=repr)
def test_float64_evaluation_error_model_holds_against_mpmath(act):
    """The stated model: |fl(f(x)) - f(x)| <= EVAL_ULPS u (|f(x)| + floor). Also reports the worst ratio."""
    rng = np.random.default_rng(0)
    worst = 0.0
    with mpmath.workdps(50):
        for l, u in intervals_of(act):
            x = np.concatenate([rng.uniform(l, u, 150), [l, u]])
            computed = act.apply(x)
            for xi, ci in zip(x, computed):
                err = abs(mpmath.mpf(float(ci)) - exact(act, float(xi)))
                allowed = EVAL_ULPS * UNIT * (abs(float(ci)) + float(act._floor(np.array(xi), np.array(xi))))
                worst = max(worst, float(err) / allowed)
    assert worst <= 1.0, worst


def check_sandwich(act, l, u, samples, tolerance):
    from relumilp.formulation.pwl import interpolate

    lo_, hi_ = np.array([l]), np.array([u])
    k = act.segments_for(lo_, hi_, tolerance)
    t, lo, hi, eps = act.sandwich(lo_, hi_, k)
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(l, u, samples), t[0], np.nextafter(t[0], -np.inf).clip(l, u),
                        np.nextafter(t[0], np.inf).clip(l, u)])
    fx = act.apply(x)
    T, LO, HI = (np.broadcast_to(v[None], (x.size, v.size)) for v in (t[0], lo[0], hi[0]))
    lower, upper = interpolate(T, LO, x), interpolate(T, HI, x)
    # the interpolants are exact in the MILP; in float64 they round, so compare at the nodes exactly
    # and elsewhere with the interpolation's own rounding (a few ulps of the values), never the band's
    slack = 4 * UNIT * (np.abs(lower) + np.abs(upper) + 1e-300)
    assert np.all(lo[0] <= act.apply(t[0])) and np.all(act.apply(t[0]) <= hi[0])
    assert np.all(lower - slack <= fx) and np.all(fx <= upper + slack)
    assert np.all(upper - fx <= eps[0] + slack) and np.all(fx - lower <= eps[0] + slack)
    il, ih = act.interval(lo_, hi_)
    assert np.all(il <= fx) and np.all(fx <= ih)
    a_l, c_l, a_u, c_u = act.linear_relaxation_numpy(lo_, hi_)
    assert np.all(a_l * x + c_l <= fx) and np.all(fx <= a_u * x + c_u)
    return k[0], eps[0]


@pytest.mark.parametrize("act", KINDS, ids=repr)
def test_sandwich_interval_and_relaxation_hold_on_samples(act):
    for l, u in intervals_of(act):
        k, eps = check_sandwich(act, l, u, 100_000, 1e-3)
        # at the segment cap (1 / x on [1e-6, 1e-3], values up to 1e6) the band is sound but wider
        assert eps <= 2.5e-3 or u - l < 1e-6 or k == MAX_SEGMENTS, (l, u, k, eps)


@pytest.mark.slow
@pytest.mark.parametrize("act", KINDS, ids=repr)
def test_sandwich_holds_on_a_million_points(act):
    for l, u in intervals_of(act):
        for tolerance in (1e-2, 1e-4):
            check_sandwich(act, l, u, 1_000_000, tolerance)


@pytest.mark.parametrize("act, kink", [(ELU(0.4), 0.0), (HardSwish(), -3.0), (HardSwish(), 3.0)], ids=repr)
def test_a_tiny_interval_around_a_kink_keeps_the_kink_as_a_breakpoint(act, kink):
    """A one-segment band over ``[kink - 1e-10, kink + 1e-10]`` was off by ``|jump| h / 4`` (3e-11 for ELU(0.4)),
    far beyond its float margins: intervals with a split inside are never collapsed to one segment."""
    lo_, hi_ = np.array([kink - 1e-10]), np.array([kink + 1e-10])
    t, lo, hi, _ = act.sandwich(lo_, hi_, np.array([1]))
    assert kink in t[0]
    check_sandwich(act, kink - 1e-10, kink + 1e-10, 1000, 1e-3)


def test_more_segments_give_a_smaller_certified_error():
    act = Tanh()
    l, u = np.array([-3.0]), np.array([2.0])
    eps = [act.sandwich(l, u, k)[3][0] for k in (4, 16, 64)]
    assert eps[0] > 4 * eps[1] > 16 * eps[2] * 0.9  # second order: 16x per 4x segments
    assert act.segments_for(l, u, 1e-4)[0] > act.segments_for(l, u, 1e-2)[0]


@pytest.mark.parametrize("kind", ["sigmoid", "tanh", "silu", "gelu", "softplus", {"kind": "elu", "alpha": 0.5},
                                  {"kind": "soft_exponential", "alpha": 0.3}, {"kind": "repu", "p": 2},
                                  "hard_swish"])
def test_network_bounds_contain_every_sampled_value(kind):
    rng = np.random.default_rng(5)
    net = random_mlp(rng, [2, 6, 6, 2], kind)
    domain = InputDomain(np.array([-1.5, -1.0]), np.array([1.0, 2.0]))
    X = np.vstack([domain.sample(20_000, rng), [[-1.5, -1.0], [1.0, 2.0], [-1.5, 2.0], [1.0, -1.0]]])
    values = net.forward_all(X)
    for method in ("interval", "symbolic"):
        bounds = compute_bounds(net, domain, method)
        for name, v in values.items():
            lower, upper = bounds[name]
            assert np.all(lower <= v) and np.all(v <= upper), (method, name)


@pytest.mark.parametrize("kind, seed, runs", [
    ("sigmoid", 0, (("max", "milp"), ("min", "bab"))), ("tanh", 1, (("min", "milp"), ("max", "bab"))),
    ("silu", 2, (("max", "auto"), ("min", "milp"))), ("softplus", 3, (("min", "auto"),)),
    ("hard_swish", 4, (("max", "milp"), ("min", "bab")))])
def test_certified_interval_contains_the_best_sampled_value(kind, seed, runs):
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [2, 3, 3, 1], kind)
    domain = InputDomain(-np.ones(2), np.ones(2))
    X = domain.sample(20_000, rng)
    y = net.forward(X)[:, 0]
    for sense, method in runs:
        r = optimize(net, domain, **{"maximize" if sense == "max" else "minimize": 0}, mip_gap=1e-2, time_limit=1,
                     method=method)
        assert r.stats["method"] == ("smooth" if method == "milp" else "bab")
        assert r.objective == float(net.forward(r.x)[0]) and domain.contains(r.x, tol=0.0)[0]
        if r.bound is None:  # a loaded machine: the second ran out before a first bound
            assert r.status == "time_limit"
            continue
        assert r.status in ("optimal", "feasible")
        low, high = r.interval
        best = y.max() if sense == "max" else y.min()
        if sense == "max":
            assert best <= r.bound and r.objective <= r.bound
        else:
            assert r.bound <= best and r.bound <= r.objective
        assert r.gap == pytest.approx(abs(r.bound - r.objective) / max(1.0, abs(r.objective)))
        assert (r.status == "optimal") == (r.gap <= 1e-2)


def test_refinement_narrows_the_gap_round_by_round():
    net = random_mlp(np.random.default_rng(7), [2, 4, 4, 1], "tanh")
    r = optimize(net, (-np.ones(2), np.ones(2)), maximize=0, mip_gap=1e-4, time_limit=1.5, method="milp")
    rounds = r.stats["rounds"]
    assert len(rounds) >= 2 and rounds[-1]["segments"] > rounds[0]["segments"]
    assert rounds[-1]["gap"] <= rounds[0]["gap"]


def test_verify_holds_only_when_sound_and_violated_with_a_checked_counterexample():
    from relumilp.frontends.vnnlib import OutputConstraint, Property
    from relumilp.verify import verify

    rng = np.random.default_rng(3)
    net = random_mlp(rng, [2, 6, 6, 1], "sigmoid")
    domain = InputDomain(-np.ones(2), np.ones(2))
    top = net.forward(domain.sample(50_000, rng))[:, 0].max()
    unsafe_above = lambda t: Property(2, 1, (domain,), (OutputConstraint(np.array([[-1.0]]), np.array([-t])),))
    assert verify(net, unsafe_above(top + 0.01), time_limit=60).result == "holds"
    answer = verify(net, unsafe_above(top - 0.01), time_limit=60)
    assert answer.result == "violated"
    x = np.asarray(answer.counterexample["x"])
    assert net.forward(x)[0] >= top - 0.01 and domain.contains(x, tol=0.0)[0]


def test_bad_parameters_and_domains_are_refused_in_one_line():
    for make, error in ((lambda: ELU(2.0), UnsupportedOperatorError), (lambda: RePU(1.5), UnsupportedOperatorError),
                        (lambda: SoftExponential(math.inf), UnsupportedOperatorError)):
        with pytest.raises(error) as info:
            make()
        assert "\n" not in str(info.value)
    with pytest.raises(InvalidNetworkError, match="domain edge"):
        SoftExponential(-0.5).sandwich(np.array([-5.0]), np.array([0.0]), 4)
    with pytest.raises(InvalidNetworkError, match="finite pre-activation bounds"):
        Sigmoid().sandwich(np.array([-np.inf]), np.array([0.0]), 4)
    with pytest.raises(UnsupportedOperatorError, match="linear regions"):
        Tanh().pattern(np.zeros(3))


def smooth_torch_model():
    from relumilp.train.modules import RePU as RePUModule
    from relumilp.train.modules import SoftExponential as SoftExpModule

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(3, 5), nn.Sigmoid(), nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 5), nn.SiLU(), nn.Linear(5, 5),
        nn.Softplus(), nn.Linear(5, 5), nn.ELU(0.7), nn.Linear(5, 5), nn.GELU(), nn.Linear(5, 5),
        SoftExpModule(0.3, learnable=False), nn.Linear(5, 5), SoftExpModule(-0.2, learnable=False), nn.Linear(5, 5),
        RePUModule(2), nn.Linear(5, 2),
    ).double().eval()


def test_torch_smooth_layers_compile_to_the_same_function():
    from relumilp.frontends.torch import from_torch

    model = smooth_torch_model()
    net = from_torch(model)
    assert [a.activation.kind for a in net.activations] == [
        "sigmoid", "tanh", "silu", "softplus", "elu", "gelu", "soft_exponential", "soft_exponential", "repu"]
    x = np.random.default_rng(0).normal(size=(200, 3))
    np.testing.assert_allclose(net.forward(x), model(torch.from_numpy(x)).detach().numpy(), rtol=1e-12, atol=1e-12)
    scripted = nn.Sequential(*list(model)[:12], nn.Linear(5, 2)).double().eval()
    np.testing.assert_allclose(from_torch(torch.jit.script(scripted)).forward(x),
                               scripted(torch.from_numpy(x)).detach().numpy(), rtol=1e-12, atol=1e-12)


def test_onnx_smooth_operators_match_onnxruntime():
    import onnx
    import onnxruntime as ort

    from relumilp.frontends import load_network

    torch.manual_seed(1)
    x = np.random.default_rng(2).normal(size=(200, 3))
    for dtype in (torch.float64, torch.float32):  # ORT has no float64 Elu, Softplus: float32 for the full model
        full = dtype == torch.float32
        model = nn.Sequential(nn.Linear(3, 5), nn.Sigmoid(), nn.Linear(5, 5), nn.Tanh(),
                              *((nn.Linear(5, 5), nn.ELU(0.5), nn.Linear(5, 5), nn.Softplus()) if full else ()),
                              nn.Linear(5, 2)).to(dtype).eval()
        buffer = io.BytesIO()
        torch.onnx.export(model, (torch.zeros(1, 3, dtype=dtype),), buffer, dynamo=False, opset_version=17,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}})
        net = load_network(onnx.load_from_string(buffer.getvalue()))
        kinds = [a.activation.kind for a in net.activations]
        assert kinds == ["sigmoid", "tanh"] + (["elu", "softplus"] if full else [])
        session = ort.InferenceSession(buffer.getvalue())
        expected = session.run(None, {"x": x.astype(np.float64 if dtype == torch.float64 else np.float32)})[0]
        tol = 1e-12 if dtype == torch.float64 else 2e-6  # float32: ORT's own rounding
        np.testing.assert_allclose(net.forward(x), expected, rtol=tol, atol=tol)
        np.testing.assert_allclose(net.forward(x), model.double()(torch.from_numpy(x)).detach().numpy(),
                                   rtol=1e-12, atol=1e-12)


def test_smooth_networks_save_and_load(tmp_path):
    from relumilp.ir import Network

    rng = np.random.default_rng(4)
    for i, act in enumerate(KINDS):
        net = random_mlp(rng, [2, 3, 1], act.to_spec())
        net.save(tmp_path / f"n{i}.npz")
        loaded = Network.load(tmp_path / f"n{i}.npz")
        assert loaded.activations[0].activation == act and loaded.content_hash == net.content_hash
        x = rng.normal(size=(10, 2))
        np.testing.assert_array_equal(loaded.forward(x), net.forward(x))


@pytest.mark.parametrize("seed", [2, 3, 11])
def test_small_smooth_maximisations_are_solved_not_closed_at_a_relaxation_leaf(seed):
    """A 2-6-6-1 tanh / sigmoid network has few neurons, so every box used to be a leaf whose MILP (bands: one
    more relaxation) closed it above the gap: 'unknown' within 0.5 s. Boxes are now split on."""
    torch.manual_seed(seed)
    module = nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 6), nn.Sigmoid(), nn.Linear(6, 1)).double().eval()
    from relumilp.frontends import from_torch

    net = from_torch(module, input_shape=(2,))
    result = optimize(net, InputDomain(-np.ones(2), np.ones(2)), maximize=0, time_limit=60)
    assert result.status == "optimal"
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 101), np.linspace(-1, 1, 101)), -1).reshape(-1, 2)
    assert result.bound >= net.forward(grid).max()
    assert result.objective == net.forward(result.x[None])[0, 0]


@pytest.mark.parametrize("method", ["interval", "symbolic", "alpha"])
def test_soft_exponential_bounds_refuse_its_domain_edge_and_hold_just_inside(method):
    """alpha < 0: past ``x = 1/alpha - alpha`` the forward pass is the clamp, where the formula's error
    model once gave bounds 1e-13 inside the value; boxes reaching the edge are refused, boxes just
    inside it hold on samples."""
    from relumilp.ir import ActivationNode, AffineNode, InputNode, Network

    act = SoftExponential(-0.5)  # edge at x = -1.5
    net = Network([InputNode("input", 1), AffineNode("a", 1, ("input",), (np.ones((1, 1)),), np.zeros(1)),
                   ActivationNode("f", 1, ("a",), act)], "f")
    for low, high in ((-1.6, -1.59), (-1.6, -1.4)):
        with pytest.raises(InvalidNetworkError, match="domain edge"):
            compute_bounds(net, InputDomain.box(low, high, 1), method)
    low, high = -1.5 + 1e-9, -1.4
    bounds = compute_bounds(net, InputDomain.box(low, high, 1), method)
    x = np.concatenate([np.linspace(low, high, 20001), [low, high]])[:, None]
    lower, upper = bounds["f"]
    values = net.forward(x)[:, 0]
    assert lower[0] <= values.min() and values.max() <= upper[0]
