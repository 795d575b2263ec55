"""Bad input on the command line (issue #11): one clear stderr line and exit status 2, never a traceback;
output files written whole or not at all and nobody else's file overwritten; questionable but legal
input (an empty VNN-LIB input set, a model in training mode) answered with a one-line warning.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import random_mlp
from relumilp.frontends import from_torch, load_network
from test_cli import run_cli

BOX = "(assert (>= X_0 -1))\n(assert (<= X_0 1))\n(assert (>= X_1 -1))\n(assert (<= X_1 1))\n"
HEAD = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 2-input network and a VNN-LIB property for it."""
    folder = tmp_path_factory.mktemp("bad_input")
    random_mlp(np.random.default_rng(0), [2, 6, 1]).save(folder / "net.npz")
    (folder / "prop.vnnlib").write_text(HEAD + BOX + "(assert (>= Y_0 100))\n")
    return folder


def stderr_lines(proc) -> list[str]:
    assert "Traceback" not in proc.stderr
    return [line for line in proc.stderr.splitlines() if line.strip()]


def assert_error(proc, *words) -> str:
    """Exit status 2 and exactly one stderr line, ``relumilp: error: ...`` containing ``words``."""
    lines = stderr_lines(proc)
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("relumilp: error:"), proc.stderr
    for word in words:
        assert word in lines[0]
    return lines[0]


def assert_warnings(proc, *words) -> list[str]:
    """Exit status 0 and stderr lines that are all one-line ``relumilp: warning: ...`` (``words`` among them)."""
    lines = stderr_lines(proc)
    assert proc.returncode == 0, proc.stderr
    assert lines and all(line.startswith("relumilp: warning:") for line in lines), proc.stderr
    for word in words:
        assert any(word in line for line in lines), proc.stderr
    return lines


def command(files, name: str) -> list:
    """The start of a valid ``name`` command on the test network."""
    if name == "verify":
        return ["verify", files / "net.npz", files / "prop.vnnlib"]
    return [name, files / "net.npz", "--box", "-1:1"] + (["--maximize", "0"] if name == "solve" else [])


# -- 1. numeric options -------------------------------------------------------------------------------


@pytest.mark.parametrize("name,option,value", [
    ("solve", "--time-limit", "-1"),
    ("solve", "--time-limit", "nan"),
    ("solve", "--time-limit", "0"),
    ("solve", "--mip-gap", "-0.1"),
    ("solve", "--threads", "0"),
    ("solve", "--maximize", "x"),
    ("verify", "--time-limit", "-5"),
    ("verify", "--threads", "-1"),
    ("bounds", "--milp-time-limit", "nan"),
    ("bounds", "--workers", "0"),
    ("stats", "--samples", "-1"),
    ("stats", "--region-time-limit", "nan"),
    ("stats", "--solve-time-limit", "-1"),
])  # fmt: skip
def test_bad_numeric_option(files, name, option, value):
    assert_error(run_cli(*command(files, name), option, value), option, repr(value))


# -- 2. unwritable output files ---------------------------------------------------------------------------


def _target(kind: str, tmp_path: Path) -> Path:
    if kind == "proc":
        return Path("/proc/relumilp-test-output.json")
    if kind == "sys":
        return Path("/sys/relumilp-test-output.json")
    if kind == "directory":
        return tmp_path
    if kind == "under a file":
        (tmp_path / "file").write_text("mine")
        return tmp_path / "file" / "out.json"
    return tmp_path / "missing" / "out.json"


KINDS = ("proc", "sys", "directory", "under a file", "missing folder")
# an existing directory is a valid --cache (one file per key inside it), so that pair is left out
UNWRITABLE = [(o, k) for o in ("-o", "--cache") for k in KINDS if (o, k) != ("--cache", "directory")]


