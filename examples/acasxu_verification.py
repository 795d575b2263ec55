"""Formal verification of ACAS Xu collision-avoidance networks against VNN-LIB properties.

The problem
    ACAS Xu is an airborne collision-avoidance system whose decision tables were compressed into 45
    ReLU networks (Katz et al., CAV 2017): 5 inputs (distance and angles to the intruder, the two
    speeds), 6 hidden layers of 50 ReLUs, and 5 outputs, one score per advisory -- clear of conflict
    (COC), weak left, weak right, strong left, strong right; the *lowest* score is the advice. Safety
    properties are written in VNN-LIB: a box of inputs and an *unsafe* set of outputs. A property
    holds when no input in the box produces an unsafe output. Here:

    * property 1 on network 1_1 -- a distant, slow intruder: the COC score never exceeds a threshold
      (unsafe: ``Y_0 >= 3.9911``);
    * property 3 on network 1_1 -- an intruder straight ahead and closing: COC is never the advice
      (unsafe: ``Y_0 <= Y_i`` for every other advisory i);
    * property 2 on network 2_1 -- the COC score is never the largest (unsafe: ``Y_0 >= Y_i`` for all
      i). Known to be violated by several networks; the example finds a counterexample.

How it is solved
    ``relumilp.verify.verify(network, property)`` reads the ONNX network and the VNN-LIB file, tries
    cheap falsification first (samples of the box), folds the unsafe set's rows into the network's
    last layer, and then branches on the input box with symbolic bounds, handing small boxes to a
    big-M MILP in HiGHS. ``holds`` is a proof; ``violated`` comes with a counterexample that is
    re-checked in float64. (One MILP over the whole box, e.g. ``relumilp.optimize(net, box, maximize=0)``
    for property 1, is exact too, but on network 1_1 it got nowhere in 15 minutes (no incumbent, upper
    bound 125 against the threshold 3.99): 242 of the 300 neurons stay unstable over the box even with
    LP-tightened bounds. Splitting the box is what makes verification fast.)

What you learn
    * ``relumilp.frontends.vnnlib.read_vnnlib``: a property as input regions and unsafe conjunctions
      ``C y <= d``, and ``Property.is_counterexample``;
    * ``relumilp.verify.verify`` and its result: ``result`` (holds / violated / unknown),
      ``counterexample``, ``time``, ``details`` (how each region was decided);
    * checking a counterexample independently: relumilp's forward pass *and* ONNX's own reference
      evaluator (``onnx.reference``) on the original file.

Data
    The VNN-COMP 2021 ACAS Xu benchmark in ``../shared/data/acasxu`` next to the repository (or
    ``--data-dir``; the ``RELUMILP_SHARED_DATA`` environment variable names the parent folder). Without
    it the script says so and exits successfully.

Run
    python examples/acasxu_verification.py
    python examples/acasxu_verification.py --quick                 # properties 1 and 2 only
    python examples/acasxu_verification.py --case 1_1:4 --case 3_3:1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

import relumilp
from relumilp.frontends.vnnlib import read_vnnlib

HERE = Path(__file__).resolve().parent
CASES = [("1_1", 1), ("1_1", 3), ("2_1", 2)]
QUICK_CASES = [("1_1", 1), ("2_1", 2)]


def default_data_dir() -> Path:
    shared = Path(os.environ.get("RELUMILP_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
    return shared / "acasxu"


def describe_row(c: np.ndarray, d: float) -> str:
    """One unsafe row ``c @ y <= d`` in readable form (``Y_0 >= 3.99``, ``Y_0 <= Y_1``, ...)."""
    nonzero = np.flatnonzero(c)
    if len(nonzero) == 1:
        j = nonzero[0]
        return f"Y_{j} {'<=' if c[j] > 0 else '>='} {d / c[j]:.6g}"
    if len(nonzero) == 2 and d == 0 and c[nonzero[0]] == -c[nonzero[1]] and abs(c[nonzero[0]]) == 1:
        pos = nonzero[0] if c[nonzero[0]] > 0 else nonzero[1]
        neg = nonzero[1] if pos == nonzero[0] else nonzero[0]
        return f"Y_{pos} <= Y_{neg}"
    return " + ".join(f"{c[j]:g}*Y_{j}" for j in nonzero) + f" <= {d:g}"


def onnx_reference(path: Path, x: np.ndarray) -> np.ndarray | None:
    """The network output at ``x`` computed by ONNX's reference evaluator (float32), straight from the file."""
    try:
        import onnx
        from onnx.reference import ReferenceEvaluator
    except ImportError:
        return None
    model = onnx.load(str(path))
    initialised = {t.name for t in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in initialised][0]  # these files list weights as inputs
    shape = [d.dim_value or 1 for d in real.type.tensor_type.shape.dim]
    out = ReferenceEvaluator(model).run(None, {real.name: x.astype(np.float32).reshape(shape)})[0]
    return np.asarray(out, dtype=np.float64).ravel()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="folder with the .onnx and .vnnlib files")
    parser.add_argument("--case", action="append", default=None, metavar="NET:PROP",
                        help="network and property, e.g. 1_1:3 (repeatable; default 1_1:1 1_1:3 2_1:2)")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds per property (default 300)")
    parser.add_argument("--quick", action="store_true", help="only 1_1:1 and 2_1:2")
    args = parser.parse_args(argv)

    folder = args.data_dir or default_data_dir()
    if not folder.is_dir():
        print(f"ACAS Xu data not found at {folder}: nothing to verify. Pass --data-dir with the VNN-COMP 2021 "
              "acasxu benchmark (ACASXU_run2a_*.onnx and prop_*.vnnlib) to run this example.")
        return 0
    try:
        from relumilp.verify import verify
    except ImportError:  # pragma: no cover - the verification module is part of relumilp
        print("relumilp.verify is not available in this version of relumilp")
        return 1

    if args.case:
        cases = [(text.split(":")[0], int(text.split(":")[1])) for text in args.case]
    else:
        cases = QUICK_CASES if args.quick else CASES
    summary = []
    for net_id, prop_id in cases:
        model_path = folder / f"ACASXU_run2a_{net_id}_batch_2000.onnx"
        prop_path = folder / f"prop_{prop_id}.vnnlib"
        if not (model_path.is_file() and prop_path.is_file()):
            print(f"\n{model_path.name} / {prop_path.name}: file missing, skipped")
            continue
        net = relumilp.load_network(model_path)
        prop = read_vnnlib(prop_path, net.input_size, net.output_size)
        print(f"\nNetwork {net_id} ({net.input_size} inputs, hidden {net.hidden_sizes}, {net.output_size} outputs), "
              f"property {prop_id}")
        for k, (domain, unsafe_sets) in enumerate(prop.regions()):
            box = ", ".join(f"[{lo:.4g}, {hi:.4g}]" for lo, hi in zip(domain.lower, domain.upper))
            print(f"  input region {k}: x in {box}")
            for out in unsafe_sets:
                print("  unsafe if:   " + (" and ".join(describe_row(c, d) for c, d in zip(out.C, out.d)) or "always"))

        start = time.perf_counter()
        answer = verify(net, prop, time_limit=args.time_limit)
        elapsed = time.perf_counter() - start
        regions = answer.details.get("regions", [])
        parts = []
        for i, r in enumerate(regions):
            part = f"region {r.get('region', i)} decided by {r.get('decided_by', '?')}"
            if isinstance(r.get("bab"), dict):
                part += f" ({r['bab'].get('boxes')} boxes, {len(r.get('milp', []))} leaf MILPs)"
            parts.append(part)
        how = "; ".join(parts)
        print(f"  result:      {answer.result.upper()} in {elapsed:.1f} s" + (f"  [{how}]" if how else ""))
        verdict = answer.result
        if answer.result == "holds":
            print("               certified: no input in the region reaches the unsafe set")
        elif answer.result == "violated":
            x = np.asarray(answer.counterexample["x"], dtype=np.float64)
            y_ir = net.forward(x)
            y_onnx = onnx_reference(model_path, x)
            print(f"  counterexample x = {np.array2string(x, precision=6)}")
            print(f"               y (relumilp forward pass, float64) = {np.array2string(y_ir, precision=6)}")
            ok = prop.is_counterexample(x, y_ir)
            if y_onnx is not None:
                ok_onnx = prop.is_counterexample(x, y_onnx)
                print("               y (onnx.reference on the file, float32) = "
                      f"{np.array2string(y_onnx, precision=6)}")
                print(f"               check: in the input region and unsafe -- forward pass {ok}, "
                      f"ONNX reference {ok_onnx}")
                ok = ok and ok_onnx
            else:
                print(f"               check: in the input region and unsafe -- forward pass {ok}")
            if not ok:
                verdict = "violated (CHECK FAILED)"
        else:
            print("               no answer within the time limit (raise --time-limit)")
        summary.append((net_id, prop_id, verdict, elapsed))

    print("\nSummary")
    for net_id, prop_id, verdict, elapsed in summary:
        print(f"  network {net_id}  property {prop_id}:  {verdict:10s} {elapsed:7.1f} s")
    return 1 if any("CHECK FAILED" in v for _, _, v, _ in summary) else 0


if __name__ == "__main__":
    sys.exit(main())
