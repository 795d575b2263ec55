"""LP-OBBT throughput: relumilp's warm-started highspy loop vs naive Pyomo re-solve loops.

All three solve exactly the same LPs: the per-layer LP relaxations that ``compute_bounds(..., "lp")``
builds (captured while it runs), each neuron minimised and maximised.

* ``relumilp`` -- one ``highspy.Highs`` per chunk of neurons, objective changed with ``changeColCost``,
  warm-started from the previous basis, safe dual bounds computed from the duals;
* ``pyomo-naive`` -- per neuron: build a Pyomo model of the relaxation, set the objective, solve with
  ``appsi_highs`` (min, then max on the same model);
* ``pyomo-persistent`` -- per layer: build the Pyomo model once; per solve: swap the objective and
  re-solve with the persistent ``appsi_highs`` interface (a fairer, stronger Pyomo baseline).

The Pyomo loops solve a sample of the neurons (``--sample``) and their throughput is extrapolated per
LP; their optima are checked against relumilp's bounds. Prints a Markdown table and writes
``benchmarks/results/obbt_throughput.csv``.

    python benchmarks/obbt_throughput.py [--net acas|peaks] [--sample 40]
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyomo.environ as pyo  # noqa: E402

import relumilp.bounds.obbt as obbt  # noqa: E402
from relumilp.bounds import compute_bounds  # noqa: E402
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


def pyomo_solve(model, solver, column: int, sign: float) -> float:
    if hasattr(model, "obj"):
        model.del_component(model.obj)
    model.obj = pyo.Objective(expr=sign * model.v[column], sense=pyo.minimize)
    result = solver.solve(model)
    assert result.solver.termination_condition == pyo.TerminationCondition.optimal
    return sign * pyo.value(model.obj)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", choices=("acas", "peaks"), default="acas" if ACAS.is_dir() else "peaks")
    parser.add_argument("--sample", type=int, default=40, help="neurons solved by each Pyomo loop")
    args = parser.parse_args(argv)
    name, net, domain = acas_problem() if args.net == "acas" else peaks_problem()

    captured = []
    original = obbt.solve_chunk

    def spy(problem, neurons):
        result = original(problem, neurons)
        captured.append((problem, np.asarray(neurons), result))
        return result

    obbt.solve_chunk = spy
    try:
        stats: dict = {}
        compute_bounds(net, domain, "symbolic")  # warm up torch
        bounds = compute_bounds(net, domain, "lp", stats=stats)
    finally:
        obbt.solve_chunk = original
    ours_time = bounds.times["lp"]
    ours_solves = stats["lp"]["solves"]
    pure_time = sum(r.seconds for _, _, r in captured)

    tasks = [(p, j, r.lower[k], r.upper[k]) for p, chunk, r in captured for k, j in enumerate(chunk)]
    rng = np.random.default_rng(0)
    pick = sorted(rng.choice(len(tasks), size=min(args.sample, len(tasks)), replace=False))
    solver = pyo.SolverFactory("appsi_highs")

    start = time.perf_counter()
    worst = 0.0
    for t in pick:
        problem, j, lo, hi = tasks[t]
        col = int(problem.columns[j])
        model = pyomo_model(problem.milp)
        vmin, vmax = pyomo_solve(model, solver, col, 1.0), pyomo_solve(model, solver, col, -1.0)
        worst = max(worst, abs(lo - vmin) / (1 + abs(vmin)), abs(hi - vmax) / (1 + abs(vmax)))
    naive_time = time.perf_counter() - start
    naive_solves = 2 * len(pick)

    start = time.perf_counter()
    models = {}
    for t in pick:
        problem, j, lo, hi = tasks[t]
        key = id(problem)
        if key not in models:
            models[key] = (pyomo_model(problem.milp), pyo.SolverFactory("appsi_highs"))
        model, persistent = models[key]
        col = int(problem.columns[j])
        pyomo_solve(model, persistent, col, 1.0)
        pyomo_solve(model, persistent, col, -1.0)
    persistent_time = time.perf_counter() - start

    rows = [
        {"net": name, "method": "relumilp (lp stage, incl. model building)", "lps": ours_solves,
         "seconds": ours_time, "lps_per_s": ours_solves / ours_time},
        {"net": name, "method": "relumilp (solver loop only)", "lps": ours_solves, "seconds": pure_time,
         "lps_per_s": ours_solves / pure_time},
        {"net": name, "method": "pyomo-naive (model per neuron)", "lps": naive_solves, "seconds": naive_time,
         "lps_per_s": naive_solves / naive_time},
        {"net": name, "method": f"pyomo-persistent (model per layer, {len(models)} models)", "lps": naive_solves,
         "seconds": persistent_time, "lps_per_s": naive_solves / persistent_time},
    ]
    base = rows[0]["lps_per_s"]
    for row in rows:
        row["speedup_of_relumilp"] = base / row["lps_per_s"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "obbt_throughput.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"LP-OBBT throughput on {name} ({ours_solves} LPs; Pyomo loops on a sample of {len(pick)} neurons)\n")
    print("| method | LPs | seconds | LPs/s | relumilp speed-up |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['method']} | {row['lps']} | {row['seconds']:.2f} | {row['lps_per_s']:.1f} | "
              f"{row['speedup_of_relumilp']:.1f}x |")
    print(f"\nmax relative difference of the Pyomo optima vs relumilp's safe bounds: {worst:.2e}")
    print(f"LP early stops: {stats['lp']['early']}, simplex iterations: {stats['lp']['iterations']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
