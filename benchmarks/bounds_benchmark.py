"""Bound tightening and scaling: what each bound method costs and what it buys at solve time.

Networks: Peaks surrogates 2-32x2, 2-64x2, 2-64x3 (trained here with torch on MATLAB's Peaks function
over [-3, 3]^2, fixed seed) and ACAS Xu 1_1 over the input box of property 1 (read from
``prop_1.vnnlib``; skipped when ``../shared/data/acasxu`` is absent). For each network and bound method
(interval, symbolic, lp, milp): time to compute the bounds, unstable neurons, mean big-M, and the HiGHS
time to maximise output 0 over the big-M MILP (HiGHS default threads, time limit), with and without a-posteriori
scaling. Rows are appended to ``benchmarks/results/bounds.csv`` as they finish; a Markdown table is
printed at the end.

    python benchmarks/bounds_benchmark.py [--nets peaks-2-32x2,acasxu-1_1] [--time-limit 60]
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import highspy
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from obbt_throughput import ACAS, vnnlib_box  # noqa: E402

import relumilp.bounds.obbt as obbt  # noqa: E402
import relumilp.parallel as parallel  # noqa: E402
from relumilp.bounds import compute_bounds, stability_counts  # noqa: E402
from relumilp.domain import InputDomain  # noqa: E402
from relumilp.examples import peaks_function  # noqa: E402
from relumilp.ir import Network  # noqa: E402
from relumilp.pipeline import compile_network  # noqa: E402
from relumilp.scaling import big_m_stats  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FIELDS = ["net", "method", "bounds_s", "unstable", "mean_M", "max_M", "coef_range", "scale", "binaries",
          "solve_s", "status", "objective", "dual_bound", "gap", "nodes"]


def train_peaks(width: int, depth: int, seed: int = 0, epochs: int = 3000) -> Network:
    """A 2-width^depth-1 ReLU surrogate of Peaks on [-3, 3]^2 (full-batch Adam, deterministic)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    X = rng.uniform(-3.0, 3.0, size=(2000, 2))
    y = peaks_function(X[:, 0], X[:, 1])
    Xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)[:, None]
    layers, n_in = [], 2
    for _ in range(depth):
        layers += [torch.nn.Linear(n_in, width), torch.nn.ReLU()]
        n_in = width
    model = torch.nn.Sequential(*layers, torch.nn.Linear(n_in, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.mean((model(Xt) - yt) ** 2)
        loss.backward()
        opt.step()
        sched.step()
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    dense = [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy()) for m in linears]
    net = Network.sequential(dense, "relu", name=f"peaks-2-{width}x{depth}")
    net.train_mse = float(loss.detach())
    return net


def problems(names):
    out = []
    for name in names:
        if name.startswith("peaks-2-"):
            width, depth = name.removeprefix("peaks-2-").split("x")
            out.append((name, lambda w=int(width), d=int(depth): train_peaks(w, d), InputDomain.box(-3.0, 3.0, 2)))
        elif name == "acasxu-1_1":
            if not ACAS.is_dir():
                print("ACAS Xu data not found; skipping", file=sys.stderr)
                continue
            from relumilp.frontends import load_network

            # property 1's input box (normalised units), read from the VNN-LIB file
            out.append((name, lambda: load_network(ACAS / "ACASXU_run2a_1_1_batch_2000.onnx"),
                        vnnlib_box(ACAS / "prop_1.vnnlib")))
    return out


def solve(compiled, time_limit: float) -> dict:
    objective = np.zeros(compiled.network.output_size)
    objective[0] = 1.0
    h = compiled.to_highs(objective=objective, sense="max")
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    start = time.perf_counter()
    h.run()
    seconds = time.perf_counter() - start
    info = h.getInfo()
    status = h.getModelStatus()
    objective_value = info.objective_function_value if info.primal_solution_status else math.nan
    return {
        "solve_s": seconds,
        "status": {highspy.HighsModelStatus.kOptimal: "optimal",
                   highspy.HighsModelStatus.kTimeLimit: "time_limit"}.get(status, str(status)),
        "objective": objective_value,
        "dual_bound": info.mip_dual_bound,
        "gap": info.mip_gap,
        "nodes": info.mip_node_count,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="peaks-2-32x2,peaks-2-64x2,peaks-2-64x3,acasxu-1_1")
    parser.add_argument("--methods", default="interval,symbolic,lp,milp")
    parser.add_argument("--scales", default="none,unit", help="scaling rules to solve with (none = no scaling)")
    parser.add_argument("--time-limit", type=float, default=60.0, help="HiGHS time limit per MILP solve")
    parser.add_argument("--milp-time-limit", type=float, default=1.0, help="seconds per MILP-OBBT solve")
    parser.add_argument("--workers", type=int, default=None, help="processes for LP/MILP OBBT")
    parser.add_argument("--out", default=str(RESULTS / "bounds.csv"))
    parser.add_argument("--append", action="store_true", help="append to the CSV instead of overwriting")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not args.append or not out.exists():
        with open(out, "w", newline="") as handle:
            csv.DictWriter(handle, fieldnames=FIELDS).writeheader()
    rows = []
    workers = args.workers if args.workers is not None else obbt.default_workers()
    if workers > 1:
        # the worker processes start once per process; keep that out of the first LP row's time
        clock = time.perf_counter()
        parallel.shared_process_pool(workers).submit(int, 0).result()
        print(f"{workers} worker processes started in {time.perf_counter() - clock:.2f} s", file=sys.stderr)
    for name, make, domain in problems(args.nets.split(",")):
        net = make()
        if hasattr(net, "train_mse"):
            print(f"{name}: trained, MSE {net.train_mse:.4f}", file=sys.stderr, flush=True)
        for method in args.methods.split(","):
            options = {}
            if method in ("lp", "milp"):
                options = {"workers": workers, "milp_time_limit": args.milp_time_limit}
            start = time.perf_counter()
            bounds = compute_bounds(net, domain, method, **options)
            bounds_s = time.perf_counter() - start
            unstable = sum(r["unstable"] for r in stability_counts(net, bounds))
            for rule in args.scales.split(","):
                compiled = compile_network(net, domain, bounds=bounds, scale=False if rule == "none" else rule)
                stats = big_m_stats(compiled.network, compiled.bounds)
                row = {"net": name, "method": method, "bounds_s": bounds_s, "unstable": unstable,
                       "mean_M": stats["mean"], "max_M": stats["max"], "coef_range": stats["coef_range"],
                       "scale": rule, "binaries": compiled.milp.num_binaries}
                row.update(solve(compiled, args.time_limit))
                rows.append(row)
                with open(out, "a", newline="") as handle:
                    csv.DictWriter(handle, fieldnames=FIELDS).writerow(row)
                print(f"{name} {method} scale={rule}: bounds {bounds_s:.2f}s, {unstable} unstable, "
                      f"solve {row['solve_s']:.2f}s {row['status']}", file=sys.stderr, flush=True)
    print("| net | method | bounds s | unstable | mean M | max M | coef range | scale | solve s | status | "
          "objective | dual bound | nodes |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['net']} | {r['method']} | {r['bounds_s']:.2f} | {r['unstable']} | {r['mean_M']:.3g} | "
              f"{r['max_M']:.3g} | {r['coef_range']:.3g} | {r['scale']} | {r['solve_s']:.2f} | {r['status']} | "
              f"{r['objective']:.6g} | {r['dual_bound']:.6g} | {r['nodes']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
