"""``relumilp.verify`` against brute-force answers, the unsafe-set encodings, the CLI, and ACAS Xu."""

from __future__ import annotations

import json

import numpy as np
import pytest

import relumilp.verify as verify_module
from relumilp.cli import main
from relumilp.domain import InputDomain
from relumilp.frontends.vnnlib import OutputConstraint, Property, parse_vnnlib
from relumilp.bounds.engine import BoundEngine
from relumilp.verify import spec_network, verify

from conftest import random_mlp
from oracles import brute_force_optima


def num(value) -> str:
    return repr(float(value))


def box_text(lower, upper) -> str:
    return "".join(f"(assert (>= X_{i} {num(lo)})) (assert (<= X_{i} {num(hi)}))\n"
                   for i, (lo, hi) in enumerate(zip(lower, upper)))


def header(n_in, n_out) -> str:
    return "".join(f"(declare-const X_{i} Real)\n" for i in range(n_in)) + "".join(
        f"(declare-const Y_{j} Real)\n" for j in range(n_out))


def check_answer(net, prop, result, expected):
    assert result.result == expected, result.details
    if expected == "violated":
        x, y = np.array(result.counterexample["x"]), np.array(result.counterexample["y"])
        np.testing.assert_array_equal(net.forward(x), y)
        assert prop.is_counterexample(x, net.forward(x))
    else:
        assert result.counterexample is None


CASES = [(seed, split, leaf) for seed in range(3) for split, leaf in ((False, 16), (True, 16), (True, 0))]


@pytest.mark.parametrize("seed, split, leaf", CASES)
def test_threshold_property_matches_brute_force(seed, split, leaf):
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [2, 6, 6, 2])
    lower, upper = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    best = brute_force_optima(net, lower, upper, np.array([1.0, 0.0]))["max"][0]
    for offset, expected in ((-0.05, "violated"), (0.05, "holds")):
        prop = parse_vnnlib(header(2, 2) + box_text(lower, upper) + f"(assert (>= Y_0 {num(best + offset)}))")
        # no sampling: the MILP / branch and bound must find the counterexample itself
        result = verify(net, prop, input_split=split, leaf_binaries=leaf, attack_samples=0, tighten="interval",
                        time_limit=60)
        check_answer(net, prop, result, expected)
        region = result.details["regions"][0]
        if not split and expected == "violated":  # found by the MILP itself (no sampling)
            assert region["decided_by"] == "milp"


@pytest.fixture(scope="module")
def linear_case():
    net = random_mlp(np.random.default_rng(7), [3, 7, 6, 2])
    return net, brute_force_optima(net, -np.ones(3), np.ones(3), np.array([1.0, -2.0]))


@pytest.mark.parametrize("tighten", ["symbolic", "lp"])
def test_linear_output_property_with_tightening(tighten, linear_case):
    net, opt = linear_case
    lower, upper = -np.ones(3), np.ones(3)
    for v, expected in ((opt["max"][0] - 0.02, "violated"), (opt["max"][0] + 0.02, "holds")):
        prop = parse_vnnlib(header(3, 2) + box_text(lower, upper) + f"(assert (>= (- Y_0 (* 2 Y_1)) {num(v)}))")
        for split in (False, True):
            result = verify(net, prop, tighten=tighten, input_split=split, attack_samples=0, time_limit=60)
            check_answer(net, prop, result, expected)


