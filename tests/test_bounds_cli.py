"""``relumilp bounds`` and the bound cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

import relumilp.bounds.obbt as obbt
from relumilp.bounds import compute_bounds
from relumilp.bounds.cache import cache_key, cache_path, load_bounds
from relumilp.cli import main
from relumilp.domain import InputDomain
from test_bounds_symbolic import mixed_mlp


@pytest.fixture
def model(tmp_path):
    net = mixed_mlp(3, [2, 8, 6, 2])
    path = tmp_path / "net.npz"
    net.save(path)
    return net, path


def test_bounds_command_writes_json_and_prints_the_table(model, tmp_path, capsys):
    net, path = model
    out = tmp_path / "bounds.json"
    assert main(["bounds", str(path), "--box", "-1:1", "--tighten", "lp", "-o", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["method"] == "lp"
    assert [layer["name"] for layer in data["layers"]] == [n.name for n in net.affines]
    for layer, node in zip(data["layers"], net.affines):
        assert len(layer["lower"]) == len(layer["upper"]) == node.size
        assert all(lo <= hi for lo, hi in zip(layer["lower"], layer["upper"]))
    expected = compute_bounds(net, InputDomain.box(-1.0, 1.0, 2), "lp")
    np.testing.assert_array_equal(data["layers"][-1]["upper"], expected.upper[net.output])
    text = capsys.readouterr().out
    assert "unstable" in text and "mean width" in text
    rows = [line.split() for line in text.splitlines() if line.startswith("linear")]
    assert len(rows) == len(net.affines)
    for row, node in zip(rows[:-1], net.affines):
        assert sum(int(v) for v in row[2:5]) == node.size  # active + inactive + unstable
    assert rows[-1][2:5] == ["-", "-", "-"]  # the output feeds no activation


def test_bounds_command_json_milp_workers_and_cache(model, tmp_path, capsys):
    _, path = model
    args = ["bounds", str(path), "--box", "-1:1", "--tighten", "milp", "--milp-time-limit", "2", "--json",
            "--cache", str(tmp_path / "cache")]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(args + ["--workers", "2"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert first["layers"] == second["layers"] and first["method"] == "milp"
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_bounds_command_with_scaling(model, capsys):
    _, path = model
    assert main(["bounds", str(path), "--box", "-1:1", "--tighten", "symbolic", "--scale", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["scaled"] is True


@pytest.mark.parametrize(
    "args,message",
    [
        (["--box", "1:0"], "lower bound"),
        (["--box", "-1:1", "--workers", "0"], "--workers"),
        (["--box", "-1:1", "--workers", "2"], "lp or milp"),
        (["--box", "-1:1", "--tighten", "milp", "--milp-time-limit", "-1"], "milp-time-limit"),
        (["--box", "-1:1", "--box", "0:1", "--box", "0:2"], "--box"),
        ([], "input domain"),
    ],
)
def test_bad_input_exits_2_with_one_line(model, capsys, args, message):
    _, path = model
    assert main(["bounds", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("relumilp: error:") and message in err


def test_missing_model_and_unwritable_output(model, tmp_path, capsys):
    _, path = model
    assert main(["bounds", str(tmp_path / "nope.npz"), "--box", "-1:1"]) == 2
    assert main(["bounds", str(path), "--box", "-1:1", "-o", str(tmp_path / "no" / "dir" / "b.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2


# -- the bound cache ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["dir", "file.json", "file.npz"])
def test_cache_skips_tightening_the_second_time(tmp_path, monkeypatch, target):
    net = mixed_mlp(4, [2, 8, 8, 1])
    domain = InputDomain.box(-1.0, 1.0, 2)
    cache = tmp_path / ("cache" if target == "dir" else target)
    first = compute_bounds(net, domain, "lp", cache=cache)

    def fail(*args, **kwargs):
        raise AssertionError("the LP code ran although the bounds were cached")

    monkeypatch.setattr(obbt, "solve_chunk", fail)
    monkeypatch.setattr(obbt, "obbt_bounds", fail)
    second = compute_bounds(net, domain, "lp", cache=cache)
    assert second.method == "lp"
    for name in first.lower:
        np.testing.assert_array_equal(first.lower[name], second.lower[name])
        np.testing.assert_array_equal(first.upper[name], second.upper[name])
    # another domain, method or option is another key: computed again (and here: the LP code runs)
    with pytest.raises(AssertionError, match="LP code ran"):
        compute_bounds(net, InputDomain.box(-1.0, 0.5, 2), "lp", cache=cache)
    with pytest.raises(AssertionError, match="LP code ran"):
        compute_bounds(net, domain, "lp", cache=cache, tighten_outputs=False)


def test_corrupt_or_foreign_cache_files_are_ignored(tmp_path):
    net = mixed_mlp(4, [2, 8, 8, 1])
    domain = InputDomain.box(-1.0, 1.0, 2)
    key = cache_key(net, domain, "symbolic")
    path = cache_path(tmp_path, key)
    path.write_bytes(b"not an npz")
    assert load_bounds(path, key) is None
    bounds = compute_bounds(net, domain, "symbolic", cache=tmp_path)
    assert load_bounds(path, key) is not None
    other = cache_key(mixed_mlp(5, [2, 8, 8, 1]), domain, "symbolic")
    assert load_bounds(path, other) is None
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files
    assert bounds.method == "symbolic"


def test_solve_command_with_tighten_and_scale_end_to_end(tmp_path, capsys):
    net = mixed_mlp(21, [2, 6, 6, 1])
    path = tmp_path / "small.npz"
    net.save(path)
    objectives = []
    for extra in ([], ["--tighten", "lp"], ["--tighten", "milp", "--scale"], ["--tighten", "symbolic", "--scale"]):
        assert main(["solve", str(path), "--box", "-2:2", "--maximize", "0", "--json", *extra]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["status"] == "optimal"
        objectives.append(result["objective"])
    np.testing.assert_allclose(objectives, objectives[0], rtol=1e-6, atol=1e-6)
