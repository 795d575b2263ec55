"""Time to a certified optimum: branch and bound over input boxes (``method="bab"``) vs one big-M MILP.

Networks: Peaks surrogates 2-32x2, 2-64x2, 2-64x3 (plain MSE training, fixed seed:
``bounds_benchmark.train_peaks``; maximise), a Rosenbrock surrogate 4-64x3 (``relumilp.train.fit_surrogate``
on ``problems.rosenbrock_problem`` data, seed 0; minimise), ACAS Xu 1_1 over property 1's input box
(maximise y0; skipped without ``../shared/data/acasxu``) and a random 8-100x3 ReLU network (He-scaled
normal weights, seed 0; maximise). Each runs ``relumilp.optimize`` with ``method="bab"`` (root bounds:
``--bab-tighten``, default interval; the engine adds symbolic bounds per box) and ``method="milp"``
(``tighten="lp"``), each under ``--time-limit`` seconds. Rows go to ``benchmarks/results/bab.csv`` as they
finish; a side-by-side table is printed at the end. Timings are only meaningful on a quiet machine.

    python benchmarks/bab_benchmark.py [--nets peaks-2-32x2,random-8-100x3] [--time-limit 600]
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
    from relumilp.frontends import load_network
    from relumilp.train import fit_surrogate

    problem = rosenbrock_problem()
    X, Y, _, _ = problem.data(0)
    model, _ = fit_surrogate(X, Y, hidden=(64, 64, 64), epochs=200, seed=0, device="cpu", val_split=0.0,
                             bounds=(problem.lower, problem.upper))
    return load_network(model)


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


def run(net, domain, sense, method, tighten, time_limit) -> dict:
    started = time.perf_counter()
    result = optimize(net, domain, **{"maximize" if sense == "max" else "minimize": 0}, method=method,
                      tighten=tighten, time_limit=time_limit)
    s = result.stats
    return {"method": method, "tighten": tighten, "status": result.status, "objective": result.objective,
            "bound": result.bound, "gap": result.gap, "seconds": round(time.perf_counter() - started, 3),
            "boxes": s.get("boxes"), "leaves": s.get("leaves"), "max_depth": s.get("max_depth"),
            "leaf_milp_s": None if "leaf_milp_time" not in s else round(s["leaf_milp_time"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default=NETS)
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per run")
    parser.add_argument("--bab-tighten", default="interval", help="root bound method for bab")
    parser.add_argument("--out", default=str(RESULTS / "bab.csv"))
    args = parser.parse_args()
    names = args.nets.split(",")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        for name, make, domain, sense in cases(names):
            net = make()
            for method, tighten in (("bab", args.bab_tighten), ("milp", "lp")):
                row = {"net": name, **run(net, domain, sense, method, tighten, args.time_limit)}
                writer.writerow(row)
                handle.flush()
                rows.append(row)
                print(f"{name:20s} {method:5s} {row['status']:11s} {row['seconds']:9.2f}s", file=sys.stderr)
    fmt = lambda v: "-" if v is None else f"{v:.6g}"
    print("| net | bab status | bab s | bab objective | bab bound | boxes | leaves | milp status | milp s | milp objective | milp bound |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in dict.fromkeys(row["net"] for row in rows):
        bab, milp = (next(r for r in rows if r["net"] == name and r["method"] == m) for m in ("bab", "milp"))
        print(f"| {name} | {bab['status']} | {bab['seconds']:.2f} | {fmt(bab['objective'])} | {fmt(bab['bound'])} | "
              f"{bab['boxes']} | {bab['leaves']} | {milp['status']} | {milp['seconds']:.2f} | {fmt(milp['objective'])} | "
              f"{fmt(milp['bound'])} |")


if __name__ == "__main__":
    main()