@pytest.mark.parametrize("disjunction", ["bigm", "split"])
def test_disjunctive_unsafe_set(disjunction):
    rng = np.random.default_rng(3)
    net = random_mlp(rng, [2, 6, 6, 3])
    lower, upper = np.array([-1.0, -0.5]), np.array([0.5, 1.0])
    optima = [brute_force_optima(net, lower, upper, np.eye(3)[j]) for j in range(3)]
    maxima = [o["max"][0] for o in optima]
    minima = [o["min"][0] for o in optima]
    safe = "(assert (or (>= Y_0 {a}) (and (>= Y_1 {b}) (<= Y_2 {c})) (<= Y_2 {d})))"
    # every disjunct out of reach: holds
    text = safe.format(a=num(maxima[0] + 0.01), b=num(maxima[1] + 0.01), c=0.0, d=num(minima[2] - 0.01))
    prop = parse_vnnlib(header(2, 3) + box_text(lower, upper) + text)
    for split in (False, True):
        result = verify(net, prop, disjunction=disjunction, input_split=split, attack_samples=0, time_limit=60)
        check_answer(net, prop, result, "holds")
    # only the last disjunct reachable: violated, and the counterexample must be in it
    text = safe.format(a=num(maxima[0] + 0.01), b=num(maxima[1] + 0.01), c=0.0, d=num(minima[2] + 0.01))
    prop = parse_vnnlib(header(2, 3) + box_text(lower, upper) + text)
    for split in (False, True):
        result = verify(net, prop, disjunction=disjunction, input_split=split, attack_samples=0, time_limit=60)
        check_answer(net, prop, result, "violated")
        assert result.counterexample["y"][2] <= minima[2] + 0.01


def test_input_disjuncts_are_each_verified():
    rng = np.random.default_rng(11)
    net = random_mlp(rng, [2, 6, 6, 1])
    boxes = [(np.array([-1.0, -1.0]), np.array([0.0, 0.0])), (np.array([0.0, 0.0]), np.array([1.0, 1.0]))]
    maxima = [brute_force_optima(net, lo, hi, np.ones(1))["max"][0] for lo, hi in boxes]
    low, high = sorted(maxima)
    which = int(np.argmax(maxima))
    regions = " ".join(
        "(and " + " ".join(f"(>= X_{i} {num(lo[i])}) (<= X_{i} {num(hi[i])})" for i in range(2)) + ")"
        for lo, hi in boxes)
    for threshold, expected in (((low + high) / 2, "violated"), (high + 0.01, "holds")):
        prop = parse_vnnlib(header(2, 1) + f"(assert (or {regions}))\n(assert (>= Y_0 {num(threshold)}))")
        for split in (False, True):
            result = verify(net, prop, input_split=split, attack_samples=0, time_limit=60)
            check_answer(net, prop, result, expected)
            if expected == "violated":  # only the region with the larger maximum can violate
                lo, hi = boxes[which]
                assert np.all(np.array(result.counterexample["x"]) >= lo)
                assert np.all(np.array(result.counterexample["x"]) <= hi)


def test_input_rows_restrict_the_region():
    rng = np.random.default_rng(5)
    net = random_mlp(rng, [2, 6, 1])
    lower, upper = -np.ones(2), np.ones(2)
    A, b = np.array([[1.0, 1.0]]), np.array([0.0])
    best = brute_force_optima(net, lower, upper, np.ones(1), A=A, b=b)["max"][0]
    for v, expected in ((best - 0.01, "violated"), (best + 0.01, "holds")):
        text = box_text(lower, upper) + f"(assert (<= (+ X_0 X_1) 0))(assert (>= Y_0 {num(v)}))"
        prop = parse_vnnlib(header(2, 1) + text)
        for split in (False, True):
            result = verify(net, prop, input_split=split, attack_samples=0, time_limit=60)
            check_answer(net, prop, result, expected)
            if expected == "violated":
                assert sum(result.counterexample["x"]) <= 0.0


def test_sampling_finds_an_easy_counterexample_without_a_milp():
    net = random_mlp(np.random.default_rng(0), [2, 4, 1])
    prop = parse_vnnlib(header(2, 1) + box_text([-1, -1], [1, 1]) + "(assert (>= Y_0 -1000))")
    result = verify(net, prop)
    assert result.result == "violated" and result.details["regions"][0]["decided_by"] == "attack"
    assert verify(net, prop, attack_samples=0, input_split=False).details["regions"][0]["decided_by"] == "milp"


