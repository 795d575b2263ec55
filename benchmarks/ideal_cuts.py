"""Big-M vs big-M + ideal ReLU cuts (``optimize(..., formulation="ideal_cuts")``) on the Peaks surrogates.

Networks: the Peaks surrogates 2-32x2 and 2-64x2 of :mod:`benchmarks.bounds_benchmark` (trained with
torch, fixed seed; cached under ``benchmarks/results/cache/``). LP bounds are computed once per network
and shared by both formulations; each row maximises output 0 with a time limit. Columns: the root LP
bound (of the big-M relaxation, and with the cuts), cuts added and rounds, the cut loop's and the
solve's seconds, the certified status, objective, bound, nodes, and the time to a certified optimum
(cut loop + solve; blank when the limit was hit). Writes ``benchmarks/results/ideal_cuts.csv`` and
prints a Markdown table.

    python -m benchmarks.ideal_cuts [--nets peaks-2-32x2 peaks-2-64x2] [--time-limit 60]
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

from bounds_benchmark import problems  # noqa: E402

from benchmarks.study import _loadavg, _md_table  # noqa: E402
from relumilp._io import any_file, atomic_path  # noqa: E402
from relumilp.bounds import compute_bounds  # noqa: E402
from relumilp.formulation.ideal import root_cuts  # noqa: E402
from relumilp.ir import Network  # noqa: E402
from relumilp.optimization import optimize  # noqa: E402
from relumilp.pipeline import compile_network  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FIELDS = ["net", "formulation", "root_bound", "cuts", "rounds", "cut_s", "solve_s", "status", "objective",
          "bound", "nodes", "certified_s"]


def cached(name: str, train) -> Network:
    """The trained network ``name`` from the cache (trained and stored on first use)."""
    path = RESULTS / "cache" / f"ideal-{name}.npz"
    if path.is_file():
        return Network.load(path)
    net = train()
    path.parent.mkdir(parents=True, exist_ok=True)
    net.save(path)
    return net


def run(names, time_limit: float) -> list[dict]:
    rows = []
    for name, train, domain in problems(names):
        net = cached(name, train)
        bounds = compute_bounds(net, domain, "lp")
        compiled = compile_network(net, domain, bounds=bounds)
        _, root = root_cuts(compiled.network, compiled.milp.with_objective(np.ones(1), "max"), rounds=0)
        for formulation in ("bigm", "ideal_cuts"):
            result = optimize(net, domain, maximize=0, bounds=bounds, time_limit=time_limit, formulation=formulation)
            cuts = result.stats.get("cuts", {})
            spent = result.times.get("cuts", 0.0) + result.times["solve"]
            rows.append({
                "net": name, "formulation": formulation,
                "root_bound": cuts.get("root_bound_after", root["root_bound_before"]),
                "cuts": cuts.get("added", 0), "rounds": cuts.get("rounds", 0),
                "cut_s": result.times.get("cuts", 0.0), "solve_s": result.times["solve"], "status": result.status,
                "objective": result.objective, "bound": result.bound, "nodes": result.stats.get("nodes"),
                "certified_s": spent if result.status == "optimal" else None,
            })
            print(rows[-1], file=sys.stderr)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=["peaks-2-32x2", "peaks-2-64x2"])
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per solve (cut loop included)")
    args = parser.parse_args(argv)
    started, load = time.strftime("%Y-%m-%d %H:%M"), _loadavg()
    rows = run(args.nets, args.time_limit)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with atomic_path(RESULTS / "ideal_cuts.csv", ours=any_file) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{started}, time limit {args.time_limit:g} s, load average at start {load}, now {_loadavg()}\n")
    print("\n".join(_md_table(
        ["network", "formulation", "root LP bound", "cuts (rounds)", "cut loop s", "solve s", "status",
         "objective", "bound", "nodes", "certified optimum s"],
        [[r["net"], r["formulation"], r["root_bound"], f"{r['cuts']} ({r['rounds']})", r["cut_s"], r["solve_s"],
          r["status"], r["objective"], r["bound"], r["nodes"], r["certified_s"]] for r in rows])))


if __name__ == "__main__":
    main()
