"""Stable neurons (proven and empirical), the network report and its figures."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from conftest import random_mlp
from relumilp.analysis import analyze_network, proven_stability, report_from_compiled, stability_report
from relumilp.analysis.stability import pieces_seen
from relumilp.bounds import compute_bounds, phases, stability_counts
from relumilp.domain import InputDomain
from relumilp.errors import RelumilpError
from relumilp.ir import Network
from relumilp.pipeline import compile_network


@pytest.fixture(scope="module")
def net():
    return random_mlp(np.random.default_rng(4), [2, 8, 8, 1], scale=1.5)


DOMAIN = InputDomain([-1.0, -1.0], [1.0, 1.0])


def test_proven_counts_match_bounds(net):
    bounds = compute_bounds(net, DOMAIN, "interval")
    rows = proven_stability(net, bounds)
    for row, ref in zip(rows, stability_counts(net, bounds)):
        assert (row.name, row.size, row.stable_active, row.stable_inactive, row.unstable, row.binaries) == (
            ref["name"], ref["size"], ref["stable_active"], ref["stable_inactive"], ref["unstable"], ref["binaries"])
        assert row.stable_active + row.stable_inactive + row.unstable == row.size


@pytest.mark.parametrize("activation", ["relu", {"kind": "clipped_relu", "cap": 0.5},
                                        {"kind": "leaky_relu", "alpha": 0.05}])
def test_proven_stable_neurons_never_switch(activation):
    net = random_mlp(np.random.default_rng(1), [3, 10, 10, 1], activation, scale=1.0)
    domain = InputDomain.box(-0.5, 0.5, 3)
    bounds = compute_bounds(net, domain, "symbolic")
    report = stability_report(net, domain, bounds, samples=3000, seed=1)
    seen = pieces_seen(net, domain.sample(3000, 1))
    for node, layer in zip(net.activations, report.layers):
        ph = phases(node, *bounds.pre_activation(net, node))
        stable = ~ph.unstable
        assert (seen[node.name][stable].sum(axis=1) == 1).all()  # proven stable => one piece in every sample
        assert layer.empirical_stable >= layer.stable_active + layer.stable_inactive
        assert layer.empirical_always_active >= layer.stable_active
        assert layer.empirical_stable == layer.empirical_always_active + layer.empirical_always_inactive
    assert report.empirical_stable_fraction >= report.stable_fraction
    data = report.to_json()
    assert data["empirical_samples"] == 3000 and data["bound_method"] == "symbolic"


def test_all_stable_network_reports_100_percent():
    rng = np.random.default_rng(3)
    layers = [(np.abs(rng.normal(size=(4, 2))), np.ones(4)), (-np.abs(rng.normal(size=(3, 4))), -np.ones(3)),
              (rng.normal(size=(1, 3)), np.zeros(1))]
    net = Network.sequential(layers)
    report = analyze_network(net, InputDomain([0.0, 0.0], [1.0, 1.0]), samples=500)
    assert report.stable_fraction == 1.0 and report.empirical_stable_fraction == 1.0
    assert report.layers[0].stable_active == 4 and report.layers[1].stable_inactive == 3
    assert report.regions.count == 1 and report.regions.exact
    assert report.model["binaries"] == 0 and report.big_m.max is None
    data = report.to_json()
    json.dumps(data, allow_nan=False)
    assert data["big_m"]["max"] is None and data["stable_fraction"] == 1.0


def test_report_before_and_after_tightening(net):
    report = analyze_network(net, DOMAIN, tighten="lp", samples=2000, regions="exact")
    data = report.to_json()
    json.dumps(data, allow_nan=False)
    assert data["bound_method"] == "lp" and data["big_m_before"]["label"] == "interval"
    assert data["big_m"]["max"] <= data["big_m_before"]["max"] + 1e-9
    assert data["model"]["binaries"] <= data["model_before"]["binaries"]
    assert data["model"]["binaries"] == sum(layer["binaries"] for layer in data["layers"])
    assert data["linear_regions"]["exact"] is True and data["linear_regions"]["method"] == "exact"
    assert data["linear_regions"]["count"] <= data["regions_upper_bound"]
    assert {"bounds", "formulation", "regions", "census", "total"} <= set(data["times"])
    per_layer = data["big_m"]["per_layer"]
    assert [row["count"] for row in per_layer] == [layer["unstable"] for layer in data["layers"]]
    text = report.to_text()
    for needle in ("EMPIRICAL", "linear regions on the domain", "upper bound", "baseline interval", "requested lp",
                   "what matters for optimisation"):
        assert needle in text


def test_report_from_compiled_pair(net):
    before = compile_network(net, DOMAIN, "interval")
    after = compile_network(net, DOMAIN, "symbolic")
    report = report_from_compiled(before, after, samples=500)
    assert report.bound_method == "symbolic" and report.big_m_before.label == "interval"
    assert np.allclose(np.sort(report.big_m.all), np.sort(after.big_m()))
    assert report.model == after.milp.size_report()


def test_figures_are_written(net, tmp_path):
    pytest.importorskip("matplotlib")
    from relumilp.analysis.plots import write_figures

    report = analyze_network(net, DOMAIN, tighten="symbolic", samples=1000)
    paths = write_figures(report, tmp_path, "small", network=net, optima=[("max", np.zeros(2))])
    assert sorted(p.name for p in paths) == ["small_big_m.png", "small_regions.png", "small_stability.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))  # written whole, no temporary files left


def test_1d_region_figure(tmp_path):
    pytest.importorskip("matplotlib")
    from relumilp.analysis.plots import plot_regions
    from relumilp.analysis.regions import exact_regions

    net = random_mlp(np.random.default_rng(0), [1, 6, 1], scale=2.0)
    domain = InputDomain([-2.0], [2.0])
    path = plot_regions(exact_regions(net, domain), domain, tmp_path / "r.png", network=net)
    assert path.stat().st_size > 0


def test_missing_matplotlib_is_a_clear_error(monkeypatch, tmp_path, net):
    from relumilp.analysis.plots import plot_stability

    report = analyze_network(net, DOMAIN, samples=0, regions="none")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(RelumilpError, match=r"pip install relumilp\[plot\]"):
        plot_stability(report, tmp_path / "s.png")
    assert report.regions is None and report.stability.samples == 0
    assert report.to_json()["empirical_stable_fraction"] is None


def test_census_and_sampled_regions_stop_at_the_deadline():
    # a deadline already passed: one block of points runs (never an empty census), and the report says so
    from relumilp.analysis import count_regions
    from relumilp.limits import Deadline

    net = random_mlp(np.random.default_rng(0), [3, 8, 8, 1])
    domain = InputDomain(-np.ones(3), np.ones(3))
    full = stability_report(net, domain, samples=5000)
    cut = stability_report(net, domain, samples=5000, deadline=Deadline(0.0))
    assert full.samples == 5000 and cut.samples == 512
    assert all(c.empirical_stable >= f.empirical_stable for c, f in zip(cut.layers, full.layers))
    regions = count_regions(net, domain, "sample", samples=5000, time_limit=Deadline(0.0))
    assert regions.samples == 512 and "time limit" in regions.note
    assert count_regions(net, domain, "sample", samples=5000, time_limit=0.0).samples == 512  # a spent budget
    assert count_regions(net, domain, "sample", samples=5000).samples == 5000