def test_the_gradient_attack_finds_a_corner_that_sampling_misses():
    """``y = relu(sum x) - relu(sum x - 59)`` over ``x in [0, 1]^60``, unsafe ``y >= 58.9``: only a tiny
    corner of the box is unsafe (random points have ``sum x`` near 30), and PGD walks into it. With
    ``attack_samples=0`` neither attack runs."""
    from relumilp.frontends.vnnlib import OutputConstraint, Property
    from relumilp.ir import Network
    from relumilp.verify import attack

    n = 60
    net = Network.sequential([(np.vstack([np.ones(n), np.ones(n)]), np.array([0.0, -59.0])),
                              (np.array([[1.0, -1.0]]), np.zeros(1))], "relu")
    domain = InputDomain(np.zeros(n), np.ones(n))
    unsafe = OutputConstraint(np.array([[-1.0]]), np.array([-58.9]))
    rng = np.random.default_rng(0)
    assert attack.sampling_attack(net, domain, [unsafe], 1000, rng) is None
    x, y = attack.gradient_attack(net, domain, [unsafe], rng)
    assert domain.contains(x[None], tol=0.0)[0] and net.forward(x)[0] >= 58.9 and y[0] == net.forward(x)[0]
    prop = Property(n, 1, (domain,), (unsafe,))
    result = verify(net, prop, time_limit=60)
    assert result.result == "violated" and result.details["regions"][0]["decided_by"] == "attack"
    assert verify(net, prop, attack_samples=0, time_limit=60).details["regions"][0]["decided_by"] != "attack"


def test_the_gradient_attack_reports_only_confirmed_points(monkeypatch):
    """Its candidates go through the exact re-check: with the re-check refusing all, nothing is found."""
    from relumilp.verify import attack

    net = random_mlp(np.random.default_rng(2), [3, 8, 1])
    domain = InputDomain(-np.ones(3), np.ones(3))
    from relumilp.frontends.vnnlib import OutputConstraint

    easy = OutputConstraint(np.array([[-1.0]]), np.array([1e6]))  # y >= -1e6: every point
    assert attack.gradient_attack(net, domain, [easy], np.random.default_rng(0)) is not None
    monkeypatch.setattr(attack, "check_candidate", lambda *args: None)
    assert attack.gradient_attack(net, domain, [easy], np.random.default_rng(0)) is None


def test_unconfirmed_candidate_is_never_reported_violated(monkeypatch):
    net = random_mlp(np.random.default_rng(2), [2, 6, 6, 1])
    best = brute_force_optima(net, -np.ones(2), np.ones(2), np.ones(1))["max"][0]
    prop = parse_vnnlib(header(2, 1) + box_text([-1, -1], [1, 1]) + f"(assert (>= Y_0 {num(best - 0.1)}))")
    monkeypatch.setattr(verify_module.attack, "check_candidate", lambda *args: None)
    monkeypatch.setattr(verify_module.attack, "first_counterexample", lambda *args: None)
    result = verify(net, prop, input_split=False, attack_samples=0)
    assert result.result == "unknown" and result.counterexample is None
    assert result.details["regions"][0]["milp"][0]["repaired"] is False


def test_spec_network_computes_the_margins():
    rng = np.random.default_rng(4)
    net = random_mlp(rng, [3, 5, 4])
    G, h = rng.normal(size=(2, 4)), rng.normal(size=2)
    margin = spec_network(net, G, h)
    X = rng.uniform(-1, 1, size=(50, 3))
    np.testing.assert_allclose(margin.forward(X), net.forward(X) @ G.T - h, atol=1e-12)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "clipped_relu"])
def test_box_bounds_are_sound(activation):
    from relumilp.bounds import compute_bounds
    from relumilp.ir import ActivationNode, Network

    rng = np.random.default_rng(9)
    base = random_mlp(rng, [3, 8, 8, 2])
    spec = {"relu": {}, "leaky_relu": {"alpha": 0.1}, "clipped_relu": {"cap": 0.7}}[activation]
    nodes = [ActivationNode(n.name, n.size, n.inputs, kind=activation, **spec) if isinstance(n, ActivationNode) else n
             for n in base.order]
    net = Network(nodes, base.output)
    domain = InputDomain(-np.ones(3), np.ones(3))
    root = compute_bounds(net, domain, "interval")
    L = rng.uniform(-1, 0.5, size=(16, 3))
    U = np.minimum(L + rng.uniform(0.05, 1.0, size=(16, 3)), 1.0)
    start = {k: (np.repeat(root.lower[k][None], 16, 0), np.repeat(root.upper[k][None], 16, 0)) for k in root.lower}
    lo, hi = BoundEngine.for_network(net).bounds(L, U, start, refine="undecided")
    for i in range(16):
        values = net.forward_all(rng.uniform(L[i], U[i], size=(500, 3)))
        for name, v in values.items():
            assert np.all(v >= lo[name][i] - 1e-12) and np.all(v <= hi[name][i] + 1e-12), name


