"""Design an autothermal reformer: a neural-network surrogate inside your own Pyomo model.

The problem
    An autothermal reformer turns natural gas, steam and air into hydrogen-rich syngas. Two design
    decisions are the *bypass fraction* (share of the gas that skips the reformer) and the *natural
    gas to steam ratio*. A flowsheet simulator (IDAES-PSE) was run on a grid of both; its outputs
    include the outlet mole fractions of H2 and N2 and the reformer heat duty. We fit a small ReLU
    network to that data and then, in an ordinary Pyomo model with our own variables and constraints,

        maximise   H2 mole fraction
        subject to N2 mole fraction <= 0.34               (product specification)
                   reformer duty    <= 30,000             (heat budget, in the data's duty units)
                   ratio >= 0.9 + 0.25 * bypass           (an operating rule linking the two inputs)
                   0.1 <= bypass <= 0.8,  0.8 <= ratio <= 1.2   (the range of the data)

    The network is nonconvex, so a local NLP solver could stop at a local optimum; the big-M MILP is
    solved to global optimality (of the surrogate) by HiGHS.

What you learn
    * ``relumilp.add_network(model, net, inputs=[...], outputs=[...])``: the network becomes a Pyomo
      block tied to *your* variables, next to any linear constraints and objective you write;
    * ``relumilp.solve(model)``: solves the whole model and checks the network block against its own
      forward pass (``result.discrepancy``);
    * re-solving the same kind of model for several budgets (a small trade-off curve);
    * sanity checks against the data: the surrogate's error, and the best data point that satisfies
      the same constraints.

Data
    ``reformer.csv`` (2,800 rows) from the OMLT documentation notebooks (BSD-3, see
    ``examples/data/README.md``). The script uses the full file when it finds it (``--data``, or
    ``../shared/data/reformer.csv`` next to the repository; ``RELUMILP_SHARED_DATA`` names another
    folder) and otherwise the 600-row sample shipped in ``examples/data/reformer_sample.csv``.

Run
    python examples/reformer_design.py
    python examples/reformer_design.py --quick          # fewer training epochs
    python examples/reformer_design.py --n2-max 0.33 --duty-max 25000
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyomo.environ as pyo
import torch

import relumilp
from relumilp.train import fit_surrogate

HERE = Path(__file__).resolve().parent
SAMPLE = HERE / "data" / "reformer_sample.csv"
FULL = Path(os.environ.get("RELUMILP_SHARED_DATA", HERE.parent.parent / "shared" / "data")) / "reformer.csv"
INPUTS = ["Bypass Fraction", "NG Steam Ratio"]
OUTPUTS = ["H2", "N2", "Reformer Duty"]


def read_csv(path: Path) -> dict[str, np.ndarray]:
    """Columns of the reformer file by name (the file has spaces around its commas)."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    names = [name.strip() for name in rows[0]]
    values = np.array([[float(v) for v in row] for row in rows[1:] if row], dtype=np.float64)
    return {name: values[:, k] for k, name in enumerate(names)}


