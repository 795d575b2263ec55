"""Benchmark: the two exact encodings of a general piecewise-linear activation (issue #15).

* ``bigm`` -- :meth:`relumilp.activations.Activation.milp_rows`: one binary per crossable kink, ordered,
  per-piece big-M rows, no extra columns;
* ``incremental`` -- :meth:`~relumilp.activations.Activation.incremental_rows`: the filling encoding of
  :mod:`relumilp.formulation.pwl` with lower = upper = ``f`` (same binaries, one fill column per segment,
  locally ideal).

Random tiny-to-medium networks whose hidden layers are hard sigmoid, ``|x|`` and a 3-kink table, over a
box; both encodings get the same LP-OBBT bounds and maximise output 0 with HiGHS (``method="milp"``).
Prints a markdown table (``docs/benchmarks.md``). ``python -m benchmarks.pwl_encodings [--quick]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from relumilp.activations import Abs, Activation, HardSigmoid, PiecewiseLinear
from relumilp.bounds import compute_bounds
from relumilp.domain import InputDomain
from relumilp.ir import Network
from relumilp.optimization import optimize

TABLE = PiecewiseLinear((-0.5, 0.0, 0.8), (0.1, -0.6, 1.0, 0.3), 0.0)
KINDS = {"table": TABLE, "hard_sigmoid": HardSigmoid(0.5, 0.5), "abs": Abs()}


def network(sizes, kind: str, seed: int) -> Network:
    rng = np.random.default_rng(seed)
    layers = [(rng.normal(0.0, 1.5 / np.sqrt(a), size=(b, a)), rng.normal(0.0, 0.3, size=b))
              for a, b in zip(sizes[:-1], sizes[1:])]
    return Network.sequential(layers, [KINDS[kind]] * (len(sizes) - 2))


def run(sizes, kind: str, seed: int, time_limit: float) -> list[dict]:
    net = network(sizes, kind, seed)
    domain = InputDomain.box(-1.0, 1.0, sizes[0])
    bounds = compute_bounds(net, domain, "lp")
    rows, default = [], Activation.PWL_ENCODING
    for encoding in ("bigm", "incremental"):
        Activation.PWL_ENCODING = encoding
        try:
            start = time.perf_counter()
            result = optimize(net, domain, maximize=0, bounds=bounds, method="milp", time_limit=time_limit,
                              threads=1, check="warn")
            seconds = time.perf_counter() - start
        finally:
            Activation.PWL_ENCODING = default
        rows.append({"sizes": "-".join(map(str, sizes)), "kind": kind, "seed": seed, "encoding": encoding,
                     "status": result.status, "objective": result.objective, "seconds": seconds,
                     "binaries": result.stats.get("binaries"), "nodes": result.stats.get("nodes")})
    return rows


def lp_bounds(sizes, kind: str, seed: int) -> dict:
    """The LP-relaxation bound on ``max y_0`` of each encoding (same bounds), and the hull LP's."""
    import highspy

    from relumilp.backends.highs import to_highs
    from relumilp.formulation.bigm import build_lp_relaxation, build_milp

    net = network(sizes, kind, seed)
    domain = InputDomain.box(-1.0, 1.0, sizes[0])
    bounds = compute_bounds(net, domain, "lp")
    default, out = Activation.PWL_ENCODING, {}
    models = {}
    try:
        for encoding in ("bigm", "incremental"):
            Activation.PWL_ENCODING = encoding
            models[encoding] = build_milp(net, bounds, domain).relaxed()
    finally:
        Activation.PWL_ENCODING = default
    models["hull"] = build_lp_relaxation(net, bounds, domain)
    for name, model in models.items():
        h = to_highs(model.with_objective(np.array([1.0]), "max"))
        h.setOptionValue("output_flag", False)
        h.run()
        assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
        out[name] = h.getInfo().objective_function_value
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--lp", action="store_true", help="only the LP-relaxation bounds of the encodings")
    args = parser.parse_args(argv)
    shapes = [[2, 8, 8, 1], [2, 16, 16, 1]] if args.quick else [[2, 8, 8, 1], [2, 16, 16, 1], [2, 32, 32, 1],
                                                                 [4, 16, 16, 16, 1]]
    seeds = range(2)
    if args.lp:
        print("| network | kind | seed | LP bound big-M | LP bound incremental | hull LP |")
        print("| --- | --- | --- | --- | --- | --- |")
        for sizes in shapes:
            for kind in KINDS:
                for seed in seeds:
                    r = lp_bounds(sizes, kind, seed)
                    print(f"| {'-'.join(map(str, sizes))} | {kind} | {seed} | {r['bigm']:.4f} | {r['incremental']:.4f} "
                          f"| {r['hull']:.4f} |", flush=True)
        return
    print("| network | kind | seed | binaries | big-M s | incremental s | ratio | big-M nodes | incremental nodes "
          "| objective (big-M / incremental) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for sizes in shapes:
        for kind in KINDS:
            for seed in seeds:
                a, b = run(sizes, kind, seed, args.time_limit)
                def shown(r):
                    return f"{r['seconds']:.2f}" + ("" if r["status"] == "optimal" else f" ({r['status']})")
                objective = f"{a['objective']:.6g} / {b['objective']:.6g}" if a["objective"] is not None and \
                    b["objective"] is not None else f"{a['objective']} / {b['objective']}"
                print(f"| {a['sizes']} | {kind} | {seed} | {a['binaries']} | {shown(a)} | {shown(b)} | "
                      f"{b['seconds'] / a['seconds']:.2f} | {a['nodes']} | {b['nodes']} | {objective} |", flush=True)


if __name__ == "__main__":
    main()
