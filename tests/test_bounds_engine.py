"""The batched bound engine: neuron splits, refine masks, input coefficients."""

from __future__ import annotations

import numpy as np
import pytest

from relumilp.bounds import compute_bounds
from relumilp.bounds.engine import BoundEngine
from relumilp.domain import InputDomain
from relumilp.ir import Network

from conftest import random_mlp


def _boxes(rng, batch, n):
    L = rng.uniform(-1, 0.5, size=(batch, n))
    return L, np.minimum(L + rng.uniform(0.05, 1.0, size=(batch, n)), 1.0)


def test_splits_are_sound_and_exact_pieces():
    rng = np.random.default_rng(3)
    net = random_mlp(rng, [3, 10, 10, 2])
    engine = BoundEngine.for_network(net)
    L, U = _boxes(rng, 8, 3)
    free = engine.bounds(L, U)
    act = net.activations[0]
    src = act.inputs[0]
    splits = {act.name: rng.choice([-1, 0, 1], size=(8, act.size))}
    split = engine.bounds(L, U, splits=splits)
    for i in range(8):
        values = net.forward_all(rng.uniform(L[i], U[i], size=(4000, 3)))
        x = values[src]
        keep = np.all((splits[act.name][i] <= 0) | (x >= 0), axis=1) & np.all((splits[act.name][i] >= 0) | (x <= 0), axis=1)
        if split.empty[i]:
            assert not keep.any()
            continue
        for name, v in values.items():
            v = v[keep]
            assert np.all(v >= split.lower[name][i] - 1e-12) and np.all(v <= split.upper[name][i] + 1e-12), name
        # a split never loosens, and fixes the phase
        assert np.all(split.lower[src][i] >= free.lower[src][i]) and np.all(split.upper[src][i] <= free.upper[src][i])
        # clamped at the kink (then widened by the forward pass's rounding only)
        assert np.all(split.lower[src][i][splits[act.name][i] > 0] >= -1e-12)
        assert np.all(split.upper[src][i][splits[act.name][i] < 0] <= 1e-12)


def test_contradicted_split_flags_the_box_empty():
    rng = np.random.default_rng(5)
    net = random_mlp(rng, [2, 6, 1])
    engine = BoundEngine.for_network(net)
    L, U = np.full((1, 2), -1.0), np.ones((1, 2))
    free = engine.bounds(L, U)
    act = net.activations[0]
    upper = free.upper[act.inputs[0]][0]
    lower = free.lower[act.inputs[0]][0]
    s = np.zeros((1, act.size), dtype=int)
    if (upper < 0).any():
        s[0, np.argmax(upper < 0)] = 1
    elif (lower > 0).any():
        s[0, np.argmax(lower > 0)] = -1
    else:
        return
    assert engine.bounds(L, U, splits={act.name: s}).empty[0]


def test_refine_modes_and_single_box_match_compute_bounds():
    rng = np.random.default_rng(7)
    net = random_mlp(rng, [4, 12, 12, 3])
    domain = InputDomain(-np.ones(4), np.ones(4))
    reference = compute_bounds(net, domain, "symbolic")
    root = compute_bounds(net, domain, "interval")
    engine = BoundEngine.for_network(net)
    start = {k: (root.lower[k][None], root.upper[k][None]) for k in root.lower}
    lo, hi = engine.bounds(domain.lower[None], domain.upper[None], start)
    for name in reference.lower:
        assert np.array_equal(lo[name][0], reference.lower[name]) and np.array_equal(hi[name][0], reference.upper[name])
    ulo, uhi = engine.bounds(domain.lower[None], domain.upper[None], start, refine="undecided")
    out = net.output
    np.testing.assert_array_equal(ulo[out], lo[out])  # the output is always refined in full
    lam = engine.input_coefficients(lo, hi)
    assert lam.shape == (1, 3, 4)


OPTIMISED_KINDS = [{"kind": "relu"}, {"kind": "leaky_relu", "alpha": 0.1}, {"kind": "leaky_relu", "alpha": -0.5},
                   {"kind": "clip", "low": -0.3, "high": 0.6}, {"kind": "clipped_relu", "cap": 1.0}]


