"""Certified intervals over smooth-activation surrogates: gap against segments and against time, and the
local baselines (best of 10^5 samples polished by L-BFGS-B; Ipopt from the same starts).

Networks: Peaks surrogates 2-32-32-1 with sigmoid, tanh and SiLU activations
(``relumilp.train.fit_surrogate`` on ``problems.peaks`` data, seed 0, 150 epochs of batches of 256; maximise), and, when
``../shared/data/reformer.csv`` is present, a sigmoid reformer surrogate 2-32-32-2 (maximise the H2
output over the input box; the N2 constraint of the ReLU study is left out: ``optimize`` takes one
objective over an input domain).

Per network:

* ``segments`` -- one MILP over uniform sandwiches of the tolerance ``--tolerances`` (no refinement):
  segments, binaries, solve time and the certified interval;
* ``time`` -- :func:`relumilp.smooth.optimize_smooth` refining from tolerance 0.03 under
  ``--time-limit`` seconds: the certified gap after every round against the time;
* ``bab`` -- ``optimize(method="bab")`` (input-box branch and bound on the smooth relaxations, what
  ``optimize`` picks for these 2-input networks) asked for ``--bab-gap`` under each of ``--bab-limits``
  seconds;
* ``samples`` -- the best of 10^5 uniform samples, the best 10 polished by scipy's L-BFGS-B;
* ``ipopt`` -- Ipopt (``cyipopt.minimize_ipopt``, from the cyipopt-wheels package; central-difference
  gradients) on the reduced-space NLP from the same 10 starts, when cyipopt can be imported.

Bounds are symbolic then LP-OBBT (``tighten="lp"``). Rows go to ``benchmarks/results/smooth.csv``; the
table is printed. Timings are only meaningful on a quiet machine.

    python benchmarks/smooth.py [--nets peaks-sigmoid,peaks-tanh,peaks-silu,reformer-sigmoid]
                                [--tolerances 0.1,0.03,0.01,0.003] [--time-limit 60] [--bab-limits 10,30,60]
                                [--bab-gap 1e-4] [--experiments segments,time,bab,local] [--out CSV]
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

from problems import available, get_problem  # noqa: E402

from relumilp.bounds import compute_bounds  # noqa: E402
from relumilp.frontends import load_network  # noqa: E402
from relumilp.ir import Network  # noqa: E402
from relumilp.limits import Deadline  # noqa: E402
from relumilp.optimization import optimize  # noqa: E402
from relumilp.smooth import optimize_smooth  # noqa: E402
from relumilp.train import fit_surrogate  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FIELDS = ["net", "experiment", "setting", "status", "segments", "binaries", "seconds", "objective", "bound", "gap"]
NETS = "peaks-sigmoid,peaks-tanh,peaks-silu,reformer-sigmoid"


def surrogate(name: str):
    """``(network, domain, coefficients)`` of ``problem-activation``, trained deterministically (cached as
    ``benchmarks/results/cache/smooth-NAME.npz``)."""
    problem_name, activation = name.split("-")
    problem = get_problem(problem_name)
    cached = RESULTS / "cache" / f"smooth-{name}.npz"
    if cached.exists():
        return Network.load(cached), problem.domain, problem.objective_vector()
    X, Y, _, _ = problem.data(0)
    model, _ = fit_surrogate(X, Y, hidden=(32, 32), activation=activation, epochs=150, batch_size=256, lr=1e-2,
                             seed=0, device="cpu", progress=False)
    net = load_network(model)
    cached.parent.mkdir(parents=True, exist_ok=True)
    net.save(cached)
    return net, problem.domain, problem.objective_vector()


def local_starts(net, domain, c, samples: int, rng):
    X = domain.sample(samples, rng)
    values = net.forward(X) @ c
    order = np.argsort(-values)
    return X, values, X[order[:10]]


def polished(net, domain, c, starts):
    from scipy.optimize import minimize

    best = -np.inf
    for x0 in starts:
        res = minimize(lambda x: -float(c @ net.forward(np.clip(x, domain.lower, domain.upper))), x0,
                       method="L-BFGS-B", bounds=list(zip(domain.lower, domain.upper)))
        best = max(best, float(c @ net.forward(np.clip(res.x, domain.lower, domain.upper))))
    return best


def ipopt(net, domain, c, starts):
    """Ipopt on ``max c @ net(x)`` over the box from each start (central-difference gradients of the
    float64 forward pass); None when cyipopt cannot be imported."""
    try:
        import cyipopt
    except ImportError:
        return None
    value = lambda x: -float(c @ net.forward(np.clip(x, domain.lower, domain.upper)))

    def gradient(x):
        h = 1e-6 * np.maximum(1.0, np.abs(x))
        return np.array([(value(x + h[i] * e) - value(x - h[i] * e)) / (2 * h[i])
                         for i, e in enumerate(np.eye(x.size))])

    best = -np.inf
    for x0 in starts:
        res = cyipopt.minimize_ipopt(value, x0, jac=gradient, bounds=list(zip(domain.lower, domain.upper)),
                                     options={"print_level": 0, "sb": "yes", "tol": 1e-10})
        best = max(best, -value(res.x))
    return best


def refine(net, domain, c, bounds, bound_seconds, time_limit, emit):
    """The refinement run: the gap after every round against the time."""
    r = optimize_smooth(net, domain, c, "max", gap=1e-4, bounds=bounds, initial_tolerance=0.03,
                        deadline=Deadline.after(time_limit))
    elapsed = bound_seconds + r.times["bounds"]
    for k, rnd in enumerate(r.stats["rounds"]):
        elapsed += rnd["seconds"]
        emit(experiment="time", setting=f"round {k + 1}", status=rnd["status"], segments=rnd["segments"],
             binaries=rnd["binaries"], seconds=round(elapsed, 3), objective=rnd["objective"], bound=rnd["bound"],
             gap=rnd["gap"])
    emit(experiment="time", setting="final", status=r.status, segments=r.stats["rounds"][-1]["segments"],
         binaries=r.stats["rounds"][-1]["binaries"], seconds=round(bound_seconds + r.times["total"], 3),
         objective=r.objective, bound=r.bound, gap=r.gap)


def run(name: str, tolerances, time_limit: float, bab_limits, bab_gap, experiments, writer, rows):
    net, domain, c = surrogate(name)
    started = time.perf_counter()
    needs_bounds = "segments" in experiments or "time" in experiments
    bounds = compute_bounds(net, domain, "lp", workers=1) if needs_bounds else None
    bound_seconds = time.perf_counter() - started

    def emit(**row):
        row = {"net": name, **row}
        rows.append(row)
        writer.writerow(row)

    for tol in tolerances if "segments" in experiments else ():
        r = optimize_smooth(net, domain, c, "max", gap=0.0, bounds=bounds, initial_tolerance=tol, max_rounds=1,
                            deadline=Deadline.after(time_limit))
        first = r.stats["rounds"][0]
        emit(experiment="segments", setting=f"tol={tol:g}", status=r.status, segments=first["segments"],
             binaries=first["binaries"], seconds=round(bound_seconds + r.times["total"], 3),
             objective=r.objective, bound=r.bound, gap=r.gap)
    if "time" in experiments:
        refine(net, domain, c, bounds, bound_seconds, time_limit, emit)
    for limit in bab_limits if "bab" in experiments else ():
        r = optimize(net, domain, objective=(c, "max"), method="bab", mip_gap=bab_gap, time_limit=limit)
        emit(experiment="bab", setting=f"limit {limit:g} s", status=r.status, segments="", binaries="",
             seconds=round(r.times["total"], 3), objective=r.objective, bound=r.bound, gap=r.gap)
    if "local" in experiments:
        local_baselines(net, domain, c, emit)


def local_baselines(net, domain, c, emit):
    """Best of 10^5 samples, L-BFGS-B and Ipopt from its best 10."""
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    X, values, starts = local_starts(net, domain, c, 100_000, rng)
    emit(experiment="samples", setting="best of 1e5", seconds=round(time.perf_counter() - started, 3),
         objective=float(values.max()))
    emit(experiment="samples", setting="+ L-BFGS-B x10", seconds=round(time.perf_counter() - started, 3),
         objective=polished(net, domain, c, starts))
    started = time.perf_counter()
    best = ipopt(net, domain, c, starts)
    if best is not None:
        emit(experiment="ipopt", setting="10 starts", seconds=round(time.perf_counter() - started, 3), objective=best)


def table(rows) -> str:
    fmt = lambda v: "" if v is None or v == "" else (f"{v:.6g}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(FIELDS) + " |", "|" + "---|" * len(FIELDS)]
    lines += ["| " + " | ".join(fmt(row.get(f)) for f in FIELDS) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default=NETS)
    parser.add_argument("--tolerances", default="0.1,0.03,0.01,0.003")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per sandwich-MILP run")
    parser.add_argument("--bab-limits", default="10,30,60", help="time limits of the branch-and-bound runs")
    parser.add_argument("--bab-gap", type=float, default=1e-4, help="relative gap asked of branch and bound")
    parser.add_argument("--experiments", default="segments,time,bab,local", help="which experiments to run")
    parser.add_argument("--out", default=str(RESULTS / "smooth.csv"))
    args = parser.parse_args()
    tolerances = [float(t) for t in args.tolerances.split(",")]
    bab_limits = [float(t) for t in args.bab_limits.split(",")]
    rows = []
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        for name in args.nets.split(","):
            reason = available(name.split("-")[0])
            if reason:
                print(f"skipping {name}: {reason}")
                continue
            run(name, tolerances, args.time_limit, bab_limits, args.bab_gap, args.experiments.split(","), writer,
                rows)
            handle.flush()
    print(table(rows))


if __name__ == "__main__":
    main()
