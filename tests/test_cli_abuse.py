"""The command line under abuse: absurd thread counts and time limits, deeply nested JSON, a user's file
that merely looks like a result file, Ctrl-C inside stats' optimum solves, output folders made before the
checks. Each is one line and exit 2 (or 130 for Ctrl-C), and nothing that is not relumilp's is touched."""

import os

import numpy as np
import pytest

import relumilp.optimization
from conftest import random_mlp
from relumilp.cli import main
from relumilp.limits import Deadline
from relumilp.optimization import SolveResult
from test_cli import run_cli
from test_cli_bad_input import assert_error, command, files, stderr_lines  # noqa: F401  (fixture)


# -- Proposed test (tests/test_cli_bad_input.py style): JSON nested too deeply is a one-line error, never a
# traceback (json raises RecursionError, which is no ValueError).


def test_deeply_nested_input_bounds_json_is_one_line(files, tmp_path):
    deep = tmp_path / "box.json"
    deep.write_text("[" * 100000)
    assert_error(run_cli("bounds", files / "net.npz", "--input-bounds", deep), str(deep))


def test_deeply_nested_json_named_as_cache_is_refused_untouched(files, tmp_path):
    deep = tmp_path / "cache.json"
    deep.write_text("[" * 100000)
    assert_error(run_cli(*command(files, "bounds"), "--cache", deep), str(deep), "not a relumilp bound cache")
    assert deep.read_text() == "[" * 100000


# -- Proposed test (tests/test_cli_bad_input.py style): a file whose first line is the word ``sat`` but which
# is no VNN-COMP result file is never replaced by ``verify --result-file``; real result files still are.


