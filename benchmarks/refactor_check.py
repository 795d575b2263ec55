"""Before/after check of a refactor: two relumilp source trees measured side by side in one run.

    python benchmarks/refactor_check.py --before ../main --after . [--repeats 3] [--time-limit 60] [--quick]

Every measurement runs in a fresh subprocess with ``PYTHONPATH=<tree>`` (so each tree imports only its
own code), alternating before/after and swapping which goes first on every repeat; the best time of
the repeats is kept. Measurements:

* ``build`` -- ``relumilp.api.add_network`` of the random 784-256x6-10 MLP over ``[0, 1]^784``
  (as in :mod:`benchmarks.build_benchmark`): interval bounds, matrix-form MILP and the Pyomo block;
* ``obbt`` -- ``compute_bounds(net, domain, "lp", workers=1)`` on ACAS Xu 1_1 over the property-1
  box (as in :mod:`benchmarks.obbt_throughput`; torch warmed up by a symbolic pass first);
* ``verify`` -- ``relumilp.verify.verify`` on ACAS Xu properties 1-4 for five networks, with a
  per-instance time limit (one HiGHS thread).

Each row also records an answer (model size, unstable neurons and output bound widths, the verdict):
the two trees must agree, and the ``agree`` column says whether they do. ``--quick`` runs a smaller
network (784-64x2-10) and one verification instance. ACAS Xu rows are skipped when the data
(``../shared/data/acasxu`` next to the repository, or ``$RELUMILP_SHARED_DATA/acasxu``) is absent.
Prints a Markdown table and writes ``benchmarks/results/refactor_check.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
RESULTS = HERE.parent / "results"
SHARED = Path(os.environ.get("RELUMILP_SHARED_DATA", HERE.parents[2] / "shared" / "data"))
FULL_SIZES = [784] + [256] * 6 + [10]
QUICK_SIZES = [784, 64, 64, 10]
FULL_NETS = ["1_1", "2_1", "3_3", "4_5", "5_9"]
PROPERTIES = [1, 2, 3, 4]
QUICK_INSTANCES = [("1_1", 3)]
#: a subprocess gets this much longer than its own time limit before it is killed
GRACE = 120.0


# -- the measurements (run in the subprocess, against the tree on PYTHONPATH) ---------------------------


def measure_build(sizes: list[int]) -> dict:
    import numpy as np
    import pyomo.environ as pyo

    from relumilp.api import add_network
    from relumilp.domain import InputDomain
    from relumilp.ir import Network

    rng = np.random.default_rng(0)  # the network of benchmarks/build_benchmark.py
    layers = [(rng.normal(0, np.sqrt(2.0 / i), size=(o, i)), rng.normal(0, 0.01, size=o))
              for i, o in zip(sizes[:-1], sizes[1:])]
    net = Network.sequential(layers, "relu")
    domain = InputDomain.box(0.0, 1.0, sizes[0])
    model = pyo.ConcreteModel()
    start = time.perf_counter()
    block = add_network(model, net, input_bounds=domain)
    seconds = time.perf_counter() - start
    milp = block.compiled.milp
    return {"seconds": seconds, "answer": f"{milp.num_columns} cols, {milp.num_rows} rows, {milp.num_binaries} bin",
            "compile_s": sum(block.compiled.times.values())}


def _acas(net_id: str, prop: int):
    from relumilp.frontends import load_network
    from relumilp.frontends.vnnlib import read_vnnlib

    folder = SHARED / "acasxu"
    net = load_network(folder / f"ACASXU_run2a_{net_id}_batch_2000.onnx")
    return net, read_vnnlib(folder / f"prop_{prop}.vnnlib", net.input_size, net.output_size)


def measure_obbt() -> dict:
    import numpy as np

    from relumilp.bounds import compute_bounds, stability_counts

    net, prop = _acas("1_1", 1)
    domain = prop.regions()[0][0]
    compute_bounds(net, domain, "symbolic")  # warm up torch
    stats: dict = {}
    start = time.perf_counter()
    bounds = compute_bounds(net, domain, "lp", workers=1, stats=stats)
    seconds = time.perf_counter() - start
    unstable = sum(r["unstable"] for r in stability_counts(net, bounds))
    lower, upper = bounds[net.output]
    width = float(np.sum(upper - lower))
    return {"seconds": seconds, "answer": f"{unstable} unstable, output width {width:.6g}",
            "lp_solves": stats.get("lp", {}).get("solves")}


def measure_verify(net_id: str, prop_id: int, time_limit: float) -> dict:
    from relumilp.verify import verify

    net, prop = _acas(net_id, prop_id)
    start = time.perf_counter()
    result = verify(net, prop, time_limit=time_limit, threads=1)
    return {"seconds": time.perf_counter() - start, "answer": result.result}


def worker(spec: dict) -> None:
    """Run one measurement and print its JSON as the last stdout line."""
    import relumilp

    kind = spec["kind"]
    if kind == "build":
        row = measure_build(spec["sizes"])
    elif kind == "obbt":
        row = measure_obbt()
    else:
        row = measure_verify(spec["net"], spec["prop"], spec["time_limit"])
    row["relumilp"] = str(Path(relumilp.__file__).resolve().parents[1])
    print(json.dumps(row))


# -- the driver ------------------------------------------------------------------------------------------


def run_in(tree: Path, spec: dict, timeout: float, threads: int) -> dict:
    """One measurement in a subprocess importing relumilp from ``tree`` only."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)  # the same thread budget for both trees (torch, BLAS)
    # cwd outside both trees so that nothing but PYTHONPATH decides which relumilp is imported
    command = [sys.executable, str(HERE), "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(command, env=env, cwd=HERE.parents[2], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"seconds": None, "answer": f"killed after {timeout:.0f} s"}
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"seconds": None, "answer": f"error: {tail[:120]}"}
    row = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(row["relumilp"]) != tree.resolve():
        raise SystemExit(f"the subprocess imported relumilp from {row['relumilp']}, not {tree}")
    return row


