"""Certified global maximum and minimum of the built-in Peaks surrogate.

The problem
    relumilp ships a small ReLU network, ``relumilp.examples.peaks()``: 2 inputs, two hidden layers of
    16 ReLUs, 1 output, trained to approximate MATLAB's Peaks function on the box [-3, 3]^2 (and a
    larger, harder 2-32-32-1 one, ``peaks32``; pick it with ``--example peaks32``). Peaks has
    several local maxima and minima, so a local search (or a handful of samples) can stop at the wrong
    one. We ask for the *global* maximum and minimum of the network over the box.

How it is solved
    ``relumilp.optimize(net, domain, maximize=0, method="milp")`` -- one big-M MILP, the subject of this
    example; the default ``method="auto"`` would branch on input boxes instead -- bounds every neuron
    over the box (``tighten=``:
    interval, symbolic, lp or milp), writes the network as a big-M mixed-integer linear program (one
    binary per ReLU that can be both active and inactive on the box), and solves it with HiGHS. At
    status ``optimal`` the answer is certified: the solver has a point ``x`` with value ``objective``
    and a proof (``bound``) that no input in the box does better; ``optimal`` means the relative
    ``gap`` between the two is within HiGHS's tolerance (1e-4 by default, ``mip_gap=`` to change it).

What you learn
    * the call ``relumilp.optimize`` and the fields of its :class:`relumilp.SolveResult`: ``status``,
      ``objective``, ``bound``, ``gap``, ``x`` (the optimal input), ``y`` (the network's own forward pass
      at ``x``), ``y_milp`` and ``discrepancy`` (MILP value vs forward pass: a check of the solver's
      tolerances), ``stats`` (model size, stable/unstable neurons) and ``times``;
    * that the certificate is about the *network*: the true Peaks value at the network's optimum differs
      by the surrogate's approximation error, which the script prints beside it;
    * that dense sampling never beats the certified optimum (the script evaluates a 201 x 201 grid).

Run
    python examples/peaks_global_optimum.py               # whole box [-3, 3]^2
    python examples/peaks_global_optimum.py --quick       # half boxes only (a smoke test)
    python examples/peaks_global_optimum.py --tighten interval --time-limit 60
    python examples/peaks_global_optimum.py --example peaks32     # 64 neurons: tens of seconds
    python examples/peaks_global_optimum.py --network peaks.npz   # a network from train_peaks.py
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from scipy.optimize import minimize as local_minimize

import relumilp
from relumilp.examples import load_example, peaks_function


def true_optimum(sense: str, lower, upper) -> tuple[np.ndarray, float]:
    """Global optimum of the true Peaks function on a box: dense grid, then a local polish (2-D, cheap)."""
    sign = 1.0 if sense == "min" else -1.0
    g0, g1 = np.meshgrid(np.linspace(lower[0], upper[0], 601), np.linspace(lower[1], upper[1], 601))
    values = sign * peaks_function(g0, g1)
    k = np.unravel_index(np.argmin(values), values.shape)
    start = np.array([g0[k], g1[k]])
    polished = local_minimize(lambda z: sign * peaks_function(z[0], z[1]), start, bounds=list(zip(lower, upper)))
    x = polished.x if polished.fun <= values[k] else start
    return x, float(peaks_function(x[0], x[1]))


def report(label: str, sense: str, result: relumilp.SolveResult, lower, upper) -> None:
    word = "more" if sense == "max" else "less"
    print(f"\n{label} of the network over [{lower[0]:g}, {upper[0]:g}] x [{lower[1]:g}, {upper[1]:g}]")
    print(f"  status      {result.status}")
    if not result.has_solution:
        print("  no solution found (raise --time-limit)")
        return
    gap = "n/a" if result.gap is None else f"{100 * result.gap:.4f} %"
    print(f"  objective   {result.objective:.6f}   (value of the best input found)")
    print(f"  bound       {result.bound:.6f}   (proof: no input in the box gives {word} than this)   gap {gap}")
    x = result.x
    print(f"  x           ({x[0]: .5f}, {x[1]: .5f})")
    print(f"  check       forward pass net(x) = {result.y[0]:.6f}, MILP output = {result.y_milp[0]:.6f}, "
          f"|difference| = {result.discrepancy:.1e}")
    print(f"  true Peaks  peaks(x) = {peaks_function(x[0], x[1]):.6f}   (surrogate error at x: "
          f"{result.y[0] - peaks_function(x[0], x[1]):+.4f})")
    stats, times = result.stats, result.times
    print(f"  model       {stats['binaries']} binaries, {stats['continuous']} continuous variables, "
          f"{stats['constraints']} rows; neurons: {stats['unstable']} unstable, "
          f"{stats['stable_active']} stable active, {stats['stable_inactive']} stable inactive (of {stats['neurons']})")
    print("  times       " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tighten", default="lp", choices=["interval", "symbolic", "lp", "milp"],
                        help="bound-tightening method before the MILP (default: lp)")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds per MILP (default: none)")
    parser.add_argument("--threads", type=int, default=None, help="HiGHS threads (default: HiGHS's choice)")
    parser.add_argument("--example", default="peaks", choices=relumilp.examples.available(),
                        help="built-in network (default peaks)")
    parser.add_argument("--network", default=None,
                        help="a Peaks network file to use instead of the built-in one (e.g. from train_peaks.py)")
    parser.add_argument("--quick", action="store_true",
                        help="maximise over the half box x2 >= 0 and minimise over x2 <= 0 only (faster)")
    args = parser.parse_args(argv)

    example = load_example(args.example)
    net, domain = example.network, example.domain
    if args.network:
        net = relumilp.load_network(args.network)
        print(f"Network: {args.network}; ", end="")
    else:
        print(f"Network: {example.description} (built in: {args.example}); ", end="")
    print(f"{net.input_size} inputs, hidden layers {net.hidden_sizes}, "
          f"{net.output_size} output")
    boxes = {"max": (domain.lower, domain.upper), "min": (domain.lower, domain.upper)}
    if args.quick:
        boxes = {"max": (np.array([-3.0, 0.0]), np.array([3.0, 3.0])),
                 "min": (np.array([-3.0, -3.0]), np.array([3.0, 0.0]))}
        print("Quick mode: maximum over the half box x2 >= 0, minimum over x2 <= 0 (certified for those boxes only)")

    rows = []
    for sense, label in (("max", "MAXIMUM"), ("min", "MINIMUM")):
        lower, upper = boxes[sense]
        start, cpu = time.perf_counter(), time.process_time()
        result = relumilp.optimize(
            net, (lower, upper), **({"maximize": 0} if sense == "max" else {"minimize": 0}),
            tighten=args.tighten, time_limit=args.time_limit, threads=args.threads, method="milp",
        )
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        report(label, sense, result, lower, upper)

        # Sampling can only confirm the certificate: no grid point may beat the proven bound.
        g0, g1 = np.meshgrid(np.linspace(lower[0], upper[0], 201), np.linspace(lower[1], upper[1], 201))
        sampled = net.forward(np.column_stack([g0.ravel(), g1.ravel()])).ravel()
        best_sample = sampled.max() if sense == "max" else sampled.min()
        beats = False
        if result.bound is not None and np.isfinite(result.bound):
            beats = (best_sample > result.bound + 1e-6) if sense == "max" else (best_sample < result.bound - 1e-6)
            print(f"  sampling    best of {sampled.size} grid points: {best_sample:.6f} "
                  f"({'VIOLATES the bound!' if beats else 'within the proven bound'})")
        x_true, f_true = true_optimum(sense, lower, upper)
        print(f"  reference   true Peaks {sense} on this box: {f_true:.4f} at ({x_true[0]:.4f}, {x_true[1]:.4f})")
        rows.append((sense, result, x_true, f_true, elapsed, cpu))
        if beats:
            return 1

    print("\nSummary (network optimum is certified; 'true' is the Peaks function itself)")
    print(f"  {'':4} {'status':8} {'network opt':>12} {'bound':>12} {'at x':>20} {'peaks(x)':>9} "
          f"{'true opt':>9} {'time':>7} {'(CPU)':>7}")
    for sense, r, x_true, f_true, elapsed, cpu in rows:
        if r.has_solution:
            at = f"({r.x[0]:.3f}, {r.x[1]:.3f})"
            print(f"  {sense:4} {r.status:8} {r.objective:12.4f} {r.bound:12.4f} {at:>20} "
                  f"{peaks_function(r.x[0], r.x[1]):9.4f} {f_true:9.4f} {elapsed:6.1f}s {cpu:6.1f}s")
        else:
            print(f"  {sense:4} {r.status:8} {'-':>12} {r.bound!s:>12}")
    certified = all(r.status == "optimal" for _, r, *_ in rows)
    print("\nCertified global optimum of the network: " + ("yes (both solves optimal)" if certified else "no"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
