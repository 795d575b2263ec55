"""``relumilp stats``: JSON keys, region methods, figures and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import random_mlp
from relumilp.cli import main


@pytest.fixture(scope="module")
def model3(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "three.npz"
    random_mlp(np.random.default_rng(0), [3, 6, 6, 1]).save(path)
    return path


@pytest.fixture(scope="module")
def model2(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "two.npz"
    random_mlp(np.random.default_rng(1), [2, 5, 5, 1]).save(path)
    return path


def stats_json(capsys, *args) -> dict:
    assert main(["stats", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_peaks_json(capsys):
    data = stats_json(capsys, "--example", "peaks32", "--samples", "2000")
    assert {"layers", "stable_fraction", "empirical_stable_fraction", "linear_regions", "regions_upper_bound",
            "big_m", "model", "times"} <= set(data)
    for layer in data["layers"]:
        assert {"name", "size", "stable_active", "stable_inactive", "unstable", "empirical_stable"} <= set(layer)
    assert [layer["size"] for layer in data["layers"]] == [32, 32]
    regions = data["linear_regions"]
    assert regions["method"] == "exact" and regions["exact"] is True
    assert 1 < regions["count"] <= data["regions_upper_bound"]
    assert {"max", "median"} <= set(data["big_m"])
    assert {"binaries", "constraints", "continuous", "nonzeros"} <= set(data["model"])
    assert data["model"]["binaries"] == sum(layer["unstable"] for layer in data["layers"])
    assert {"bounds", "formulation", "regions"} <= set(data["times"])
    assert 0.0 <= data["stable_fraction"] <= data["empirical_stable_fraction"] <= 1.0


def test_default_region_method_by_input_size(model3, capsys):
    data = stats_json(capsys, model3, "--box", "-1:1", "--samples", "2000")
    assert data["linear_regions"]["method"] == "sample" and data["linear_regions"]["exact"] is False
    mip = stats_json(capsys, model3, "--box", "-1:1", "--regions", "mip", "--samples", "500")
    assert mip["linear_regions"]["method"] == "mip" and mip["linear_regions"]["exact"] is True
    assert data["linear_regions"]["count"] <= mip["linear_regions"]["count"]
    none = stats_json(capsys, model3, "--box", "-1:1", "--regions", "none", "--samples", "0")
    assert none["linear_regions"] is None and none["empirical_stable_fraction"] is None


def test_tighten_changes_big_m(model2, capsys):
    data = stats_json(capsys, model2, "--box", "-2:2", "--tighten", "lp", "--samples", "500")
    assert data["bound_method"] == "lp"
    assert data["big_m"]["max"] <= data["big_m_before"]["max"] + 1e-9


def test_text_output(model2, capsys):
    assert main(["stats", str(model2), "--box", "-1:1", "--samples", "1000"]) == 0
    out = capsys.readouterr().out
    for needle in ("stable %", "EMPIRICAL", "linear regions on the domain", "(exact)", "upper bound", "big-M",
                   "binaries", "times"):
        assert needle in out


@pytest.mark.parametrize("cross_check", [[], ["--solve-time-limit", "30"]])
def test_plots(model2, tmp_path, capsys, cross_check):
    pytest.importorskip("matplotlib")
    folder = tmp_path / "new" / "figures"  # created, parents too
    assert main(["stats", str(model2), "--box", "-1:1", "--plot", str(folder), "--samples", "500",
                 *cross_check]) == 0
    out = capsys.readouterr().out
    names = sorted(p.name for p in folder.glob("*.png"))
    assert names == ["two_big_m.png", "two_regions.png", "two_stability.png"]
    assert "wrote" in out


@pytest.mark.parametrize("args,message", [
    (["--regions", "exact"], "needs 1 or 2 inputs"),
    (["--region-time-limit", "0"], "must be a positive number"),
    (["--plot", "/proc/nonexistent/folder"], "cannot create --plot"),
])
def test_errors_are_one_line(model3, capsys, args, message):
    assert main(["stats", str(model3), "--box", "-1:1", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_json_stdout_is_clean_in_a_fresh_process(model3):
    """The HiGHS banner (printed on fd 1 by the first Highs() of a process) must not break --json."""
    proc = subprocess.run([sys.executable, "-m", "relumilp", "stats", str(model3), "--box", "-1:1", "--regions",
                           "mip", "--samples", "200", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["linear_regions"]["method"] == "mip"


def test_stats_of_a_smooth_network_reports_what_applies(tmp_path):
    """A sigmoid network has no pieces or linear regions: the census counts no neuron stable, regions are
    not counted, and the rest of the report (bounds, model size) is there."""
    from relumilp.activations import Sigmoid
    from relumilp.analysis.report import analyze_network
    from relumilp.domain import InputDomain
    from relumilp.ir import Network

    rng = np.random.default_rng(0)
    net = Network.sequential([(rng.normal(size=(4, 2)), np.zeros(4)), (rng.normal(size=(1, 4)), np.zeros(1))],
                             Sigmoid())
    report = analyze_network(net, InputDomain.box(-1.0, 1.0, 2), samples=200)
    assert report.regions is None and report.regions_upper_bound is None
    assert all(layer.empirical_stable == 0 for layer in report.layers)
    text = report.to_text()
    assert "smooth activation" in text and report.model["binaries"] >= 0
