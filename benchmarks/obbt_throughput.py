"""LP-OBBT throughput: relumilp's warm-started highspy loop vs naive Pyomo re-solve loops.

Every method but one solves the same LPs: for each neuron that ``compute_bounds(..., "lp")`` tightens, its
affine map minimised and maximised over the hull LP relaxation of the layers before it (captured while
relumilp runs).

* ``relumilp`` -- chunks of solves on one ``highspy.Highs`` each, objective changed with
  ``changeColsCost``, warm-started from the previous basis in :func:`warm_start_order`, safe dual
  bounds from the duals; serially (1 process) and on a local process pool (the pool is started
  before timing; its start-up is reported separately). The ablation row solves in neuron order;
* ``pyomo-naive`` -- per neuron: build a Pyomo model of the LP, set the objective, solve with
  ``appsi_highs`` (min, then max on the same model);
* ``pyomo-naive on the big-M relaxation`` -- the same loop over the model a user would take from an
  OMLT-style formulation: the big-M MILP of the sub-network up to the layer, binaries relaxed to
  ``[0, 1]`` (for ReLU nets the same optima up to the layer's own prior bounds; the difference is printed);
* ``pyomo-persistent`` -- per layer: build the Pyomo model once; per solve: swap the objective and
  re-solve with the persistent ``appsi_highs`` interface (a fairer, stronger Pyomo baseline).

The Pyomo loops solve a sample of the neurons (``--sample``) and their throughput is extrapolated per
LP; their optima are checked against relumilp's bounds. Prints a Markdown table and writes
``benchmarks/results/obbt_throughput_<net>.csv``.

    python -m benchmarks.obbt_throughput [--net acas|peaks32|peaks-2-64x3] [--sample 40] [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyomo.environ as pyo  # noqa: E402

import relumilp.bounds.obbt as obbt  # noqa: E402
import relumilp.parallel as parallel  # noqa: E402
from relumilp.bounds import compute_bounds  # noqa: E402
from relumilp.bounds.obbt import LayerProblem  # noqa: E402
from relumilp.formulation.bigm import build_milp  # noqa: E402
from relumilp._io import any_file, atomic_path  # noqa: E402
from relumilp.domain import InputDomain  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
ACAS = ROOT.parent / "shared" / "data" / "acasxu"


def vnnlib_box(path: Path) -> InputDomain:
    """The input box of a VNN-LIB property: ``(assert (<= X_i v))`` / ``(assert (>= X_i v))`` lines."""
    text = path.read_text()
    upper = {int(i): float(v) for i, v in re.findall(r"\(assert \(<= X_(\d+) ([-+0-9.eE]+)\)\)", text)}
    lower = {int(i): float(v) for i, v in re.findall(r"\(assert \(>= X_(\d+) ([-+0-9.eE]+)\)\)", text)}
    n = max(upper) + 1
    return InputDomain([lower[i] for i in range(n)], [upper[i] for i in range(n)])


def acas_problem():
    from relumilp.frontends import load_network

    net = load_network(ACAS / "ACASXU_run2a_1_1_batch_2000.onnx")
    return "acasxu-1_1-prop1", net, vnnlib_box(ACAS / "prop_1.vnnlib")


def peaks_problem():
    from relumilp.examples import load_example

    ex = load_example("peaks32")
    return "peaks-2-32x2", ex.network, ex.domain


def trained_peaks_problem():
    from benchmarks.bounds_benchmark import train_peaks

    return "peaks-2-64x3", train_peaks(64, 3), InputDomain.box(-3.0, 3.0, 2)


PROBLEMS = {"acas": acas_problem, "peaks32": peaks_problem, "peaks-2-64x3": trained_peaks_problem}


def pyomo_model(milp):
    """A Pyomo model of the LP ``milp`` (variables, rows; objective added by the caller)."""
    m = pyo.ConcreteModel()
    n = milp.num_columns
    m.v = pyo.Var(range(n))
    for i in range(n):
        m.v[i].setlb(float(milp.col_lower[i]))
        m.v[i].setub(float(milp.col_upper[i]))
    A = milp.A.tocsr()
    m.rows = pyo.ConstraintList()
    for r in range(milp.num_rows):
        start, stop = A.indptr[r], A.indptr[r + 1]
        expr = sum(float(a) * m.v[int(c)] for a, c in zip(A.data[start:stop], A.indices[start:stop]))
        lo, hi = milp.row_lower[r], milp.row_upper[r]
        m.rows.add((float(lo) if np.isfinite(lo) else None, expr, float(hi) if np.isfinite(hi) else None))
    return m


def pyomo_solve(model, solver, problem, j: int, sign: float) -> float:
    """``min sign * x_j`` (returned as the value of ``x_j``) for neuron ``j`` of ``problem``."""
    columns, coefficients, constant = problem.objective(j)
    if hasattr(model, "obj"):
        model.del_component(model.obj)
    affine = sum(float(a) * model.v[int(c)] for a, c in zip(coefficients, columns)) + constant
    model.obj = pyo.Objective(expr=sign * affine, sense=pyo.minimize)
    result = solver.solve(model)
    assert result.solver.termination_condition == pyo.TerminationCondition.optimal
    return sign * pyo.value(model.obj)


def run_relumilp(net, domain, workers: int, **options):
    stats: dict = {}
    start = time.perf_counter()
    bounds = compute_bounds(net, domain, "lp", stats=stats, workers=workers, **options)
    return time.perf_counter() - start, stats["lp"]["solves"], stats["lp"]["iterations"], bounds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", choices=tuple(PROBLEMS), default="acas" if ACAS.is_dir() else "peaks-2-64x3")
    parser.add_argument("--sample", type=int, default=40, help="neurons solved by each Pyomo loop")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes of the pool row")
    parser.add_argument("--repeats", type=int, default=3, help="relumilp runs per row (the best is kept)")
    args = parser.parse_args(argv)
    name, net, domain = PROBLEMS[args.net]()
    compute_bounds(net, domain, "symbolic")  # warm up torch

    # capture the LPs (problem, neuron) of a serial run, with their merged bounds
    captured: dict[int, tuple] = {}
    original = obbt.solve_chunk

    def spy(problem, neurons, signs=None):
        result = original(problem, neurons, signs)
        _, lower, upper = captured.setdefault(id(problem), (problem, {}, {}))
        for k, j in enumerate(result.neurons):
            lower[int(j)] = max(lower.get(int(j), -np.inf), result.lower[k])
            upper[int(j)] = min(upper.get(int(j), np.inf), result.upper[k])
        return result

    # ... and, per layer, the bounds it was built from (for the big-M baseline)
    built: dict[int, tuple] = {}
    original_build = obbt.build_lp_relaxation

    def build_spy(net, bounds, domain, upto=None, include_upto=True):
        milp = original_build(net, bounds, domain, upto, include_upto)
        built[id(milp)] = (bounds.copy(), upto)
        return milp

    obbt.solve_chunk, obbt.build_lp_relaxation = spy, build_spy
    try:
        run_relumilp(net, domain, 1)
    finally:
        obbt.solve_chunk, obbt.build_lp_relaxation = original, original_build

    runs = {}
    pool_start = None
    configurations = [("relumilp, 1 process", 1, {})]
    if args.workers > 1:
        configurations.append((f"relumilp, {args.workers} processes", args.workers, {}))
    configurations.append(("relumilp, 1 process, neuron order (ablation)", 1, {"warm_start_order": False}))
    for label, workers, options in configurations:
        if workers > 1:
            clock = time.perf_counter()
            parallel.shared_process_pool(workers).submit(int, 0).result()
            pool_start = time.perf_counter() - clock
        best = min((run_relumilp(net, domain, workers, **options) for _ in range(args.repeats)), key=lambda r: r[0])
        runs[label] = best
    ours_solves = runs["relumilp, 1 process"][1]

    tasks = [(problem, j, lower[j], upper[j]) for problem, lower, upper in captured.values() for j in lower]
    rng = np.random.default_rng(0)
    pick = sorted(rng.choice(len(tasks), size=min(args.sample, len(tasks)), replace=False))
    solver = pyo.SolverFactory("appsi_highs")

    start = time.perf_counter()
    worst = 0.0
    for t in pick:
        problem, j, lo, hi = tasks[t]
        model = pyomo_model(problem.milp)
        vmin, vmax = pyomo_solve(model, solver, problem, j, 1.0), pyomo_solve(model, solver, problem, j, -1.0)
        worst = max(worst, abs(lo - vmin) / (1 + abs(vmin)), abs(hi - vmax) / (1 + abs(vmax)))
    naive_time = time.perf_counter() - start
    naive_solves = 2 * len(pick)

    # the loop a user would write over an OMLT-style model: the big-M relaxation of the sub-network
    # up to the layer (binaries in [0, 1], the layer's own columns in the model); same bounds
    start = time.perf_counter()
    worst_bigm = 0.0
    for t in pick:
        problem, j, lo, hi = tasks[t]
        bounds, upto = built[id(problem.milp)]
        relaxed = build_milp(net, bounds, domain, upto=upto).relaxed()
        model = pyomo_model(relaxed)
        column = LayerProblem(relaxed, relaxed.node_columns[upto], None, None, "lp")
        vmin, vmax = pyomo_solve(model, solver, column, j, 1.0), pyomo_solve(model, solver, column, j, -1.0)
        worst_bigm = max(worst_bigm, abs(lo - vmin) / (1 + abs(vmin)), abs(hi - vmax) / (1 + abs(vmax)))
    bigm_time = time.perf_counter() - start

    start = time.perf_counter()
    models = {}
    for t in pick:
        problem, j, lo, hi = tasks[t]
        key = id(problem)
        if key not in models:
            models[key] = (pyomo_model(problem.milp), pyo.SolverFactory("appsi_highs"))
        model, persistent = models[key]
        pyomo_solve(model, persistent, problem, j, 1.0)
        pyomo_solve(model, persistent, problem, j, -1.0)
    persistent_time = time.perf_counter() - start

    rows = [{"net": name, "method": label, "lps": solves, "seconds": seconds, "lps_per_s": solves / seconds,
             "simplex_iterations": iterations} for label, (seconds, solves, iterations, _) in runs.items()]
    rows += [
        {"net": name, "method": "pyomo-naive (model per neuron)", "lps": naive_solves, "seconds": naive_time,
         "lps_per_s": naive_solves / naive_time, "simplex_iterations": ""},
        {"net": name, "method": "pyomo-naive on the big-M relaxation (model per neuron)", "lps": naive_solves,
         "seconds": bigm_time, "lps_per_s": naive_solves / bigm_time, "simplex_iterations": ""},
        {"net": name, "method": f"pyomo-persistent (model per layer, {len(models)} models)", "lps": naive_solves,
         "seconds": persistent_time, "lps_per_s": naive_solves / persistent_time, "simplex_iterations": ""},
    ]
    for row in rows:
        row["vs_naive_same_lp"] = row["lps_per_s"] / (naive_solves / naive_time)
        row["vs_naive_bigm"] = row["lps_per_s"] / (naive_solves / bigm_time)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"obbt_throughput_{args.net}.csv"
    with atomic_path(out, ours=any_file) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"LP-OBBT throughput on {name} ({ours_solves} LPs per run, best of {args.repeats} runs; "
          f"Pyomo loops on a sample of {len(pick)} neurons)\n")
    print("| method | LPs | seconds | LPs/s | simplex iterations | x naive (same LP) | x naive (big-M LP) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['method']} | {row['lps']} | {row['seconds']:.2f} | {row['lps_per_s']:.1f} | "
              f"{row['simplex_iterations']} | {row['vs_naive_same_lp']:.1f}x | {row['vs_naive_bigm']:.1f}x |")
    if pool_start is not None:
        print(f"\nprocess pool start-up (not in the times above): {pool_start:.2f} s")
    print(f"max relative difference of the Pyomo optima vs relumilp's safe bounds: {worst:.2e} "
          f"(big-M relaxation: {worst_bigm:.2e})")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