def build_model(net, n2_max: float, duty_max: float) -> pyo.ConcreteModel:
    """The design model: the user's variables and constraints, with the network as one block in it."""
    m = pyo.ConcreteModel()
    # The user's own decision variables, with the bounds of the data (the surrogate is valid there only).
    m.bypass = pyo.Var(bounds=(0.1, 0.8))
    m.ratio = pyo.Var(bounds=(0.8, 1.2))
    # Variables for the predicted outputs (free: the network block determines them).
    m.h2 = pyo.Var()
    m.n2 = pyo.Var()
    m.duty = pyo.Var()
    # One call adds the network: input bounds are taken from the bounds of m.bypass and m.ratio.
    relumilp.add_network(m, net, inputs=[m.bypass, m.ratio], outputs=[m.h2, m.n2, m.duty],
                         tighten="lp", name="reformer")  # the block is m.reformer
    m.n2_spec = pyo.Constraint(expr=m.n2 <= n2_max)
    m.duty_budget = pyo.Constraint(expr=m.duty <= duty_max)
    m.operating_rule = pyo.Constraint(expr=m.ratio >= 0.9 + 0.25 * m.bypass)
    m.objective = pyo.Objective(expr=m.h2, sense=pyo.maximize)
    return m


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="reformer CSV (default: shared full file or sample)")
    parser.add_argument("--n2-max", type=float, default=0.34, help="upper limit on the N2 mole fraction")
    parser.add_argument("--duty-max", type=float, default=30000.0, help="upper limit on the reformer duty")
    parser.add_argument("--epochs", type=int, default=100, help="training epochs (default 100)")
    parser.add_argument("--quick", action="store_true", help="train for 25 epochs only (a smoke test)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny network: one thread is fastest and makes the run reproducible

    path = args.data or (FULL if FULL.is_file() else SAMPLE)
    data = read_csv(path)
    X = np.column_stack([data[name] for name in INPUTS])
    Y = np.column_stack([data[name] for name in OUTPUTS])
    print(f"Data: {path.name} ({X.shape[0]} rows){'  [bundled sample]' if path.resolve() == SAMPLE else ''}")

    # 1. Fit the surrogate. fit_surrogate standardises internally and folds the scaling back into the
    #    first and last layer, so the network maps raw inputs to raw outputs (duty in the thousands).
    epochs = 25 if args.quick else args.epochs
    start = time.perf_counter()
    model, history = fit_surrogate(X, Y, hidden=(16, 16), epochs=epochs, batch_size=128, lr=3e-3, seed=0,
                                   device="cpu", progress=False)
    net = relumilp.load_network(model)
    prediction = net.forward(X)
    print(f"Surrogate: 2 -> 16 -> 16 -> 3 ReLU network, trained in {time.perf_counter() - start:.1f} s "
          f"({epochs} epochs)")
    for k, name in enumerate(OUTPUTS):
        error = np.abs(prediction[:, k] - Y[:, k])
        print(f"  {name:14s} range {Y[:, k].min():10.4g} .. {Y[:, k].max():<10.4g} "
              f"RMSE {np.sqrt(np.mean(error**2)):.3g}   max relative error {np.max(error / np.abs(Y[:, k])):.2%}")

    # 2. The design model, solved to global optimality of the surrogate.
    m = build_model(net, args.n2_max, args.duty_max)
    result = relumilp.solve(m)
    stats = m.reformer.compiled.stats()
    print(f"\nDesign model: network block with {stats['binaries']} binaries "
          f"({stats['unstable']} of {stats['neurons']} neurons unstable over the input box) + 3 user constraints")
    print(f"  status     {result.status}")
    if not result.has_solution:
        print("  no feasible design: relax --n2-max or --duty-max")
        return 0
    print(f"  H2         {pyo.value(m.h2):.5f}   (bound {result.bound:.5f}, gap {100 * (result.gap or 0):.3f} %)")
    print(f"  design     bypass = {pyo.value(m.bypass):.4f}, NG/steam ratio = {pyo.value(m.ratio):.4f}")
    print(f"  outputs    N2 = {pyo.value(m.n2):.5f} (limit {args.n2_max}), "
          f"duty = {pyo.value(m.duty):.1f} (limit {args.duty_max:g})")
    print(f"  check      forward pass at the design: H2 {result.y[0]:.5f}, N2 {result.y[1]:.5f}, "
          f"duty {result.y[2]:.1f}; max |MILP - forward| = {result.discrepancy:.1e}")
    for name, con in (("N2 spec", m.n2_spec), ("duty budget", m.duty_budget), ("operating rule", m.operating_rule)):
        slack = con.uslack() if con.has_ub() else con.lslack()
        binding = abs(slack) < 1e-6 * (1 + abs(pyo.value(con.body)))
        print(f"  {name:15s} slack {slack:.4g}{'   <- binding' if binding else ''}")
    print(f"  solve time {result.times['solve']:.2f} s")

    # 3. Sanity check against the data: the best sampled design that meets the same constraints.
    feasible = (Y[:, 1] <= args.n2_max) & (Y[:, 2] <= args.duty_max) & (X[:, 1] >= 0.9 + 0.25 * X[:, 0])
    if feasible.any():
        k = np.flatnonzero(feasible)[np.argmax(Y[feasible, 0])]
        print(f"  data       best feasible data row: H2 {Y[k, 0]:.5f} at bypass {X[k, 0]:.4f}, ratio {X[k, 1]:.4f} "
              f"(surrogate there: {prediction[k, 0]:.5f})")
        near = np.argsort(np.hypot((X[:, 0] - result.x[0]) / 0.7, (X[:, 1] - result.x[1]) / 0.4))[:4]
        print(f"  near x*    surrogate H2 error on the 4 nearest data rows: "
              f"max {np.max(np.abs(prediction[near, 0] - Y[near, 0])):.1e}")

    # 4. The same model for several duty budgets: how much H2 does more heat buy?
    print("\nTrade-off: optimal H2 vs the duty budget (each row a new global solve)")
    print(f"  {'duty budget':>11}  {'status':8} {'H2':>8} {'bypass':>7} {'ratio':>6} {'N2':>7} {'time':>6}")
    for budget in (20000.0, 25000.0, 30000.0, 35000.0):
        mb = build_model(net, args.n2_max, budget)
        rb = relumilp.solve(mb)
        if rb.has_solution:
            print(f"  {budget:11.0f}  {rb.status:8} {pyo.value(mb.h2):8.5f} {pyo.value(mb.bypass):7.4f} "
                  f"{pyo.value(mb.ratio):6.3f} {pyo.value(mb.n2):7.4f} {rb.times['solve']:5.2f}s")
        else:
            print(f"  {budget:11.0f}  {rb.status:8}")
    print(f"\nOptimal design found and certified: {'yes' if result.status == 'optimal' else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
