"""The activation classes: registry and files, piece tables, and soundness of everything derived for Clip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import check_scaling_and_pruning, random_mlp
from relumilp.activations import (Abs, Activation, Clip, ClippedReLU, HardSigmoid, Identity, LeakyReLU,
                                  PiecewiseLinear, ReLU, from_spec, get, kinds)
from relumilp.bounds import compute_bounds
from relumilp.bounds.symbolic import mlp_bounds
from relumilp.domain import InputDomain
from relumilp.errors import InvalidNetworkError, UnsupportedOperatorError
from relumilp.ir import ActivationNode, Network
from test_bounds_symbolic import samples_with_corners

EVERY = [ReLU(), LeakyReLU(0.2), LeakyReLU(-0.4), ClippedReLU(0.7), Identity(), Clip(-0.4, 0.6), Clip(0.3, 1.1),
         Clip(-2.0, -0.5), HardSigmoid(0.2, 0.5), HardSigmoid(-0.7, 0.2), HardSigmoid(1 / 6, 0.5), Abs(),
         PiecewiseLinear((-1.0, 0.5, 2.0), (0.5, -1.0, 2.0, 0.0), 0.3), PiecewiseLinear.maximum(0.4),
         PiecewiseLinear.minimum(-0.3), PiecewiseLinear((0.0,), (2.5, 1.0), 0.0)]


def test_registry_specs_and_equality():
    assert set(kinds()) >= {"relu", "leaky_relu", "clipped_relu", "identity", "clip", "pwl", "hard_sigmoid", "abs"}
    for act in EVERY:
        assert from_spec(act.to_spec()) == act and hash(from_spec(act.to_spec())) == hash(act)
        assert get(act.kind, **act.params) == act
    assert Clip(0.0, 2.0) != ClippedReLU(2.0)  # same function, distinct kinds in files
    # format-1 fields: every kind carried alpha and cap (None = inf); unused ones are dropped
    assert from_spec({"kind": "relu", "alpha": 0.0, "cap": None}) == ReLU()
    assert from_spec({"kind": "clipped_relu", "alpha": 0.0, "cap": 1.5}) == ClippedReLU(1.5)
    with pytest.raises(UnsupportedOperatorError, match="'mish'"):
        get("mish")
    with pytest.raises(InvalidNetworkError, match="no parameter low"):
        get("relu", low=1.0)
    with pytest.raises(InvalidNetworkError, match="low < high"):
        Clip(1.0, 1.0)


def test_old_format_files_still_load(tmp_path):
    net = random_mlp(np.random.default_rng(0), [2, 4, 4, 4, 1], "relu")
    net = net.replace([ActivationNode("act1", 4, ("linear1",), kind="leaky_relu", alpha=0.2),
                       ActivationNode("act2", 4, ("linear2",), kind="clipped_relu", cap=0.5)])
    path = tmp_path / "old.npz"
    net.save(path)
    with np.load(path) as data:  # rewrite the node entries as format-1 writers did
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["__meta__"]))
    for entry in meta["nodes"]:
        if entry["type"] == "ActivationNode":
            old = {"kind": entry["kind"], "alpha": entry.get("alpha", 0.0), "cap": entry.get("cap")}
            entry.clear()
            entry.update(type="ActivationNode", name=old.pop("name", None), size=4, inputs=[], **old)
    for entry, node in zip(meta["nodes"], net.order):
        entry.update(name=node.name, inputs=list(node.inputs))
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    loaded = Network.load(path)
    assert [a.activation for a in loaded.activations] == [ReLU(), LeakyReLU(0.2), ClippedReLU(0.5)]
    assert loaded.content_hash == net.content_hash
    x = np.random.default_rng(1).normal(size=(20, 2))
    np.testing.assert_array_equal(loaded(x), net(x))


def test_clip_network_roundtrip(tmp_path):
    net = random_mlp(np.random.default_rng(2), [3, 5, 5, 2], {"kind": "clip", "low": -0.3, "high": 0.4})
    net.save(tmp_path / "clip.npz")
    loaded = Network.load(tmp_path / "clip.npz")
    assert loaded.activations[0].activation == Clip(-0.3, 0.4) and loaded.content_hash == net.content_hash
    other = random_mlp(np.random.default_rng(2), [3, 5, 5, 2], {"kind": "clip", "low": -0.3, "high": 0.5})
    assert other.content_hash != net.content_hash


@pytest.mark.parametrize("act", EVERY, ids=repr)
def test_piece_table_matches_the_formula(act):
    """The overridden float formula and the generic piece-table evaluation agree everywhere."""
    x = np.concatenate([np.linspace(-3, 3, 2001), act.breakpoints, np.nextafter(act.breakpoints, -np.inf)])
    np.testing.assert_array_equal(act.apply(x), Activation.apply(act, x))
    t = torch.tensor(x)
    np.testing.assert_array_equal(act.apply_torch(t).numpy(), act.apply(x))
    np.testing.assert_array_equal(Activation.apply_torch(act, t).numpy(), act.apply(x))
    low, high = act.range
    assert np.all(act.apply(x) >= low) and np.all(act.apply(x) <= high)
    index = act.pattern(x)
    for p in range(act.num_pieces):
        on = index == p
        np.testing.assert_allclose(act.apply(x[on]), act.slopes[p] * x[on] + act.offsets[p], atol=1e-15)


@pytest.mark.parametrize("act", EVERY, ids=repr)
@pytest.mark.parametrize("generic", [False, True], ids=["own", "generic"])
def test_linear_relaxations_are_sound(act, generic):
    rng = np.random.default_rng(0)
    l = torch.tensor(np.concatenate([rng.uniform(-3, 3, 5000), [0.0, -1.0, 0.25, 1.0, -2.0, 0.0, -0.4, 0.6]]))
    u = l + torch.tensor(np.concatenate([rng.exponential(1.5, 5000), [0.0, 1.0, 0.0, 2.0, 5.0, 0.25, 1.0, 0.0]]))
    relax = Activation.linear_relaxation if generic else type(act).linear_relaxation
    al, cl, au, cu = relax(act, l, u)
    x = l + (u - l) * torch.linspace(0.0, 1.0, 101, dtype=torch.float64).unsqueeze(1)
    f = torch.tensor(act.apply(x.numpy()))
    assert torch.all(al * x + cl <= f + 1e-12)
    assert torch.all(au * x + cu >= f - 1e-12)
    lo, hi = act.interval_torch(l, u)
    assert torch.all(lo <= f.min(dim=0).values) and torch.all(hi >= f.max(dim=0).values)


def test_clip_phases_and_stable_pieces():
    act = Clip(-0.5, 1.0)
    lower, upper = np.array([-2.0, -2.0, -0.2, 1.0, -0.5, 0.0]), np.array([-0.5, 0.0, 0.5, 3.0, 2.0, 2.0])
    ph = act.phases(lower, upper)
    assert ph.stable_inactive.tolist() == [True, False, False, True, False, False]
    assert ph.stable_active.tolist() == [False, False, True, False, False, False]
    assert ph.crosses.tolist() == [[False, True, False, False, False, False], [False, False, False, False, True, True]]
    assert ph.num_binaries == 3
    slope, offset = act.stable_affine(ph)
    assert slope.tolist() == [0, 0, 1, 0, 0, 0] and offset.tolist() == [-0.5, 0, 0, 1.0, 0, 0]


CLIPS = [{"kind": "clip", "low": -0.4, "high": 0.6}, {"kind": "clip", "low": 0.2, "high": 1.0},
         {"kind": "clip", "low": -1.0, "high": -0.1}]


@pytest.mark.parametrize("seed", range(4))
def test_clip_bounds_are_sound_by_sampling(seed):
    rng = np.random.default_rng(seed)
    sizes = [3, 8, 8, 6, 2]
    layers = [(rng.normal(0, 1.5 / np.sqrt(a), size=(b, a)), rng.normal(0, 0.3, size=b)) for a, b in zip(sizes[:-1], sizes[1:])]
    specs = [CLIPS[int(rng.integers(0, 3))], "relu", CLIPS[int(rng.integers(0, 3))]]
    net = Network.sequential(layers, specs)
    domain = InputDomain(-rng.uniform(0.2, 1.5, 3), rng.uniform(0.2, 1.5, 3))
    x = samples_with_corners(domain, 50_000, seed)
    previous = None
    for method in ("interval", "symbolic", "lp"):
        bounds = compute_bounds(net, domain, method)
        bounds.check_sound(net, x, tol=1e-12)
        if previous is not None:
            for name in bounds.lower:
                assert np.all(bounds.lower[name] >= previous.lower[name] - 1e-9)
                assert np.all(bounds.upper[name] <= previous.upper[name] + 1e-9)
        previous = bounds
    # the differentiable MLP bounds take activation objects too
    tl = [(torch.tensor(w), torch.tensor(b)) for w, b in layers]
    acts = [a.activation for a in net.activations]
    values = net.forward_all(x)
    for (lo, hi), node in zip(mlp_bounds(tl, acts, torch.tensor(domain.lower), torch.tensor(domain.upper)), net.affines):
        assert np.all(values[node.name] >= lo.numpy() - 1e-9) and np.all(values[node.name] <= hi.numpy() + 1e-9)


def test_scaling_and_pruning_keep_a_clip_network():
    rng = np.random.default_rng(7)
    net = random_mlp(rng, [3, 10, 10, 2], {"kind": "clip", "low": -0.3, "high": 0.8}, scale=3.0)
    check_scaling_and_pruning(net, InputDomain.box(-0.1, 0.1, 3))  # small: some neurons stable (flat, identity)
