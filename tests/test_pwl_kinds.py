"""Piecewise-linear kinds beyond ReLU (hard sigmoid, abs, user-defined tables, PReLU slopes): the generic
big-M MILP equals brute force, the hull LP contains the graph, bounds are sound by sampling, files and
the passes that read piece tables (scaling, pruning, stability, MIP starts, Pyomo) keep them."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import check_scaling_and_pruning
from oracles import brute_force_optima
from relumilp.activations import Abs, Activation, HardSigmoid, LeakyReLU, PiecewiseLinear, from_spec, prelu
from relumilp.bounds import compute_bounds
from relumilp.domain import InputDomain
from relumilp.errors import InvalidNetworkError
from relumilp.formulation.bigm import build_lp_relaxation, build_milp, start_vector
from relumilp.ir import Network
from test_bounds_symbolic import samples_with_corners
from test_formulation_oracle import check_milp_against_brute_force

PWL_KINDS = ("hard_sigmoid", "abs", "pwl", "pwl", "clip", "leaky_relu", "relu")


def random_pwl(rng: np.random.Generator) -> dict:
    """A random continuous table: 1-4 kinks in [-1.5, 1.5], slopes of any sign (convex or not)."""
    n = int(rng.integers(1, 5))
    breakpoints = np.sort(rng.choice(np.linspace(-1.5, 1.5, 61), size=n, replace=False))
    slopes = rng.normal(size=n + 1)
    return {"kind": "pwl", "breakpoints": breakpoints.tolist(), "slopes": slopes.tolist(),
            "offset": float(rng.normal(scale=0.5))}


def random_spec(rng: np.random.Generator, kind: str) -> dict:
    if kind == "pwl":
        return random_pwl(rng)
    if kind == "hard_sigmoid":
        return {"kind": kind, "alpha": float(rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 2.0)),
                "beta": float(rng.uniform(-0.5, 1.5))}
    if kind == "clip":
        low = float(rng.uniform(-1.5, 1.0))
        return {"kind": kind, "low": low, "high": low + float(rng.uniform(0.2, 2.0))}
    if kind == "leaky_relu":
        return {"kind": kind, "alpha": float(rng.choice([0.2, -0.3]))}
    return {"kind": kind}


def random_network(seed: int) -> tuple[Network, InputDomain]:
    """1-2 inputs, 1-3 hidden layers with <= 7 units in all, each layer a random kind of :data:`PWL_KINDS`."""
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(1, 3))
    depth = int(rng.integers(1, 4))
    widths = [int(rng.integers(1, 4)) for _ in range(depth)]
    while sum(widths) > 7:
        widths[int(np.argmax(widths))] -= 1
    sizes = [n_in, *widths, int(rng.integers(1, 3))]
    layers = [(rng.normal(size=(o, i)), rng.normal(scale=0.5, size=o)) for i, o in zip(sizes[:-1], sizes[1:])]
    acts = [random_spec(rng, str(rng.choice(PWL_KINDS))) for _ in widths]
    net = Network.sequential(layers, acts)
    center = rng.normal(size=n_in)
    half = rng.uniform(0.2, 2.0, size=n_in)
    return net, InputDomain(center - half, center + half)


@pytest.fixture(params=["bigm", "incremental"])
def encoding(request, monkeypatch):
    """Both generic exact encodings of :class:`~relumilp.activations.Activation` (kinds' own ones stay)."""
    monkeypatch.setattr(Activation, "PWL_ENCODING", request.param)
    return request.param


@pytest.mark.parametrize("seed", [*range(12), *(pytest.param(s, marks=pytest.mark.slow) for s in range(12, 220))])
def test_milp_optimum_equals_brute_force(seed, encoding):
    """The generic MILP (hard sigmoid, abs, tables) and the kinds' own ones, mixed: == brute force."""
    check_milp_against_brute_force(*random_network(seed))


@pytest.mark.parametrize("seed", range(6))
def test_hull_lp_contains_the_graph_and_is_never_looser_than_big_m(seed, encoding):
    import highspy

    from relumilp.formulation.highs import to_highs

    net, domain = random_network(500 + seed)
    bounds = compute_bounds(net, domain, "interval")
    hull = build_lp_relaxation(net, bounds, domain)
    trace = net.forward_all(domain.sample(300, seed))
    milp = build_milp(net, bounds, domain)
    for x in domain.sample(300, seed):  # forward passes satisfy both models (MIP start included)
        assert milp.max_violation(start_vector(net, milp, x)) <= 1e-9
    v = np.zeros((300, hull.num_columns))
    for name, columns in hull.node_columns.items():
        v[:, columns] = trace[name]
    assert max(hull.max_violation(point) for point in v) <= 1e-9
    node = net.affines[-1]
    models = [build_milp(net, bounds, domain).relaxed(), hull]
    for model in models:
        model.h = to_highs(model)
        model.h.setOptionValue("output_flag", False)
    for j in range(node.size):
        for sign in (1.0, -1.0):
            values = []
            for model in models:
                model.h.changeColsCost(model.num_columns, np.arange(model.num_columns, dtype=np.int32),
                                       np.zeros(model.num_columns))
                model.h.changeColCost(int(model.node_columns[node.name][j]), sign)
                model.h.run()
                assert model.h.getModelStatus() == highspy.HighsModelStatus.kOptimal
                values.append(model.h.getInfo().objective_function_value)
            assert values[1] >= values[0] - 1e-9 * (1 + abs(values[0]))


def test_hull_of_one_neuron_is_the_convex_hull():
    """``|x|`` on [-1, 2]: the hull is y >= x, y >= -x, y <= (x + 4) / 3 (chord from (-1, 1) to (2, 2))."""
    from relumilp.formulation.milp import MILPAssembler

    asm = MILPAssembler()
    x, y = asm.add_columns([-1.0], [2.0]), asm.add_columns([0.0], [2.0])
    act = Abs()
    act.hull_rows(asm, "a", x, y, np.array([-1.0]), np.array([2.0]), act.phases([-1.0], [2.0]))
    lp = asm.finish(node_columns={}, binaries={}, input_name="", output_name="")
    rows = sorted(zip(lp.A.toarray().tolist(), lp.row_lower.tolist(), lp.row_upper.tolist()))
    assert rows == sorted([([-1.0, 1.0], 0.0, np.inf), ([1.0, 1.0], 0.0, np.inf),
                           ([-1.0 / 3.0, 1.0], -np.inf, 4.0 / 3.0)])


KINDS = [HardSigmoid(0.2, 0.5), HardSigmoid(-0.7, 0.2), HardSigmoid(1 / 6, 0.5), Abs(),
         PiecewiseLinear((-1.0, 0.5, 2.0), (0.5, -1.0, 2.0, 0.0), 0.3), PiecewiseLinear.maximum(0.4),
         PiecewiseLinear.minimum(-0.3), prelu(2.5), PiecewiseLinear((0.1, 0.2, 0.7), (3.0, -2.0, 1.0, 0.1), -0.05)]


@pytest.mark.parametrize("act", KINDS, ids=repr)
def test_bounds_are_sound_by_sampling(act):
    """Interval, symbolic and LP bounds contain every sampled float64 forward value (tolerance 0)."""
    rng = np.random.default_rng(abs(hash(act.kind)) % 1000)
    sizes = [3, 6, 6, 2]
    layers = [(rng.normal(0, 1.5 / np.sqrt(a), size=(b, a)), rng.normal(0, 0.3, size=b))
              for a, b in zip(sizes[:-1], sizes[1:])]
    net = Network.sequential(layers, [act, act])
    domain = InputDomain(-rng.uniform(0.2, 1.5, 3), rng.uniform(0.2, 1.5, 3))
    x = samples_with_corners(domain, 10_000, 0)
    previous = None
    for method in ("interval", "symbolic", "lp"):
        bounds = compute_bounds(net, domain, method)
        bounds.check_sound(net, x, tol=0.0)
        if previous is not None:  # each method is at least as tight as the one before
            for name in bounds.lower:
                assert np.all(bounds.lower[name] >= previous.lower[name] - 1e-9)
                assert np.all(bounds.upper[name] <= previous.upper[name] + 1e-9)
        previous = bounds


def test_network_file_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    layers = [(rng.normal(size=(4, 2)), rng.normal(size=4)), (rng.normal(size=(4, 4)), rng.normal(size=4)),
              (rng.normal(size=(4, 4)), rng.normal(size=4)), (rng.normal(size=(1, 4)), rng.normal(size=1))]
    acts = [KINDS[4], HardSigmoid(-0.7, 0.2), Abs()]
    net = Network.sequential(layers, acts)
    net.save(tmp_path / "pwl.npz")
    loaded = Network.load(tmp_path / "pwl.npz")
    assert [a.activation for a in loaded.activations] == acts and loaded.content_hash == net.content_hash
    x = rng.normal(size=(50, 2))
    np.testing.assert_array_equal(loaded(x), net(x))
    assert from_spec({"kind": "pwl", "breakpoints": [0.0], "slopes": [0.0, 1.0], "offset": 0.0}) == PiecewiseLinear()
    assert PiecewiseLinear((0.0,), (0.0, 1.0), 0.0) != PiecewiseLinear((0.0,), (0.0, 1.0), 0.1)


@pytest.mark.parametrize("make, message", [
    (lambda: PiecewiseLinear((1.0, 0.0), (0.0, 1.0, 2.0)), "strictly increasing"),
    (lambda: PiecewiseLinear((0.0,), (1.0,)), "one slope more than breakpoints"),
    (lambda: PiecewiseLinear((0.0, 1.0), (1.0, 1.0, 0.0)), "must change at every breakpoint"),
    (lambda: PiecewiseLinear((0.0,), (0.0, float("nan"))), "must be finite"),
    (lambda: PiecewiseLinear(("a",), (0.0, 1.0)), "must be numbers"),
    (lambda: HardSigmoid(0.0, 0.5), "alpha != 0"),
    (lambda: HardSigmoid(float("inf"), 0.5), "alpha != 0"),
    (lambda: prelu(float("nan")), "PReLU slope must be finite"),
])
def test_bad_parameters_get_a_one_line_error(make, message):
    with pytest.raises(InvalidNetworkError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


def test_prelu_slopes_pick_the_kind():
    assert prelu(0.0).kind == "relu" and prelu(0.25) == LeakyReLU(0.25) and prelu(1.0).kind == "identity"
    x = np.linspace(-2, 2, 101)
    for alpha in (-0.5, 0.25, 1.0, 3.0):
        np.testing.assert_array_equal(prelu(alpha).apply(x), np.where(x >= 0, x, alpha * x))


def test_scaling_pruning_and_stability_keep_pwl_networks():
    from relumilp.analysis.stability import pieces_seen, proven_stability

    rng = np.random.default_rng(11)
    sizes = [3, 10, 10, 2]
    layers = [(rng.normal(0, 3.0 / np.sqrt(a), size=(b, a)), rng.normal(0, 0.3, size=b))
              for a, b in zip(sizes[:-1], sizes[1:])]
    net = Network.sequential(layers, [HardSigmoid(0.5, 0.5), KINDS[4]])
    # small domain: some neurons stable, on flat and sloped pieces
    bounds, x = check_scaling_and_pruning(net, InputDomain.box(-0.2, 0.2, 3))
    rows = proven_stability(net, bounds)
    seen = pieces_seen(net, x)
    for node, row in zip(net.activations, rows):  # a neuron proven stable is seen on one piece only
        assert row.unstable + row.stable_active + row.stable_inactive == node.size
        ph = node.activation.phases(*bounds[node.inputs[0]])
        assert np.all(seen[node.name][ph.stable].sum(axis=1) <= 1)
        assert ph.num_binaries == row.binaries


def test_regions_of_a_one_dimensional_table_network():
    """Exact region counting on a 1-D input: a single table neuron has one region per reachable piece."""
    from relumilp.analysis import count_regions

    act = KINDS[4]  # kinks at -1, 0.5, 2
    net = Network.sequential([(np.array([[1.0]]), np.zeros(1)), (np.array([[1.0]]), np.zeros(1))], [act])
    assert count_regions(net, InputDomain(np.array([-3.0]), np.array([3.0])), "exact").count == 4
    assert count_regions(net, InputDomain(np.array([0.0]), np.array([1.0])), "exact").count == 2


def test_pyomo_block_and_ideal_cuts_take_pwl_networks(encoding):
    """The Pyomo block solves a table network to the brute-force optimum (its warm start satisfies every
    row, fill columns of the incremental encoding included); ideal cuts skip non-ReLU layers."""
    import pyomo.environ as pyo

    import relumilp
    from relumilp.formulation.ideal import IdealSeparator

    rng = np.random.default_rng(5)
    layers = [(rng.normal(size=(3, 2)), rng.normal(size=3)), (rng.normal(size=(3, 3)), rng.normal(size=3)),
              (rng.normal(size=(1, 3)), rng.normal(size=1))]
    net = Network.sequential(layers, [KINDS[4], HardSigmoid(-0.7, 0.2)])
    domain = InputDomain(np.array([-1.5, -1.0]), np.array([1.0, 1.5]))
    bounds = compute_bounds(net, domain, "interval")
    assert IdealSeparator(net, build_milp(net, bounds, domain)).layers == []
    m = pyo.ConcreteModel()
    block = relumilp.add_network(m, net, input_bounds=domain)
    m.obj = pyo.Objective(expr=block.outputs[0], sense=pyo.maximize)
    block.warm_start(np.array([0.3, -0.2]))
    assert all(c.lslack() >= -1e-9 and c.uslack() >= -1e-9 for c in m.component_data_objects(pyo.Constraint))
    relumilp.solve(m)
    expected = brute_force_optima(net, domain.lower, domain.upper, np.eye(net.output_size)[0])["max"][0]
    assert pyo.value(m.obj) == pytest.approx(expected, abs=1e-6, rel=1e-6)


def test_mps_file_names_every_column_once(tmp_path, encoding):
    """Written models name each binary and fill column of a table neuron by neuron and segment."""
    from relumilp.formulation.highs import write_model

    net, domain = random_network(4)
    milp = build_milp(net, compute_bounds(net, domain, "interval"), domain)
    names = milp.column_names()
    assert len(set(names)) == len(names) and not any(n.startswith("c") and n[1:].isdigit() for n in names)
    write_model(milp, tmp_path / "m.mps")
    assert (tmp_path / "m.mps").stat().st_size > 0


@pytest.mark.parametrize("seed", [401, 409])
def test_verify_decides_like_brute_force(tmp_path, seed):
    """``Y_0 >= max - 0.05`` is violated (with a counterexample), ``Y_0 >= max + 0.05`` holds."""
    from relumilp.verify import verify

    net, d = random_network(seed)
    top = brute_force_optima(net, d.lower, d.upper, np.eye(net.output_size)[0])["max"][0]
    for delta, expected in ((-0.05, "violated"), (0.05, "holds")):
        lines = [f"(declare-const X_{i} Real)" for i in range(net.input_size)]
        lines += [f"(declare-const Y_{j} Real)" for j in range(net.output_size)]
        for i in range(net.input_size):
            lines += [f"(assert (>= X_{i} {float(d.lower[i])!r}))", f"(assert (<= X_{i} {float(d.upper[i])!r}))"]
        lines.append(f"(assert (>= Y_0 {float(top + delta)!r}))")
        (tmp_path / "p.vnnlib").write_text("\n".join(lines))
        result = verify(net, tmp_path / "p.vnnlib")
        assert result.result == expected
        if expected == "violated":
            assert net.forward(np.array(result.counterexample["x"]))[0] >= top + delta


@pytest.mark.parametrize("alpha, beta", [(0.9, 1.0), (-0.5, 1.0), (0.5, 0.0), (1e300, 1.0), (2.0, -1e-300)])
def test_hard_sigmoid_ramp_ends_are_the_exact_floats_however_far_the_first_guess(alpha, beta):
    """The ramp's ends are the first floats where ``alpha x + beta`` (in float64) reaches 0 and 1; with
    ``beta = 1`` the guess for one end is 0, some 1e18 floats from it (construction used to hang there)."""
    act = HardSigmoid(alpha, beta)
    line = lambda x: alpha * np.float64(x) + beta
    targets = (0.0, 1.0) if alpha > 0 else (1.0, 0.0)
    for end, target in zip(act.breakpoints, targets):
        below = np.nextafter(end, -np.inf)
        if alpha > 0:
            assert line(end) >= target and not line(below) >= target
        else:
            assert line(end) <= target and not line(below) <= target
    x = np.concatenate([np.array(act.breakpoints), np.nextafter(np.array(act.breakpoints), -np.inf),
                        np.nextafter(np.array(act.breakpoints), np.inf)])
    np.testing.assert_array_equal(act.apply(x), np.clip(alpha * x + beta, 0.0, 1.0))
