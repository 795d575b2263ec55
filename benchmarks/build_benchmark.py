"""Build time of the big-M model of a large MLP: relumilp vs OMLT, side by side in one run.

    python -m benchmarks.build_benchmark [--sizes 784,256,256,256,256,256,256,10] [--repeats 3]

Measures, for the same random network and input box [0, 1]^n:

* relumilp: interval bounds + matrix-form MILP (``compile``), then the Pyomo block (``pyomo``);
* OMLT (when installed): ``OmltBlock.build_formulation(ReluBigMFormulation(...))`` with its own
  interval bounds;
* optionally (``--load``), the time Pyomo's appsi HiGHS interface needs to load each model.

Writes ``benchmarks/results/build.csv`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import platform
import time
from pathlib import Path

import numpy as np
import pyomo.environ as pyo

from benchmarks.omlt_peer import omlt_available, omlt_block
from relumilp.api import add_network
from relumilp.domain import InputDomain
from relumilp.ir import Network

RESULTS = Path(__file__).resolve().parent / "results"


def random_network(sizes, seed=0) -> Network:
    rng = np.random.default_rng(seed)
    layers = [(rng.normal(0, np.sqrt(2.0 / i), size=(o, i)), rng.normal(0, 0.01, size=o))
              for i, o in zip(sizes[:-1], sizes[1:])]
    return Network.sequential(layers, "relu", name="x".join(map(str, sizes)))


def load_into_highs(model) -> float:
    from pyomo.contrib.appsi.solvers import Highs

    model.objective = pyo.Objective(expr=0.0)
    start = time.perf_counter()
    Highs().set_instance(model)
    return time.perf_counter() - start


def time_relumilp(net, domain, load: bool) -> dict:
    model = pyo.ConcreteModel()
    start = time.perf_counter()
    block = add_network(model, net, input_bounds=domain)
    total = time.perf_counter() - start
    compile_time = sum(block.compiled.times.values())
    row = {"tool": "relumilp", "build_s": total, "bounds+formulation_s": compile_time,
           "pyomo_s": total - compile_time, "binaries": block.compiled.milp.num_binaries}
    if load:
        row["highs_load_s"] = load_into_highs(model)
    return row


def time_omlt(net, domain, load: bool) -> dict:
    model = pyo.ConcreteModel()
    start = time.perf_counter()
    block = omlt_block(model, net, domain)
    total = time.perf_counter() - start
    binaries = sum(1 for v in block.component_data_objects(pyo.Var) if v.is_binary())
    row = {"tool": "omlt", "build_s": total, "binaries": binaries}
    if load:
        row["highs_load_s"] = load_into_highs(model)
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="784,256,256,256,256,256,256,10")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--load", action="store_true", help="also time loading each model into HiGHS via appsi")
    parser.add_argument("--out", default=str(RESULTS / "build.csv"))
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    net = random_network(sizes)
    domain = InputDomain.box(0.0, 1.0, sizes[0])
    tools = [("relumilp", time_relumilp)] + ([("omlt", time_omlt)] if omlt_available() else [])
    if not omlt_available():
        print("OMLT is not installed (pip install omlt): relumilp only")
    rows = []
    for repeat in range(args.repeats):
        for name, fn in tools:
            row = fn(net, domain, args.load)
            row.update(network=net.name, repeat=repeat)
            rows.append(row)
            print(f"{name:9s} repeat {repeat}: build {row['build_s']:.2f}s")
    best = {name: min(r["build_s"] for r in rows if r["tool"] == name) for name, _ in tools}
    print(f"\nnetwork {net.name}, {sum(net.hidden_sizes)} ReLUs, "
          f"{sum(w.size for w, _ in net.dense_layers())} weights; best of {args.repeats}; {platform.processor() or platform.machine()}")
    print("| tool | build (s) | binaries |" + (" HiGHS load (s) |" if args.load else ""))
    print("|---|---|---|" + ("---|" if args.load else ""))
    for name, _ in tools:
        row = min((r for r in rows if r["tool"] == name), key=lambda r: r["build_s"])
        extra = f" {row['highs_load_s']:.2f} |" if args.load else ""
        print(f"| {name} | {row['build_s']:.2f} | {row['binaries']} |{extra}")
    if "omlt" in best:
        print(f"\nrelumilp builds {best['omlt'] / best['relumilp']:.1f}x faster than OMLT")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = sorted({k for r in rows for k in r})
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