def test_result_json_and_vnncomp_text():
    prop = Property(1, 1, (InputDomain([0.0], [1.0]),), (OutputConstraint(np.array([[1.0]]), np.array([0.0])),))
    net = random_mlp(np.random.default_rng(0), [1, 3, 1])
    result = verify_module.VerificationResult("violated", {"x": np.array([0.25]), "y": np.array([-1e-7])}, 1.5)
    assert result.to_json() == {"result": "violated", "counterexample": {"x": [0.25], "y": [-1e-7]}, "time": 1.5}
    assert result.vnncomp_text() == "sat\n((X_0 0.25)\n (Y_0 -0.0000001))\n"
    assert verify_module.VerificationResult("holds", None, 0.1).vnncomp_text() == "unsat\n"
    assert verify_module.VerificationResult("unknown", None, 0.1).vnncomp_text() == "timeout\n"
    assert verify(net, prop).result in ("holds", "violated")


# -- the CLI ------------------------------------------------------------------------------------------


@pytest.fixture
def model_and_props(tmp_path):
    net = random_mlp(np.random.default_rng(1), [2, 6, 6, 2])
    path = tmp_path / "net.npz"
    net.save(path)
    best = brute_force_optima(net, -np.ones(2), np.ones(2), np.array([1.0, 0.0]))["max"][0]
    files = {}
    for name, v in (("violated", best - 0.05), ("holds", best + 0.05)):
        files[name] = tmp_path / f"{name}.vnnlib"
        files[name].write_text(header(2, 2) + box_text([-1, -1], [1, 1]) + f"(assert (>= Y_0 {num(v)}))\n")
    return net, path, files, best


