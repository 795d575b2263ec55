"""What the bound engine buys inside a user's Pyomo model (issue #13, point 3).

Branch and bound does not apply to a user's own Pyomo model; what the engine can still give the MILP
is (a) tighter bounds -- ``add_network(tighten=...)`` with ``interval``, ``symbolic``, ``alpha``
(optimised relaxations on every node) or ``lp`` (LP-OBBT after alpha) -- and (b) its incumbent as a MIP
start (:meth:`relumilp.api.NetworkBlockData.warm_start_from_search`). This benchmark embeds two
surrogates with ``relumilp.add_network`` in Pyomo models with further constraints and measures the time
to the certified optimum (bounds + build + search + solve; HiGHS and torch with one thread; one time limit per
run) for every bound method, with and without the search start. Without it, ``relumilp.solve`` starts
HiGHS from the forward pass at the domain's centre (its default).

* **peaks** -- a Peaks surrogate 2-64-64-64-1 (:func:`benchmarks.bounds_benchmark.train_peaks`, plain
  MSE, seed 0) on ``[-3, 3]^2``: maximise ``y - 0.1 x0 - 0.1 x1`` (a cost term) subject to
  ``x0 + 2 x1 <= 4`` (a row coupling the inputs) and ``y >= 0`` (an output bound);
* **reformer** -- a ReLU reformer surrogate 2-32-32-2 (:func:`relumilp.train.fit_surrogate` on
  :func:`benchmarks.problems.reformer` data, seed 0; needs ``reformer.csv``): maximise H2 minus a
  steam cost ``0.02 * NG steam ratio`` subject to the problem's output constraint ``N2 <= median N2``
  and ``bypass fraction + NG steam ratio <= 1.6``. The network's own maximiser of H2 breaks the N2
  limit, so there the search start is only a hint;
* **reformer64** -- the same model with a reformer surrogate 2-64-64-2 (harder).

Run (about 50 min on 2 shared cores)::

    nice python -m benchmarks.pyomo_embedding [--problems peaks reformer reformer64] [--time-limit 120]

writes ``benchmarks/results/pyomo_embedding.csv`` and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import pyomo.environ as pyo
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import relumilp  # noqa: E402
from relumilp import Network  # noqa: E402
from relumilp.limits import Deadline  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("interval", "symbolic", "alpha", "lp")
FIELDS = ["problem", "tighten", "start", "status", "objective", "bound", "gap", "binaries", "bounds_s", "build_s",
          "search_s", "search_objective", "solve_s", "total_s"]


def surrogate(name: str) -> Network:
    """The network of problem ``name``, trained deterministically (cached in ``benchmarks/results/cache``)."""
    cached = RESULTS / "cache" / f"pyomo-{name}.npz"
    if cached.exists():
        return Network.load(cached)
    if name == "peaks-2-64x3":
        from benchmarks.bounds_benchmark import train_peaks

        net = train_peaks(64, 3)
    elif name.startswith("reformer-2-"):  # reformer-2-WIDTHxDEPTH
        from benchmarks.problems import get_problem
        from relumilp.frontends import load_network
        from relumilp.train import fit_surrogate

        width, depth = map(int, name.split("-")[-1].split("x"))
        X, Y, _, _ = get_problem("reformer").data(0)
        model, _ = fit_surrogate(X, Y, hidden=(width,) * depth, epochs=150, batch_size=256, lr=3e-3, seed=0,
                                 device="cpu", progress=False)
        net = load_network(model)
    else:
        raise ValueError(name)
    cached.parent.mkdir(parents=True, exist_ok=True)
    net.save(cached)
    return net


def peaks_model(net: Network, tighten: str, deadline: Deadline):
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(2), bounds=(-3.0, 3.0))
    m.y = pyo.Var()
    block = relumilp.add_network(m, net, inputs=m.x, outputs=m.y, tighten=tighten, time_limit=deadline,
                                 **({"workers": 1} if tighten == "lp" else {}))
    m.couple = pyo.Constraint(expr=m.x[0] + 2.0 * m.x[1] <= 4.0)
    m.floor = pyo.Constraint(expr=m.y >= 0.0)
    m.obj = pyo.Objective(expr=m.y - 0.1 * m.x[0] - 0.1 * m.x[1], sense=pyo.maximize)
    return m, block, 0


def reformer_model(net: Network, tighten: str, deadline: Deadline):
    from benchmarks.problems import get_problem

    problem = get_problem("reformer")
    (limit,) = [c for c in problem.constraints if c.index == 1]
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(2), bounds=lambda _, i: (float(problem.lower[i]), float(problem.upper[i])))
    m.y = pyo.Var(range(2))
    block = relumilp.add_network(m, net, inputs=m.x, outputs=m.y, tighten=tighten, time_limit=deadline,
                                 **({"workers": 1} if tighten == "lp" else {}))
    m.n2 = pyo.Constraint(expr=m.y[1] <= limit.limit)
    m.couple = pyo.Constraint(expr=m.x[0] + m.x[1] <= 1.6)
    m.obj = pyo.Objective(expr=m.y[0] - 0.02 * m.x[1], sense=pyo.maximize)
    return m, block, problem.objective_index


PROBLEMS = {"peaks": ("peaks-2-64x3", peaks_model), "reformer": ("reformer-2-32x2", reformer_model),
            "reformer64": ("reformer-2-64x2", reformer_model)}


def run(problem: str, tighten: str, start: bool, time_limit: float, search_limit: float) -> dict:
    name, build = PROBLEMS[problem]
    net = surrogate(name)
    began = time.perf_counter()
    deadline = Deadline.after(time_limit)
    m, block, output = build(net, tighten, deadline)
    built = time.perf_counter()
    search_objective = None
    if start:
        found = block.warm_start_from_search(maximize=output, threads=1,
                                             time_limit=max(0.01, min(search_limit, deadline.remaining())))
        search_objective = found.objective
    searched = time.perf_counter()
    result = relumilp.solve(m, time_limit=max(0.01, deadline.remaining()), threads=1)
    done = time.perf_counter()
    times = block.compiled.times
    return {"problem": problem, "tighten": tighten, "start": "search" if start else "centre", "status": result.status,
            "objective": result.objective, "bound": result.bound, "gap": result.gap,
            "binaries": block.stats()["binaries"], "bounds_s": times.get("bounds", 0.0),
            "build_s": built - began - times.get("bounds", 0.0), "search_s": searched - built,
            "search_objective": search_objective, "solve_s": done - searched, "total_s": done - began}


def table(rows: list[dict]) -> str:
    def fmt(v, digits=4):
        return "—" if v is None else (f"{v:.{digits}g}" if isinstance(v, float) else str(v))

    lines = ["| problem | tighten | MIP start | binaries | bounds s | search s | solve s | total s | status | objective | bound |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        total = f"{r['total_s']:.1f}" if r["status"] == "optimal" else f"> {r['total_s']:.0f}"
        lines.append(f"| {r['problem']} | {r['tighten']} | {r['start']} | {r['binaries']} | {r['bounds_s']:.2f} | "
                     f"{r['search_s']:.2f} | {r['solve_s']:.1f} | {total} | {r['status']} | {fmt(r['objective'], 7)} | "
                     f"{fmt(r['bound'], 7)} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per run, everything included")
    parser.add_argument("--search-limit", type=float, default=30.0, help="seconds for the engine's search start")
    parser.add_argument("--out", type=Path, default=RESULTS / "pyomo_embedding.csv")
    args = parser.parse_args(argv)
    # one thread for the bound engine as for HiGHS: on a shared machine torch's spinning intra-op threads
    # cost more than they give (ACAS Xu 1_1 symbolic bounds: 2.2 s CPU with 2 threads, 0.03 s with 1)
    torch.set_num_threads(1)
    rows = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for problem in args.problems:
            for tighten in args.methods:
                for start in (False, True):
                    row = run(problem, tighten, start, args.time_limit, args.search_limit)
                    rows.append(row)
                    writer.writerow(row)
                    handle.flush()
                    print(table([row]).splitlines()[-1], flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
