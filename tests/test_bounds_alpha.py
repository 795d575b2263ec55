"""The ``alpha`` bound method (optimised relaxations for every node): sound by sampling with no tolerance,
never looser than symbolic, tighter where symbolic is loose, deadline honoured, and exact MILP optima."""

from __future__ import annotations

import numpy as np
import pytest

import relumilp
from oracles import brute_force_optima
from relumilp.bounds import compute_bounds
from relumilp.bounds.symbolic import alpha_bounds
from relumilp.cli import main
from relumilp.domain import InputDomain
from relumilp.errors import RelumilpError
from relumilp.limits import Deadline
from test_bounds_symbolic import assert_not_looser, mixed_mlp, residual_dag, samples_with_corners


def width(bounds, name):
    return float(np.sum(bounds.upper[name] - bounds.lower[name]))


@pytest.mark.parametrize("seed", range(5))
def test_alpha_sound_by_sampling_and_never_looser_than_symbolic(seed):
    net = mixed_mlp(seed)  # ReLU, LeakyReLU (also negative slopes), clipped ReLU layers
    domain = InputDomain.box(-1.0, 1.0, net.input_size)
    symbolic = compute_bounds(net, domain, "symbolic")
    alpha = compute_bounds(net, domain, "alpha", steps=10)
    assert alpha.method == "alpha" and alpha.complete and set(alpha.times) == {"interval", "symbolic", "alpha"}
    alpha.check_sound(net, samples_with_corners(domain, 20_000, seed), tol=0.0)
    assert_not_looser(alpha, symbolic, net, slack=0.0)


def test_alpha_sound_on_a_dag_and_on_badly_scaled_weights():
    net = residual_dag()
    domain = InputDomain.box(-1.0, 1.0, 3)
    alpha = compute_bounds(net, domain, "alpha")
    alpha.check_sound(net, samples_with_corners(domain, 20_000), tol=0.0)
    assert_not_looser(alpha, compute_bounds(net, domain, "symbolic"), net, slack=0.0)
    rng = np.random.default_rng(5)  # huge then tiny weights: the round-off margins must carry it
    layers = [(rng.normal(size=(8, 3)) * 1e6, rng.normal(size=8) * 1e5), (rng.normal(size=(6, 8)) * 1e-6, rng.normal(size=6)),
              (rng.normal(size=(1, 6)), np.zeros(1))]
    net = relumilp.Network.sequential(layers, "relu")
    domain = InputDomain.box(-1.0, 1.0, 3)
    compute_bounds(net, domain, "alpha").check_sound(net, samples_with_corners(domain, 20_000), tol=0.0)