def tasks(args) -> list[tuple[str, dict, float, int]]:
    """``(label, spec, subprocess timeout, repeats)`` of every measurement."""
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    out = [(f"build {'-'.join(map(str, sizes))}", {"kind": "build", "sizes": sizes}, 1800.0, args.repeats)]
    if not (SHARED / "acasxu").is_dir():
        print(f"ACAS Xu data not found at {SHARED / 'acasxu'}: OBBT and verify rows skipped", file=sys.stderr)
        return out
    out.append(("obbt lp acasxu 1_1 prop1", {"kind": "obbt"}, 1800.0, args.repeats))
    instances = QUICK_INSTANCES if args.quick else [(n, p) for n in FULL_NETS for p in PROPERTIES]
    for net_id, prop_id in instances:
        spec = {"kind": "verify", "net": net_id, "prop": prop_id, "time_limit": args.time_limit}
        out.append((f"verify {net_id} prop{prop_id}", spec, args.time_limit + GRACE, args.verify_repeats))
    return out


def agreement(kind: str, before: str, after: str) -> str:
    if before == after:
        return "yes"
    decided = {"holds", "violated"}
    if kind == "verify" and not ({before, after} <= decided):
        return "undecided"  # a time limit on one side is not a contradiction
    return "NO"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--before", type=Path, help="relumilp checkout before the change")
    parser.add_argument("--after", type=Path, help="relumilp checkout after the change")
    parser.add_argument("--repeats", type=int, default=3, help="runs of build and OBBT per tree (the best is kept)")
    parser.add_argument("--verify-repeats", type=int, default=1, help="runs of each verify instance per tree")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per verify instance")
    parser.add_argument("--threads", type=int, default=1, help="OMP/MKL/BLAS threads per subprocess")
    parser.add_argument("--quick", action="store_true", help="784-64x2-10 build, OBBT, one verify instance")
    parser.add_argument("--out", type=Path, default=RESULTS / "refactor_check.csv")
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    if args.before is None or args.after is None:
        parser.error("--before and --after are required")
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    for name, tree in trees.items():
        if not (tree / "relumilp" / "__init__.py").is_file():
            parser.error(f"--{name} {tree} is not a relumilp checkout")

    rows = []
    for label, spec, timeout, repeats in tasks(args):
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        for repeat in range(repeats):
            order = ("before", "after") if repeat % 2 == 0 else ("after", "before")
            for name in order:
                run = run_in(trees[name], spec, timeout, args.threads)
                runs[name].append(run)
                shown = "-" if run["seconds"] is None else f"{run['seconds']:.2f} s"
                print(f"{label:28s} {name:6s} repeat {repeat}: {shown}  {run['answer']}", file=sys.stderr)
        best = {}
        for name, items in runs.items():
            timed = [r for r in items if r["seconds"] is not None]
            best[name] = min(timed, key=lambda r: r["seconds"]) if timed else items[0]
        answers = {name: best[name]["answer"] for name in trees}
        if spec["kind"] != "verify" and len({r["answer"] for items in runs.values() for r in items}) > 1:
            answers = {name: " | ".join(sorted({r["answer"] for r in runs[name]})) for name in trees}
        before_s, after_s = best["before"]["seconds"], best["after"]["seconds"]
        rows.append({
            "measurement": label,
            "before_s": "" if before_s is None else f"{before_s:.3f}",
            "after_s": "" if after_s is None else f"{after_s:.3f}",
            "after/before": f"{after_s / before_s:.2f}" if before_s and after_s else "",
            "repeats": repeats,
            "before_answer": answers["before"],
            "after_answer": answers["after"],
            "agree": agreement(spec["kind"], answers["before"], answers["after"]),
            "before_all_s": " ".join("-" if r["seconds"] is None else f"{r['seconds']:.3f}" for r in runs["before"]),
            "after_all_s": " ".join("-" if r["seconds"] is None else f"{r['seconds']:.3f}" for r in runs["after"]),
        })

    columns = ["measurement", "before_s", "after_s", "after/before", "agree", "before_answer", "after_answer"]
    print(f"\nbefore: {trees['before']}\nafter:  {trees['after']}\n"
          f"best of the repeats; {args.threads} thread(s) per run, verify limit {args.time_limit:g} s\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nwrote {args.out}")
    return 1 if any(row["agree"] == "NO" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