@pytest.mark.parametrize("option,kind", UNWRITABLE)
def test_unwritable_output(files, tmp_path, option, kind):
    name = "bounds"
    target = _target(kind, tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert_error(run_cli(*command(files, name), option, target), str(target.parent))
    assert sorted(tmp_path.rglob("*")) == before  # nothing created, no temporary file left
    assert not target.is_file()
    if kind == "under a file":
        assert target.parent.read_text() == "mine"


@pytest.mark.parametrize("name,option", [("compile", "-o"), ("verify", "--result-file")])
def test_unwritable_output_of_other_commands(files, name, option):
    target = Path("/proc/relumilp-test-output.mps")
    assert_error(run_cli(*command(files, name), option, target), str(target))


# -- 3. the bound cache never overwrites someone else's file ---------------------------------------------


@pytest.mark.parametrize("filename,content", [
    ("notes.json", b'{"my": "data"}'),
    ("arrays.npz", None),
    ("notes.txt", b"not a cache at all"),
])  # fmt: skip
def test_cache_refuses_a_foreign_file(files, tmp_path, filename, content):
    path = tmp_path / filename
    if content is None:
        np.savez(path, weights=np.arange(3.0))
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    assert_error(run_cli(*command(files, "bounds"), "--cache", path), str(path), "not a relumilp bound cache")
    assert path.read_bytes() == before
    assert sorted(tmp_path.iterdir()) == [path]


def test_cache_file_of_relumilp_is_reused(files, tmp_path):
    path = tmp_path / "bounds.json"
    for _ in range(2):
        proc = run_cli(*command(files, "bounds"), "--cache", path, "--json")
        assert proc.returncode == 0 and not stderr_lines(proc)
    assert json.loads(path.read_text())["format"] == "relumilp-bounds-1"


# -- 4. --log with --json ---------------------------------------------------------------------------------


def test_log_with_json_keeps_stdout_pure_json():
    proc = run_cli("solve", "--example", "peaks", "--maximize", "0", "--json", "--log")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "optimal"
    assert "Traceback" not in proc.stderr and ("MIP" in proc.stderr or "HiGHS" in proc.stderr)


# -- 5. ONNX with a fixed batch of several samples ------------------------------------------------------------


def _onnx_mlp(path: Path, batch: int) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    weights = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
               for name, shape in (("W", (4, 2)), ("b", (4,)), ("V", (1, 4)), ("c", (1,)))]
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "V", "c"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 1])], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_onnx_with_a_fixed_batch_of_three_is_refused(tmp_path):
    assert load_network(_onnx_mlp(tmp_path / "one.onnx", 1)).input_size == 2  # batch 1 is one sample
    path = _onnx_mlp(tmp_path / "three.onnx", 3)
    assert_error(run_cli("bounds", path, "--box", "-1:1"), "batch dimension of 3", "batch size 1")


# -- 6. pickles are refused without torch's warnings -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["module", "arbitrary"])
def test_pickle_is_refused_in_one_line(tmp_path, kind):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    if kind == "module":
        torch.save(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU()), path)
    else:
        path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=4))
    line = assert_error(run_cli("bounds", path, "--box", "-1:1"), "pickled", "torch.jit.script")
    assert "Warning" not in line


# -- 7. VNN-LIB properties that are legal but probably not meant ------------------------------------------------


@pytest.mark.parametrize("body,result,word", [
    (BOX, "violated", "no output constraint"),
    (BOX + "(assert (>= X_0 2))\n(assert (>= Y_0 100))\n", "holds", "vacuously"),
    (BOX + "(assert (>= (+ X_0 X_1) 3))\n(assert (>= Y_0 100))\n", "holds", "vacuously"),
])  # fmt: skip
def test_vnnlib_warnings(files, tmp_path, body, result, word):
    prop = tmp_path / "p.vnnlib"
    prop.write_text(HEAD + body)
    proc = run_cli("verify", files / "net.npz", prop, "--json")
    assert_warnings(proc, word)
    assert json.loads(proc.stdout)["result"] == result


# -- 8. torch modules in training mode ----------------------------------------------------------------------


def _torch_mlp(extra: str):
    torch = pytest.importorskip("torch")
    layer = {"dropout": torch.nn.Dropout(0.5), "batchnorm": torch.nn.BatchNorm1d(4), "none": torch.nn.Identity()}
    return torch.nn.Sequential(torch.nn.Linear(2, 4), layer[extra], torch.nn.ReLU(), torch.nn.Linear(4, 1))