def test_sat_lookalike_is_not_replaced(files, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("sat\nMy notes on SAT solvers -- keep\n")
    assert_error(run_cli(*command(files, "verify"), "--result-file", notes), "will not overwrite")
    assert notes.read_text() == "sat\nMy notes on SAT solvers -- keep\n"


@pytest.mark.parametrize("text", ["sat\n((X_0 0.5)\n (X_1 -1)\n (Y_0 101.25))\n", "unsat\n", "timeout\n", ""])
def test_result_files_are_replaced(files, tmp_path, text):
    result = tmp_path / "result.txt"
    result.write_text(text)
    proc = run_cli(*command(files, "verify"), "--result-file", result)
    assert proc.returncode == 0, proc.stderr
    assert result.read_text() == "unsat\n"


# -- Proposed test (tests/test_cli_bad_input.py style): a thread or worker count far beyond the machine is a
# one-line error before anything starts (HiGHS would start creating them all and hang, deaf to the time
# limit and to Ctrl-C).


@pytest.mark.parametrize("name,option", [("solve", "--threads"), ("verify", "--threads"), ("bounds", "--workers")])
def test_absurd_parallelism_is_refused(files, name, option):
    value = str(100000 * (os.cpu_count() or 1))
    extra = ["--tighten", "lp"] if name == "bounds" else []
    proc = run_cli(*command(files, name), *extra, option, value, "--time-limit", "5")
    assert_error(proc, option, repr(value))


def test_threads_up_to_the_cores_are_fine(files):
    assert run_cli(*command(files, "solve"), "--threads", str(os.cpu_count() or 1)).returncode == 0


# -- Proposed test (tests/test_cli_bad_input.py style): a stats run refused for its --html output creates
# nothing, not even the --plot folder; --html and --plot naming the same path is refused.


def test_refused_stats_run_creates_no_plot_folder(tmp_path):
    mine = tmp_path / "notes.html"
    mine.write_text("mine")
    assert_error(run_cli("stats", "--example", "peaks", "--samples", "1000", "--html", mine,
                         "--plot", tmp_path / "figs"), "will not overwrite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.html"]


def test_html_and_plot_on_the_same_path_is_refused(tmp_path):
    page = tmp_path / "report.html"
    assert_error(run_cli("stats", "--example", "peaks", "--samples", "1000", "--html", page, "--plot", page),
                 "another output")
    assert not page.exists()


# -- Proposed test (tests/test_cli_bad_input.py style): an astronomically large time limit means no limit;
# it must not reach threading/concurrent.futures waits, which raise OverflowError beyond ~9.2e9 s.


@pytest.mark.parametrize("seconds", [1e10, 1e308])
def test_huge_limits_are_unlimited(seconds):
    assert not Deadline.after(seconds).limited
    assert not Deadline.since_process_start(seconds).limited
    assert Deadline().earlier(seconds) == Deadline()


@pytest.mark.parametrize("option", ["--time-limit", "--milp-time-limit"])
def test_huge_time_limit_with_worker_processes(tmp_path, option):
    random_mlp(np.random.default_rng(0), [5, 64, 64, 64, 1]).save(tmp_path / "net.npz")
    proc = run_cli("bounds", tmp_path / "net.npz", "--box", "-1:1", "--tighten", "lp", "--workers", "2",
                   option, "1e12", *(["--time-limit", "60"] if option != "--time-limit" else []))
    assert proc.returncode == 0, proc.stderr
    assert not stderr_lines(proc)


# -- Proposed test (tests/test_cli_bad_input.py / test_stats_cli.py style): Ctrl-C during the optimum
# MILPs of ``relumilp stats --html`` stops the command (status 130, no page written) instead of being
# swallowed by the first solve and followed by the next one.


def test_ctrl_c_in_the_html_optimum_solve_stops_stats(tmp_path, monkeypatch, capsys):
    random_mlp(np.random.default_rng(0), [5, 8, 1]).save(tmp_path / "net.npz")  # 5 inputs: optima by MILP
    calls = []

    def interrupted(*args, **kwargs):  # what optimize returns when Ctrl-C arrives during its solve
        calls.append(kwargs)
        return SolveResult(status="interrupted")

    monkeypatch.setattr(relumilp.optimization, "optimize", interrupted)
    page = tmp_path / "report.html"
    code = main(["stats", str(tmp_path / "net.npz"), "--box", "-1:1", "--samples", "100", "--html", str(page)])
    assert code == 130
    assert len(calls) == 1  # the min solve is not started after Ctrl-C in the max solve
    assert not page.exists()
    assert "interrupted" in capsys.readouterr().err


# -- Proposed test (tests/test_cli_bad_input.py style): errors about option combinations name the CLI option.


def test_bab_with_linear_rows_names_the_option(tmp_path):
    box = tmp_path / "box.json"
    box.write_text('{"lower": [-3, -3], "upper": [3, 3], "A": [[1, 1]], "b": [1]}')
    assert_error(run_cli("solve", "--example", "peaks", "--input-bounds", box, "--maximize", "0", "--method", "bab"),
                 "--method milp")


def test_formulation_with_bab_names_the_option():
    assert_error(run_cli("solve", "--example", "peaks", "--maximize", "0", "--method", "bab",
                         "--formulation", "ideal_cuts"), "--method milp")


# -- The same limit in Python: the solver session and the process pools refuse absurd counts in one line.


def test_absurd_parallelism_is_refused_in_python_too():
    from relumilp.backends.highs import new_highs
    from relumilp.errors import RelumilpError
    from relumilp.parallel import max_parallel, shared_process_pool

    with pytest.raises(RelumilpError, match="threads must be a whole number from 1 to"):
        new_highs(threads=max_parallel() + 1)
    with pytest.raises(RelumilpError, match="workers must be"):
        shared_process_pool(10**6)
    net = random_mlp(np.random.default_rng(0), [2, 4, 1])
    with pytest.raises(RelumilpError, match="threads must be"):
        relumilp.optimization.optimize(net, ([-1, -1], [1, 1]), maximize=0, threads=100000)


# -- Names that are no file: a folder as the model, "-" or "" as an output, a network file of a newer format.


def test_a_folder_as_model_and_dash_as_output_are_named(tmp_path):
    assert_error(run_cli("stats", str(tmp_path)), "is a folder")
    existed = os.path.exists("-")
    assert_error(run_cli("compile", "--example", "peaks", "-o", "-"), "give a file name")
    assert os.path.exists("-") == existed  # no file named "-" was written


def test_a_newer_network_file_asks_for_an_upgrade(tmp_path):
    import json

    net = random_mlp(np.random.default_rng(0), [2, 3, 1])
    net.save(tmp_path / "net.npz")
    with np.load(tmp_path / "net.npz") as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["__meta__"]))
    meta["format"] = "relumilp-network-999"
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "future.npz", **arrays)
    assert_error(run_cli("stats", str(tmp_path / "future.npz")), "newer than this relumilp reads")


# -- --branching with --no-input-split was silently ignored: one line names the conflict.


def test_branching_without_branch_and_bound_is_refused(files):
    assert_error(run_cli(*command(files, "verify"), "--no-input-split", "--branching", "relu"), "--no-input-split")


# -- A result file of a CIFAR-sized counterexample (3,072 inputs, about 100 KB) is still recognised as one.


def test_a_large_counterexample_result_file_is_ours(tmp_path):
    from relumilp._io import vnncomp_result

    path = tmp_path / "result.txt"
    values = "\n".join(f"(X_{i} {-0.1234567890123456789 * (i + 1):.17g})" for i in range(3072))
    path.write_text(f"sat\n({values}\n(Y_0 1.5))\n")
    assert path.stat().st_size > 65536 and vnncomp_result(path)
    path.write_text("sat\n" + values + "\nmy own notes\n")
    assert not vnncomp_result(path)