@pytest.mark.parametrize("seed", range(10))
def test_optimised_slopes_are_sound_and_never_looser(seed):
    """alpha-CROWN: the optimised output bounds hold for sampled float64 forward values (no tolerance),
    with and without neuron splits, and are never looser than the plain bounds; warm starts keep shapes."""
    rng = np.random.default_rng(100 + seed)
    layers = [(rng.normal(size=(o, i)) / np.sqrt(i), rng.normal(scale=0.3, size=o)) for i, o in zip([3, 12, 12, 12], [12, 12, 12, 2])]
    kinds = [OPTIMISED_KINDS[(seed + k) % len(OPTIMISED_KINDS)] for k in range(3)]
    net = Network.sequential(layers, kinds)
    engine = BoundEngine.for_network(net)
    L, U = _boxes(rng, 6, 3)
    splits = None
    if seed % 2:
        act = next(a for a in net.activations if a.activation.breakpoints == (0.0,)) if any(
            a.activation.breakpoints == (0.0,) for a in net.activations) else None
        if act is not None:
            splits = {act.name: rng.choice([-1, 0, 0, 1], size=(6, act.size))}
    sense = ("lower", "upper", "both")[seed % 3]
    plain = engine.bounds(L, U, splits=splits)
    opt = engine.bounds(L, U, splits=splits, optimise={"steps": 15, "sense": sense})
    out = net.output
    assert np.all(opt.lower[out] >= plain.lower[out]) and np.all(opt.upper[out] <= plain.upper[out])
    if sense != "upper":
        slopes = [key for key in opt.slopes if not isinstance(key, tuple)]  # not the split multipliers
        live = ~opt.empty  # (the split multipliers can prove a node's splits contradictory)
        assert np.any((opt.lower[out] > plain.lower[out] + 1e-9)[live]) or not slopes or not live.any()
    for i in range(6):
        X = rng.uniform(L[i], U[i], size=(5000, 3))
        values = net.forward_all(X)
        keep = np.ones(len(X), dtype=bool)
        for name, s in (splits or {}).items():
            pre = values[net[name].inputs[0]]
            keep &= np.all((s[i] <= 0) | (pre >= 0), axis=1) & np.all((s[i] >= 0) | (pre <= 0), axis=1)
        y = values[out][keep]
        assert np.all(y >= opt.lower[out][i]) and np.all(y <= opt.upper[out][i])
    # a warm start from these slopes gives bounds at least as tight as the cold start from the same steps
    again = engine.bounds(L, U, splits=splits, optimise={"steps": 5, "sense": sense, "slopes": opt.slopes})
    assert {k: v.shape for k, v in again.slopes.items()} == {k: v.shape for k, v in opt.slopes.items()}
    assert np.all(again.lower[out] >= plain.lower[out]) and np.all(again.upper[out] <= plain.upper[out])


def test_lower_families_are_valid_lines():
    """Every parameter t in [0, 1] of every kind's lower family gives a line below f on [l, u]."""
    import torch

    from relumilp.activations import from_spec

    rng = np.random.default_rng(0)
    for spec in OPTIMISED_KINDS:
        act = from_spec(spec)
        l = torch.tensor(rng.uniform(-2, 1, 500))
        u = l + torch.tensor(rng.uniform(0, 3, 500))
        t = torch.tensor(rng.uniform(0, 1, 500))
        t[:50], t[50:100] = 0.0, 1.0
        family = act.lower_family(l, u, t)
        assert family is not None
        mask, al, cl = family
        assert bool(mask.any())
        x = l + (u - l) * torch.tensor(rng.uniform(0, 1, (64, 500)))
        gap = act.apply_torch(x) - (al * x + cl)
        assert bool((gap[:, mask] >= -1e-12).all()), spec
        start = act.lower_family_start(l, u)
        base = act.linear_relaxation(l, u)
        _, al0, cl0 = act.lower_family(l, u, start)
        assert torch.allclose(al0[mask], base[0][mask]) and torch.allclose(cl0[mask], base[1][mask]), spec


def test_symbolic_stops_at_the_deadline_with_sound_partial_bounds():
    # 40 hidden layers of 300: the full symbolic pass takes minutes (back-substitution through every
    # earlier layer for each one); with a 0.2 s limit it must stop at once, apart from the interval
    # passes (numpy and torch) it still owes every layer after the deadline, the sound fallback. The
    # bound is loose because the shared test machine is loaded (5 s seen); uncut, this call takes > 100 s.
    import time

    rng = np.random.default_rng(0)
    net = random_mlp(rng, [20] + [300] * 40 + [3])
    domain = InputDomain(-np.ones(20), np.ones(20))
    compute_bounds(random_mlp(rng, [2, 3, 1]), ([-1, -1], [1, 1]), "symbolic")  # imports are not the point
    start = time.perf_counter()
    cut = compute_bounds(net, domain, "symbolic", time_limit=0.2)
    wall = time.perf_counter() - start
    assert wall <= 15.0
    assert not cut.complete
    samples = rng.uniform(-1.0, 1.0, size=(500, 20))
    cut.check_sound(net, samples, tol=0.0)


def test_engine_past_deadline_keeps_interval_bounds():
    from relumilp.limits import Deadline

    rng = np.random.default_rng(1)
    net = random_mlp(rng, [4, 12, 12, 2])
    engine = BoundEngine.for_network(net)
    L, U = _boxes(rng, 3, 4)
    done = engine.bounds(L, U)
    past = engine.bounds(L, U, deadline=Deadline(0.0))
    assert done.complete and not past.complete
    interval = engine.bounds(L, U, refine={})
    for name in done.lower:
        np.testing.assert_array_equal(past.lower[name], interval.lower[name])
        np.testing.assert_array_equal(past.upper[name], interval.upper[name])
