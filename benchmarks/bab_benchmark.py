"""Time to a certified optimum, side by side in one run: the branch-and-bound engine vs one big-M MILP.

Networks: Peaks surrogates 2-32x2, 2-64x2, 2-64x3 (plain MSE training, fixed seed:
``bounds_benchmark.train_peaks``), a Rosenbrock surrogate 4-64x3 (``relumilp.train.fit_surrogate`` on
``problems.rosenbrock_problem`` data, seed 0), ACAS Xu 1_1 over property 1's input box (output y0;
skipped without ``../shared/data/acasxu``) and a random 8-100x3 ReLU network (He-scaled normal weights,
seed 0). Each network is optimised in each ``--senses`` (default: the historical one per net -- max,
Rosenbrock min -- or ``min,max``) by every ``--methods`` entry:

* ``bab`` -- ``relumilp.optimize(method="bab")``, the engine (``branching="auto"``; ``bab-input`` /
  ``bab-relu`` force input-box or neuron branching; root bounds ``--bab-tighten``, default interval);
* ``milp-interval`` / ``milp-lp`` -- ``method="milp"`` with ``tighten="interval"`` / ``"lp"``;
* ``omlt`` -- OMLT's ``ReluBigMFormulation`` + HiGHS through Pyomo (``omlt_peer.py``; skipped with a
  note when OMLT is not installed);

each under ``--time-limit`` seconds. Rows go to ``benchmarks/results/bab.csv`` as they finish; a
side-by-side table (seconds, status, objective, bound per method) is printed at the end. Timings are
only meaningful on a quiet machine (run with ``nice`` on a shared one).

    python benchmarks/bab_benchmark.py [--nets peaks-2-64x3,random-8-100x3] [--senses min,max]
        [--methods bab,milp-interval,milp-lp,omlt] [--time-limit 600]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bounds_benchmark import problems as peaks_and_acas  # noqa: E402
from problems import rosenbrock_problem  # noqa: E402

from relumilp.domain import InputDomain  # noqa: E402
from relumilp.ir import Network  # noqa: E402
from relumilp.optimization import optimize  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FIELDS = ["net", "method", "tighten", "status", "objective", "bound", "gap", "seconds", "boxes", "leaves",
          "leaf_milp_s", "max_depth"]
NETS = "peaks-2-32x2,peaks-2-64x2,peaks-2-64x3,rosenbrock-4-64x3,acasxu-1_1,random-8-100x3"


def rosenbrock_net() -> Network:
    """The Rosenbrock surrogate, trained once (deterministic seed) and kept in ``results/cache``."""
    from relumilp.frontends import load_network
    from relumilp.train import fit_surrogate

    cached = RESULTS / "cache" / "rosenbrock-4-64x3.npz"
    if cached.is_file():
        return Network.load(cached)
    problem = rosenbrock_problem()
    X, Y, _, _ = problem.data(0)
    model, _ = fit_surrogate(X, Y, hidden=(64, 64, 64), epochs=200, seed=0, device="cpu", val_split=0.0,
                             bounds=(problem.lower, problem.upper))
    net = load_network(model)
    net.save(cached)
    return net


def random_net(n_in: int = 8, width: int = 100, depth: int = 3, seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    sizes = [n_in, *[width] * depth, 1]
    layers = [(rng.normal(size=(o, i)) * np.sqrt(2.0 / i), rng.normal(scale=0.1, size=o))
              for i, o in zip(sizes[:-1], sizes[1:])]
    return Network.sequential(layers, "relu", name=f"random-{n_in}-{width}x{depth}")


def cases(names):
    """``(name, make_network, domain, sense)`` for each requested network."""
    out = [(name, make, domain, "max") for name, make, domain in peaks_and_acas(names)]
    if "rosenbrock-4-64x3" in names:
        out.append(("rosenbrock-4-64x3", rosenbrock_net, InputDomain.box(-2.0, 2.0, 4), "min"))
    if "random-8-100x3" in names:
        out.append(("random-8-100x3", random_net, InputDomain.box(-1.0, 1.0, 8), "max"))
    order = {name: i for i, name in enumerate(names)}
    return sorted(out, key=lambda case: order[case[0]])


def run(net, domain, sense, method, tighten, time_limit, branching="auto") -> dict:
    started = time.perf_counter()
    result = optimize(net, domain, **{"maximize" if sense == "max" else "minimize": 0}, method=method,
                      tighten=tighten, time_limit=time_limit, branching=branching)
    s = result.stats
    return {"status": result.status, "objective": result.objective,
            "bound": result.bound, "gap": result.gap, "seconds": round(time.perf_counter() - started, 3),
            "boxes": s.get("boxes"), "leaves": s.get("leaves"), "max_depth": s.get("max_depth"),
            "leaf_milp_s": None if "leaf_milp_time" not in s else round(s["leaf_milp_time"], 3)}


def run_omlt(net, domain, sense, time_limit) -> dict:
    """OMLT's big-M formulation (interval bounds) solved by HiGHS through Pyomo's appsi interface."""
    import pyomo.environ as pyo
    from omlt_peer import omlt_block

    started = time.perf_counter()
    model = pyo.ConcreteModel()
    try:
        block = omlt_block(model, net, domain)
    except NotImplementedError as error:
        return {"status": f"n/a ({error})", "seconds": 0.0}
    model.obj = pyo.Objective(expr=block.outputs[0], sense=pyo.maximize if sense == "max" else pyo.minimize)
    solver = pyo.SolverFactory("appsi_highs")
    solver.config.time_limit = time_limit
    solver.config.load_solution = False
    res = solver.solve(model)
    bound = res.problem.upper_bound if sense == "max" else res.problem.lower_bound
    objective = res.problem.lower_bound if sense == "max" else res.problem.upper_bound
    return {"status": str(res.solver.termination_condition), "objective": objective, "bound": bound,
            "seconds": round(time.perf_counter() - started, 3)}


METHODS = {"bab": ("bab", "interval", "auto"), "bab-input": ("bab", "interval", "input"),
           "bab-relu": ("bab", "interval", "relu"), "milp-interval": ("milp", "interval", "auto"),
           "milp-lp": ("milp", "lp", "auto")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default=NETS)
    parser.add_argument("--senses", default="default", help="'default' (max; Rosenbrock min), or e.g. min,max")
    parser.add_argument("--methods", default="bab,milp-interval,milp-lp,omlt")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per run")
    parser.add_argument("--bab-tighten", default="interval", help="root bound method for bab")
    parser.add_argument("--out", default=str(RESULTS / "bab.csv"))
    args = parser.parse_args()
    names = args.nets.split(",")
    methods = args.methods.split(",")
    if "omlt" in methods:
        from omlt_peer import omlt_available

        if not omlt_available():
            print("OMLT is not installed (pip install omlt): no omlt column", file=sys.stderr)
            methods.remove("omlt")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["sense", *FIELDS], extrasaction="ignore")
        writer.writeheader()
        for name, make, domain, default_sense in cases(names):
            net = make()
            senses = [default_sense] if args.senses == "default" else args.senses.split(",")
            for sense in senses:
                for label in methods:
                    if label == "omlt":
                        row = run_omlt(net, domain, sense, args.time_limit)
                        row.update(method="omlt", tighten="interval")
                    else:
                        method, tighten, branching = METHODS[label]
                        tighten = args.bab_tighten if method == "bab" else tighten
                        row = run(net, domain, sense, method, tighten, args.time_limit, branching)
                        row.update(method=label, tighten=tighten)
                    row.update(net=name, sense=sense)
                    writer.writerow(row)
                    handle.flush()
                    rows.append(row)
                    print(f"{name:20s} {sense} {label:13s} {row['status']:11s} {row['seconds']:9.2f}s", file=sys.stderr)
    fmt = lambda v: "-" if v is None else f"{v:.6g}"
    print("| net | sense | " + " | ".join(f"{m} (s, status, objective, bound)" for m in methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    for key in dict.fromkeys((row["net"], row["sense"]) for row in rows):
        cells = []
        for m in methods:
            r = next((r for r in rows if (r["net"], r["sense"]) == key and r["method"] == m), None)
            cells.append("-" if r is None else f"{r['seconds']:.1f}, {r['status']}, {fmt(r.get('objective'))}, {fmt(r.get('bound'))}")
        print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