def test_cli_json_and_result_file(model_and_props, tmp_path, capsys):
    net, model, props, best = model_and_props
    out = tmp_path / "result.txt"
    assert main(["verify", str(model), str(props["violated"]), "--json", "--result-file", str(out)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"result", "counterexample", "time"} and data["result"] == "violated"
    x = np.array(data["counterexample"]["x"])
    assert net.forward(x)[0] >= best - 0.05 and np.allclose(net.forward(x), data["counterexample"]["y"])
    text = out.read_text()
    lines = text.splitlines()
    assert lines[0] == "sat" and lines[1].startswith("((X_0 ") and lines[-1].endswith("))")
    values = {}
    for line in lines[1:]:
        name, value = line.strip().strip("()").split()
        values[name] = float(value)
    assert sorted(values) == ["X_0", "X_1", "Y_0", "Y_1"]
    np.testing.assert_array_equal([values["X_0"], values["X_1"]], x)  # positional text reads back exactly

    assert main(["verify", str(model), str(props["holds"]), "--result-file", str(out), "--tighten", "interval"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == "holds" and out.read_text() == "unsat\n"


def test_cli_plain_output_and_time_limit(model_and_props, capsys):
    _, model, props, _ = model_and_props
    assert main(["verify", str(model), str(props["violated"]), "--no-input-split", "--disjunction", "split"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "violated" and lines[1].startswith("x ") and lines[2].startswith("y ")


def test_cli_errors_exit_2(model_and_props, tmp_path, capsys):
    _, model, props, _ = model_and_props
    bad = tmp_path / "bad.vnnlib"
    bad.write_text(header(2, 2) + "(assert (<= X_0 1)\n")
    assert main(["verify", str(model), str(bad)]) == 2
    assert "bad.vnnlib:5:1: unbalanced parentheses" in capsys.readouterr().err
    wrong = tmp_path / "wrong.vnnlib"
    wrong.write_text(header(3, 2) + box_text([0, 0, 0], [1, 1, 1]))
    assert main(["verify", str(model), str(wrong)]) == 2
    assert "declares 3 inputs but the network has 2" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "missing.onnx"), str(props["holds"])]) == 2
    assert main(["verify", str(model), str(props["holds"]), "--time-limit", "0"]) == 2


# -- ACAS Xu ------------------------------------------------------------------------------------------


def acas(acasxu_dir, a, b, prop):
    return acasxu_dir / f"ACASXU_run2a_{a}_{b}_batch_2000.onnx", acasxu_dir / f"prop_{prop}.vnnlib"


@pytest.mark.parametrize("a, b, prop", [(1, 7, 3), (1, 9, 4), (2, 1, 2)])
def test_acasxu_known_violations(acasxu_dir, a, b, prop):
    from relumilp.frontends import load_network
    from relumilp.frontends.vnnlib import read_vnnlib

    model, vnnlib = acas(acasxu_dir, a, b, prop)
    result = verify(model, vnnlib, time_limit=60)
    assert result.result == "violated"
    net = load_network(model)
    x = np.array(result.counterexample["x"])
    assert read_vnnlib(vnnlib).is_counterexample(x, net.forward(x))


@pytest.mark.parametrize("a, b, prop", [(3, 3, 4), (2, 1, 3)])
def test_acasxu_quick_holds(acasxu_dir, a, b, prop):
    model, vnnlib = acas(acasxu_dir, a, b, prop)
    assert verify(model, vnnlib, time_limit=120).result == "holds"


@pytest.mark.slow
def test_acasxu_property_1_holds(acasxu_dir):
    model, vnnlib = acas(acasxu_dir, 1, 1, 1)
    assert verify(model, vnnlib, time_limit=300).result == "holds"


def test_batch_runner_on_a_tiny_instances_file(model_and_props, tmp_path, capsys):
    from benchmarks.vnncomp import main as run_batch

    _, model, props, _ = model_and_props
    csv_path = tmp_path / "instances.csv"
    csv_path.write_text(f"{model.name},{props['violated'].name},10\n{model.name},{props['holds'].name},10\n")
    out, details = tmp_path / "results.csv", tmp_path / "regions.jsonl"
    assert run_batch([str(csv_path), "--out", str(out), "--details", str(details), "--timeout-scale", "0.5"]) == 0
    table = capsys.readouterr().out
    records = [json.loads(line) for line in details.read_text().splitlines()]
    assert [r["result"] for r in records] == ["violated", "holds"] and records[1]["regions"][0]["decided_by"]
    assert "violated.vnnlib" in table and "holds.vnnlib" in table
    rows = out.read_text().splitlines()
    assert rows[0].startswith("network,property,result,time,time_limit")
    assert rows[1].split(",")[2:5:2] == ["violated", "5"] and rows[1].split(",")[8] == "True"
    assert rows[2].split(",")[2] == "holds"
    assert run_batch([str(csv_path), "--filter-props", "7"]) == 2  # nothing selected
    # comparing with itself: no differences
    assert run_batch([str(csv_path), "--compare", str(out)]) == 0
    assert "0 differ, 0 contradictions" in capsys.readouterr().out


@pytest.mark.parametrize("split", ["--input-split", "--no-input-split"])
def test_cli_verbose_tells_how_the_answer_was_reached(model_and_props, capsys, split):
    _, model, props, _ = model_and_props
    assert main(["verify", str(model), str(props["holds"]), split, "--verbose"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("holds") and "region 0: decided by" in out and "bounds:" in out
    assert main(["verify", str(model), str(props["holds"]), split, "--verbose", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["details"]["regions"][0]["decided_by"]


@pytest.mark.parametrize("options", [{"no_such_option": 1}, {"mip_heuristic_run_rens": 0}])
def test_a_highs_option_that_highs_rejects_is_a_clear_error(options):
    """HiGHS would go on without the option (an unknown name, or an int for a bool): relumilp says so."""
    from relumilp.errors import RelumilpError

    rng = np.random.default_rng(3)
    net = random_mlp(rng, [2, 6, 1])
    lower, upper = -np.ones(2), np.ones(2)
    best = brute_force_optima(net, lower, upper, np.ones(1))["max"][0]  # a threshold only the MILP decides
    prop = parse_vnnlib(header(2, 1) + box_text(lower, upper) + f"\n(assert (>= Y_0 {num(best - 0.01)}))")
    with pytest.raises(RelumilpError, match="HiGHS rejects the option"):
        verify(net, prop, input_split=False, tighten="interval", attack_samples=0, highs_options=options)


def test_a_model_with_non_finite_numbers_never_reaches_highs():
    import scipy.sparse as sp

    from relumilp.backends.highs import to_highs
    from relumilp.errors import SolveError
    from relumilp.formulation.milp import MILP

    A = sp.csr_array(np.array([[1.0, np.nan], [0.0, 1.0]]))
    milp = MILP(np.zeros(2), np.ones(2), np.zeros(2, dtype=bool), A, -np.inf * np.ones(2), np.ones(2),
                {"x": np.arange(2)}, {}, {}, "x", "x")
    with pytest.raises(SolveError, match="1 non-finite coefficients or bounds"):
        to_highs(milp)


def test_verbose_names_the_proofs_each_half_of_the_portfolio_shared():
    from relumilp.commands.verify import explain

    region = {"region": 0, "decided_by": "bab/milp", "disjuncts": 3, "bab_time": 2.0, "root_milp_time": 1.5,
              "proven_by": {2: "bab", 0: "milp", 1: "bab"},
              "milp": [{"disjuncts": [1], "status": "time_limit", "time": 0.5, "nodes": 3, "binaries": 9,
                        "bound": None, "first_only": True, "proven_elsewhere": True}]}
    lines = explain({"tighten": "alpha", "input_split": True, "disjunction": "split", "regions": [region]})
    text = "\n".join(lines)
    assert "root milp 1.500s" in text and "branch and bound proved them meanwhile" in text
    assert "conjunctions proven unreachable: [1, 2] by branch and bound; [0] by the root MILP" in text


@pytest.mark.parametrize("seed", range(4))
def test_region_milp_with_ideal_cuts_matches_brute_force(seed):
    """A region's MILP decides the same with and without root rounds of ideal cuts (thresholds just
    above and below the brute-force maximum, no sampling, loose interval bounds so that the cuts bite),
    and the cut rounds are on record."""
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [3, 8, 8, 1])
    lower, upper = -np.ones(3), np.ones(3)
    best = brute_force_optima(net, lower, upper, np.ones(1))["max"][0]
    recorded = 0
    for offset, expected in ((-1e-3, "violated"), (1e-3, "holds")):
        prop = parse_vnnlib(header(3, 1) + box_text(lower, upper) + f"(assert (>= Y_0 {num(best + offset)}))")
        for formulation in ("ideal_cuts", "bigm"):
            result = verify(net, prop, input_split=False, tighten="interval", attack_samples=0, time_limit=60,
                            formulation=formulation)
            check_answer(net, prop, result, expected)
            runs = result.details["regions"][0]["milp"]
            cuts = [run["cuts"] for run in runs if "cuts" in run]
            if formulation == "bigm":
                assert not cuts
            else:
                assert len(cuts) == 1 and cuts[0]["neurons"] > 0
                recorded += cuts[0]["added"]
    assert recorded > 0  # interval bounds leave the relaxation loose: the cut rounds bite (50-114 cuts here)


def test_an_unknown_formulation_is_refused():
    from relumilp.errors import RelumilpError

    net = random_mlp(np.random.default_rng(0), [2, 4, 1])
    prop = parse_vnnlib(header(2, 1) + box_text(-np.ones(2), np.ones(2)) + "(assert (>= Y_0 100.0))")
    with pytest.raises(RelumilpError, match="formulation must be one of"):
        verify(net, prop, formulation="ideal")
    with pytest.raises(SystemExit) as exited:  # argparse's one-line usage error
        main(["verify", "x.onnx", "y.vnnlib", "--formulation", "ideal"])
    assert exited.value.code == 2
