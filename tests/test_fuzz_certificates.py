"""Fuzz suite for wrong certificates (issue #11, point 7): random tiny networks, many of them badly scaled.

Each case is generated from its seed (:func:`fuzz_oracle.make_case`) and checked by
:func:`fuzz_oracle.check_case`; a failure message names the seed, the network shape and the call, which is
all a reproducer needs. ``pytest -s`` prints a table of answers per call kind; the slow test (``-m slow``)
runs 500 networks with 1e5 samples each.
"""

from __future__ import annotations

import numpy as np
import pytest

from fuzz_oracle import Case, check_case, make_case, summary

DEFAULT_SEEDS = range(60)
#: issue #11 reproducer 1: a layer of weights 5e-10 over inputs of +-1e9
ISSUE1_LAYERS = [(np.array([[5e-10, 5e-10], [-5e-10, 5e-10]]), np.zeros(2)), (np.array([[1.0, 0.0]]), np.zeros(1))]
SLOW_SEEDS = range(1000, 1500)


@pytest.fixture(scope="module")
def outcomes():
    collected = []
    yield collected
    print("\n" + summary(collected))


def _assert_sound(outcome):
    assert not outcome.failures, "wrong certificates:\n" + "\n".join(outcome.failures)


@pytest.mark.parametrize("seed", DEFAULT_SEEDS)
def test_random_case(seed, outcomes):
    outcome = check_case(make_case(seed))
    outcomes.append(outcome)
    _assert_sound(outcome)


def _box(n, radius):
    return -np.full(n, radius), np.full(n, radius)


def test_issue_false_holds(outcomes):
    """Issue #11 reproducer 1: Y_0 = 1 at the corner (1e9, 1e9), so 'Y_0 >= 0.9' is reachable."""
    call = {"kind": "verify", "sense": "max", "output": 0, "margin": -1, "tighten": None, "input_split": None,
            "attack": 0}
    case = Case("issue-1 2-2-1", ISSUE1_LAYERS, ["relu"], *_box(2, 1e9), calls=[call], family="tiny_over_huge")
    outcome = check_case(case)
    outcomes.append(outcome)
    _assert_sound(outcome)


def test_issue_false_holds_verbatim():
    import relumilp
    from relumilp.frontends.vnnlib import parse_vnnlib
    from relumilp.verify import verify

    net = relumilp.Network.sequential(ISSUE1_LAYERS, "relu")
    box = "".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} -1000000000))\n(assert (<= X_{i} 1000000000))\n"
                  for i in range(2))
    prop = parse_vnnlib(box + "(declare-const Y_0 Real)\n(assert (>= Y_0 0.9))\n")
    assert verify(net, prop, attack_samples=0, time_limit=20).result != "holds"


@pytest.mark.parametrize("options", [{"tighten": "lp", "scale": False}, {"tighten": "symbolic", "scale": "unit"}])
def test_issue_wrong_optimal(options, outcomes):
    """Issue #11 reproducer 2: one huge layer (5e6) then a tiny one (3e-6); random points reach 54.06."""
    rng = np.random.default_rng(122)
    W1 = rng.normal(size=(6, 3)) * 5e6
    W2 = rng.normal(size=(1, 6)) * 3e-6
    layers = [(W1, rng.normal(size=6) * 3e3), (W2, np.array([7e-5]))]
    call = {"kind": "optimize", "sense": "max", "output": 0, **options}
    case = Case("issue-2 3-6-1", layers, ["relu"], *_box(3, 1.0), calls=[call], family="huge_then_tiny")
    outcome = check_case(case)
    outcomes.append(outcome)
    _assert_sound(outcome)


@pytest.mark.slow
def test_random_cases_slow():
    """500 networks (300 badly scaled), 1e5 samples each, over every bound method (``alpha`` bounds on every
    network), scaling and verify margin."""
    collected = []
    for seed in SLOW_SEEDS:
        case = make_case(seed, samples=100_000)
        case.calls.append({"kind": "bounds", "method": "alpha"})  # the optimised relaxations on every network
        collected.append(check_case(case))
        for failure in collected[-1].failures:
            print("WRONG", failure, flush=True)  # as they come: the run is long
    print("\n" + summary(collected))
    failures = [f for o in collected for f in o.failures]
    assert sum(o.family != "plain" for o in collected) >= 150
    assert not failures, f"{len(failures)} wrong certificates:\n" + "\n".join(failures)
