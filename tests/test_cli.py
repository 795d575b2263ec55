"""The command line: solve/compile on the built-in example, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import random_mlp
from relumilp.cli import main
from relumilp.ir import Network


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "small.npz"
    random_mlp(np.random.default_rng(0), [2, 6, 6, 1]).save(path)
    return path


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relumilp", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_solve_json(small_model, capsys):
    assert main(["solve", str(small_model), "--box", "-1:1", "--maximize", "0", "--json", "--method", "milp"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "optimal"
    assert {"status", "objective", "bound", "x", "y", "times", "stats"} <= set(data)
    assert set(data["times"]) >= {"bounds", "build", "solve", "total"}
    assert set(data["stats"]) >= {"binaries", "constraints", "stable_active", "stable_inactive", "unstable"}
    net = Network.load(small_model)
    assert net.forward(np.array(data["x"]))[0] == pytest.approx(data["objective"], abs=1e-6)
    assert data["y"][0] == pytest.approx(data["objective"], abs=1e-6)


def test_solve_box_per_input_and_bounds_file(small_model, tmp_path, capsys):
    bounds = tmp_path / "bounds.json"
    bounds.write_text(json.dumps({"lower": [-1, 0], "upper": [0, 1]}))
    assert main(["solve", str(small_model), "--input-bounds", str(bounds), "--minimize", "0", "--json"]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert main(["solve", str(small_model), "--box", "-1:0", "--box", "0:1", "--minimize", "0", "--json"]) == 0
    from_boxes = json.loads(capsys.readouterr().out)
    assert from_file["objective"] == pytest.approx(from_boxes["objective"], abs=1e-9)
    assert -1 <= from_file["x"][0] <= 0 <= from_file["x"][1] <= 1


@pytest.mark.parametrize("suffix", [".mps", ".lp"])
def test_compile_writes_model(small_model, tmp_path, suffix, capsys):
    out = tmp_path / f"model{suffix}"
    assert main(["compile", str(small_model), "--box", "-1:1", "--maximize", "0", "-o", str(out)]) == 0
    assert out.stat().st_size > 0
    assert "binaries" in capsys.readouterr().out
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.readModel(str(out))
    h.run()
    net = Network.load(small_model)
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 201), np.linspace(-1, 1, 201)), -1).reshape(-1, 2)
    assert h.getInfo().objective_function_value >= net.forward(grid).max() - 1e-7
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_compile_to_bad_suffix_writes_nothing(small_model, tmp_path):
    out = tmp_path / "model.txt"
    result = run_cli("compile", small_model, "--box", "-1:1", "-o", out)
    assert result.returncode == 2 and "must end in .mps or .lp" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--box", "1:0", "--maximize", "0"], "lower bound 1.0 > upper bound 0.0"),
        (["--box", "0:1", "--box", "0:1", "--box", "0:1", "--maximize", "0"], "3 --box options but the network has 2"),
        (["--box", "0:1", "--maximize", "5"], "output index 5 is out of range"),
        (["--box", "0:1"], "choose an objective"),
        (["--maximize", "0"], "no input domain"),
    ],
)
def test_user_errors_exit_2_with_one_line(small_model, args, message):
    result = run_cli("solve", small_model, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_missing_and_corrupt_model_files(tmp_path):
    result = run_cli("solve", tmp_path / "nope.onnx", "--box", "0:1", "--maximize", "0")
    assert result.returncode == 2 and "not found" in result.stderr and "Traceback" not in result.stderr
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage-not-protobuf" * 10)
    result = run_cli("solve", corrupt, "--box", "0:1", "--maximize", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_nan_weights_in_model_file(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.array([[np.nan, 1.0]], dtype=np.float32), "W")
    b = numpy_helper.from_array(np.zeros(1, dtype=np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "B"], ["y"], transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])], [w, b])
    path = tmp_path / "nan.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    result = run_cli("solve", path, "--box", "0:1", "--maximize", "0")
    assert result.returncode == 2 and "NaN" in result.stderr and "Traceback" not in result.stderr


def test_unknown_example():
    result = run_cli("solve", "--example", "nope", "--maximize", "0")
    assert result.returncode == 2 and "available: peaks" in result.stderr


def test_json_output_is_clean_in_a_fresh_process(small_model):
    # HiGHS prints a banner on fd 1 at its first use in a process; --json must stay parseable.
    result = run_cli("solve", small_model, "--box", "-1:1", "--maximize", "0", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "optimal"


def test_threads_after_bound_tightening_in_one_process(small_model, capsys):
    # LP-OBBT runs HiGHS first; a thread count asked for afterwards must still be honoured.
    assert main(["solve", str(small_model), "--box", "-1:1", "--maximize", "0", "--tighten", "lp",
                 "--threads", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "optimal"


def test_compile_names_the_columns_warns_without_objective_and_honours_the_umask(tmp_path):
    import os

    model, names = tmp_path / "m.mps", tmp_path / "m.json"
    old = os.umask(0o027)
    try:
        proc = run_cli("compile", "--example", "peaks", "--box", "-3:3", "-o", str(model), "--names", str(names))
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    assert "warning: no objective given" in proc.stderr
    table = json.loads(names.read_text())
    assert table["columns"][table["inputs"][0]] == "x[0]" and table["columns"][table["outputs"][0]] == "y[0]"
    assert any(name.endswith(".z[0]") for name in table["columns"])
    text = model.read_text()
    assert "x[1]" in text and "y[0]" in text
    for path in (model, names):
        assert path.stat().st_mode & 0o777 == 0o640