def training_warnings(model) -> list[str]:
    """The training-mode warnings ``from_torch(model)`` gives (torch's own deprecation notes aside)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from_torch(model)
    return [str(w.message) for w in caught if "training mode" in str(w.message)]


@pytest.mark.parametrize("extra", ["dropout", "batchnorm"])
@pytest.mark.parametrize("script", [False, True])
def test_training_mode_is_compiled_with_a_warning(extra, script):
    import torch

    model = _torch_mlp(extra).train()
    model = torch.jit.script(model) if script else model
    with pytest.warns(UserWarning, match="training mode"):
        from_torch(model)
    assert training_warnings(model.eval()) == []


def test_training_mode_without_mode_dependent_layers_is_silent():
    assert training_warnings(_torch_mlp("none").train()) == []  # Linear and ReLU behave the same in both modes


def test_training_mode_warning_is_one_cli_line(tmp_path):
    import torch

    path = tmp_path / "train.pt"
    torch.jit.script(_torch_mlp("dropout").train()).save(str(path))
    assert_warnings(run_cli("bounds", path, "--box", "-1:1"), "training mode", "model.eval()")


# -- 4. no output file that relumilp did not write is replaced ---------------------------------------------


OUTPUTS = [
    ("compile", ["-o", "{}"], "model.mps"),
    ("compile", ["-o", "{}"], "model.lp"),
    ("compile", ["-o", "{out}.mps", "--names", "{}"], "names.json"),
    ("bounds", ["-o", "{}"], "bounds.json"),
    ("stats", ["--html", "{}"], "report.html"),
    ("verify", ["--result-file", "{}"], "result.txt"),
]


@pytest.mark.parametrize("name,options,filename", OUTPUTS)
def test_a_file_relumilp_did_not_write_is_never_replaced_but_its_own_is(files, tmp_path, name, options, filename):
    target = tmp_path / filename
    argv = lambda: [*command(files, name), *[o.format(target, out=tmp_path / "side") for o in options]]
    target.write_text("my precious data\n")
    assert_error(run_cli(*argv()), "will not overwrite", filename)
    assert target.read_text() == "my precious data\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [filename]  # nothing else written, no temporary file
    target.write_text("")  # an empty file holds nothing to lose
    assert run_cli(*argv()).returncode == 0
    first = target.read_bytes()
    assert first and run_cli(*argv()).returncode == 0  # a second run replaces its own file
    assert target.stat().st_size > 0


def test_python_writers_keep_the_rule(tmp_path):
    import torch

    import relumilp
    from relumilp.errors import ModelFileError

    net = random_mlp(np.random.default_rng(1), [2, 4, 1])
    module = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    writers = {"net.npz": net.save, "net.onnx": lambda p: relumilp.export_onnx(module, p)}
    for filename, write in writers.items():
        path = tmp_path / filename
        path.write_bytes(b"someone else's")
        with pytest.raises(ModelFileError, match="will not overwrite"):
            write(path)
        assert path.read_bytes() == b"someone else's"
        path.unlink()
        write(path)
        write(path)  # its own file: replaced


def test_usage_errors_are_one_line(files):
    assert_error(run_cli(*command(files, "solve"), "--tighten", "bogus"), "invalid choice", "--help")
    assert_error(run_cli("bogus"), "invalid choice")


def test_pipes_inputs_and_look_alikes_are_never_replaced(files, tmp_path):
    import os

    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    assert_error(run_cli(*command(files, "bounds"), "-o", fifo), "not a regular file")
    assert fifo.is_fifo()
    notes = tmp_path / "notes.json"  # starts with a VNN-COMP answer word, but this is no result file
    notes.write_text("error analysis of run 7 -- keep\n")
    assert_error(run_cli(*command(files, "bounds"), "-o", notes), "will not overwrite")
    lp = tmp_path / "build.lp"  # mentions our mark, but not as its first line
    lp.write_text("\\ hand-written; the big model is written by relumilp\nMaximize\n obj: x\nEnd\n")
    assert_error(run_cli(*command(files, "compile"), "-o", lp), "will not overwrite")
    model = tmp_path / "net.npz"  # a network relumilp wrote, and this run's input
    model.write_bytes((files / "net.npz").read_bytes())
    assert_error(run_cli("bounds", model, "--box", "-1:1", "-o", model), "is also the model")
    assert_error(run_cli(*command(files, "compile"), "-o", tmp_path / "m.mps", "--names", tmp_path / "m.mps"),
                 "is also another output")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build.lp", "net.npz", "notes.json", "pipe.json"]