def test_alpha_with_slopes_that_never_reach_the_bound():
    """ONNX Relu -> Div -> PRelu with negative per-channel slopes: some lower-line parameters reach no
    bound; the optimisation skips them (it used to stop with torch's "not used in the graph")."""
    from onnx import TensorProto, helper, numpy_helper

    from relumilp.frontends.onnx import from_onnx

    init = [numpy_helper.from_array(np.array(1.63), "c"), numpy_helper.from_array(np.array([[[-0.13]], [[-0.08]]]), "sl")]
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Div", ["a", "c"], ["b"]),
             helper.make_node("PRelu", ["b", "sl"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 2, 1, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    net = from_onnx(model)
    center = np.random.default_rng(0).normal(size=net.input_size)
    domain = InputDomain(center - 0.5, center + 0.5)
    alpha = compute_bounds(net, domain, "alpha", steps=5)
    alpha.check_sound(net, samples_with_corners(domain, 5_000), tol=0.0)
    assert_not_looser(alpha, compute_bounds(net, domain, "symbolic"), net, slack=0.0)


def test_alpha_is_tighter_than_symbolic_where_symbolic_is_loose():
    net = relumilp.examples.peaks()  # 2-16-16-1: symbolic leaves the output about 130 wide
    domain = InputDomain.box(-3.0, 3.0, 2)
    symbolic = compute_bounds(net, domain, "symbolic")
    alpha = compute_bounds(net, domain, "alpha")
    assert width(alpha, net.output) < 0.8 * width(symbolic, net.output)
    hidden = net.affines[1].name  # an intermediate node is tightened too, not just the output
    assert width(alpha, hidden) < width(symbolic, hidden)
    alpha.check_sound(net, samples_with_corners(domain, 20_000), tol=0.0)
    # more steps never hurt much, no steps is the plain relaxation (symbolic again, up to the widening)
    plain = compute_bounds(net, domain, "alpha", steps=0)
    assert width(plain, net.output) <= width(symbolic, net.output)


def test_alpha_runs_before_lp_and_honours_the_deadline():
    net = relumilp.examples.peaks()
    domain = InputDomain.box(-3.0, 3.0, 2)
    lp = compute_bounds(mixed_mlp(1, [2, 6, 5, 1]), InputDomain.box(-1.0, 1.0, 2), "lp", workers=1)
    assert "alpha" in lp.times
    symbolic = compute_bounds(net, domain, "symbolic")
    gone = alpha_bounds(net, domain, start=symbolic, deadline=Deadline(0.0))  # long passed
    assert not gone.complete
    for name in symbolic.lower:  # nothing optimised: the start bounds stand
        np.testing.assert_array_equal(gone.lower[name], symbolic.lower[name])
        np.testing.assert_array_equal(gone.upper[name], symbolic.upper[name])
    rng = np.random.default_rng(0)
    big = relumilp.Network.sequential([(rng.normal(size=(100, 20)) / 4, rng.normal(size=100) * 0.1)]
                                      + [(rng.normal(size=(100, 100)) / 10, rng.normal(size=100) * 0.1) for _ in range(3)]
                                      + [(rng.normal(size=(1, 100)), np.zeros(1))], "relu")
    box = InputDomain.box(-1.0, 1.0, 20)
    cut = compute_bounds(big, box, "alpha", steps=1000, time_limit=0.5)
    assert not cut.complete
    assert sum(cut.times.values()) < 5.0
    cut.check_sound(big, box.sample(2000, 1), tol=0.0)


def test_alpha_options_are_checked():
    net = relumilp.examples.peaks()
    with pytest.raises(RelumilpError, match="only apply to the alpha"):
        compute_bounds(net, ([-3, -3], [3, 3]), "symbolic", steps=5)
    with pytest.raises(RelumilpError, match="steps >= 0"):
        compute_bounds(net, ([-3, -3], [3, 3]), "alpha", steps=-1)


@pytest.mark.parametrize("seed", range(3))
def test_milp_with_alpha_bounds_finds_the_brute_force_optimum(seed):
    net = mixed_mlp(100 + seed, [2, 4, 3, 2])
    domain = InputDomain.box(-1.0, 1.0, 2)
    truth = brute_force_optima(net, domain.lower, domain.upper, np.array([1.0, 0.0]))
    for sense, key in (("max", "maximize"), ("min", "minimize")):
        result = relumilp.optimize(net, domain, **{key: 0}, tighten="alpha", method="milp")
        assert result.status == "optimal"
        assert result.objective == pytest.approx(truth[sense][0], abs=1e-6)


def test_cli_tighten_alpha(tmp_path, capsys):
    path = tmp_path / "peaks.npz"
    relumilp.examples.peaks().save(path)
    assert main(["bounds", str(path), "--box", "-3:3", "--tighten", "alpha", "--quiet"]) == 0
    assert "alpha" in capsys.readouterr().out


def test_slope_search_runs_in_float32_only_where_it_suits_and_the_bound_stays_float64():
    """The projected Adam steps run in float32 (``BoundEngine._search_ops``) for networks within
    ``SEARCH_FLOAT32_RANGE``, the bound is evaluated in float64 and is sound by sampling, and it is as
    tight as the float64 search's within the search's precision; weights beyond the range, or bounds that
    are not finite, keep the search in float64."""
    import torch

    from relumilp.bounds import engine as engine_module
    from relumilp.bounds.engine import SEARCH_FLOAT32_RANGE, BoundEngine

    rng = np.random.default_rng(11)
    layers = [(rng.normal(size=(12, 4)), rng.normal(size=12)), (rng.normal(size=(12, 12)), rng.normal(size=12)),
              (rng.normal(size=(2, 12)), np.zeros(2))]
    net = relumilp.Network.sequential(layers, "relu")
    L, U = -np.ones((3, 4)), np.ones((3, 4))
    L[1] *= 0.5
    fast = BoundEngine.for_network(net)
    options = {"steps": 10, "sense": "lower"}
    result = fast.bounds(L, U, refine="all", optimise=options)
    assert fast._ops32 and fast._ops32[1].bias.dtype == torch.float32
    assert result.lower[net.output].dtype == np.float64
    precise = BoundEngine.for_network(net)
    precise._ops32 = False  # the float64 search, for comparison
    reference = precise.bounds(L, U, refine="all", optimise=options)
    np.testing.assert_allclose(result.lower[net.output], reference.lower[net.output], rtol=1e-4, atol=1e-4)
    x = L[:, None, :] + rng.random((3, 4000, 4)) * (U - L)[:, None, :]
    for b in range(3):
        assert np.all(net.forward(x[b]) >= result.lower[net.output][b])
    huge = relumilp.Network.sequential([(layers[0][0] * SEARCH_FLOAT32_RANGE, layers[0][1])] + layers[1:], "relu")
    assert BoundEngine.for_network(huge)._search_ops() is None
    bounds = {"x": torch.tensor([[1.0, np.inf]], dtype=torch.float64)}
    assert fast._search_ops(bounds) is None
    assert fast._search_ops({"x": torch.tensor([[1.0, 2.0]], dtype=torch.float64)}) is fast._ops32
    assert engine_module.BoundEngine.for_mlp([(torch.ones(2, 2), torch.zeros(2))], [], 2)._search_ops() is None


def test_non_finite_slopes_and_multipliers_become_zero_not_a_nan_bound():
    """Warm starts (or a float32 search) that carry NaN or inf parameters: the bound is evaluated at 0
    there (a valid slope and multiplier), finite and sound, not NaN."""
    from relumilp.bounds.engine import BETA, BoundEngine

    rng = np.random.default_rng(12)
    layers = [(rng.normal(size=(10, 3)), rng.normal(size=10)), (rng.normal(size=(2, 10)), np.zeros(2))]
    net = relumilp.Network.sequential(layers, "relu")
    engine = BoundEngine.for_network(net)
    L, U = -np.ones((1, 3)), np.ones((1, 3))
    act = net.activations[0].name
    splits = {act: np.zeros((1, 10), dtype=np.int8)}
    bad = np.full((1, 2, 10), np.nan)
    bad[0, 1] = np.inf
    result = engine.bounds(L, U, refine="all", splits=splits,
                           optimise={"steps": 0, "sense": "lower", "slopes": {act: bad, (BETA, act): bad}})
    lower = result.lower[net.output]
    assert np.all(np.isfinite(lower))
    x = rng.uniform(-1.0, 1.0, size=(5000, 3))
    assert np.all(net.forward(x) >= lower[0])
    assert all(np.all(np.isfinite(v)) for v in result.slopes.values())
