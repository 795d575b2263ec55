"""Loading speed and memory of wide and many-piece ONNX networks (issue #14, point 3).

Two network shapes, built here with ``onnx.helper`` at the sizes of the public benchmarks:

* **nn4sys-like**: one MatMul/Add/Relu chain with 60,100-wide layers
  (2 -> 60,100 -> 128 -> 60,100 -> 1). Before the sparse IR, the builder made a dense 60,100 x 60,100
  identity (26.9 GiB) and died with a MemoryError.
* **TLL-like** (two-level lattice, N = 64 local linear functions, M = 64 groups of 32): per group a
  selector MatMul, then a min tree of Slice / Sub / Relu / Sub pieces, the group minima concatenated,
  then a max tree (min(a, b) = a - relu(a - b), max(a, b) = b + relu(a - b)).

Each load runs in a fresh subprocess (``python -m benchmarks.load_speed --one KIND PATH``) so that its
peak resident memory (``ru_maxrss``) is its own. Prints a table and writes
``benchmarks/results/load_speed.csv``::

    nice python -m benchmarks.load_speed            # both networks, 3 runs each
    nice python -m benchmarks.load_speed --runs 1
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RESULTS = Path(__file__).parent / "results" / "load_speed.csv"


def _init(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def nn4sys_like(widths=(2, 60100, 128, 60100, 1), seed: int = 0) -> onnx.ModelProto:
    """A MatMul/Add/Relu chain through the given widths (ReLU after every layer but the last)."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for k, (n_in, n_out) in enumerate(zip(widths, widths[1:])):
        w = rng.standard_normal((n_in, n_out), dtype=np.float32) / np.sqrt(n_in)
        inits += [_init(f"W{k}", w), _init(f"b{k}", rng.standard_normal(n_out) * 0.1)]
        nodes += [helper.make_node("MatMul", [x, f"W{k}"], [f"m{k}"]), helper.make_node("Add", [f"m{k}", f"b{k}"], [f"a{k}"])]
        x = f"a{k}"
        if k < len(widths) - 2:
            nodes.append(helper.make_node("Relu", [x], [f"r{k}"]))
            x = f"r{k}"
    graph = helper.make_graph(nodes, "nn4sys_like", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, widths[0]])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, widths[-1]])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def tll_like(n: int = 64, groups: int = 64, size: int = 32, n_in: int = 2, seed: int = 0) -> onnx.ModelProto:
    """A two-level-lattice-shaped network (see the module docstring); ``size`` a power of two."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    inits += [_init("W", rng.standard_normal((n_in, n))), _init("b", rng.standard_normal(n))]
    nodes += [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["L"])]
    counter = iter(range(10**9))

    def const(values):
        name = f"c{next(counter)}"
        inits.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
        return name

    def tree(v: str, width: int, op: str) -> str:
        """min (op='min') or max over the last axis of ``v`` (1, width) by halving."""
        axes = const([1])
        while width > 1:
            half = width // 2
            t = next(counter)
            nodes.append(helper.make_node("Slice", [v, const([0]), const([half]), axes], [f"a{t}"]))
            nodes.append(helper.make_node("Slice", [v, const([half]), const([width]), axes], [f"b{t}"]))
            nodes.append(helper.make_node("Sub", [f"a{t}", f"b{t}"], [f"d{t}"]))
            nodes.append(helper.make_node("Relu", [f"d{t}"], [f"r{t}"]))
            if op == "min":
                nodes.append(helper.make_node("Sub", [f"a{t}", f"r{t}"], [f"v{t}"]))
            else:
                nodes.append(helper.make_node("Add", [f"b{t}", f"r{t}"], [f"v{t}"]))
            v, width = f"v{t}", half
        return v

    minima = []
    for j in range(groups):
        select = np.zeros((n, size), dtype=np.float32)
        select[rng.choice(n, size, replace=False), np.arange(size)] = 1.0
        inits.append(_init(f"S{j}", select))
        nodes.append(helper.make_node("MatMul", ["L", f"S{j}"], [f"g{j}"]))
        minima.append(tree(f"g{j}", size, "min"))
    nodes.append(helper.make_node("Concat", minima, ["mins"], axis=1))
    out = tree("mins", groups, "max")
    graph = helper.make_graph(nodes, "tll_like", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n_in])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 1])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


BUILDERS = {"nn4sys-like 2-60100-128-60100-1": nn4sys_like, "TLL-like N=64 M=64": tll_like}


def _one(path: str) -> dict:
    """Load one file in this process; the time and this process's peak memory."""
    from relumilp.frontends.onnx import from_onnx

    start = time.perf_counter()
    net = from_onnx(path)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    x = np.random.default_rng(0).standard_normal((4, net.input_size))
    assert np.all(np.isfinite(net.forward(x)))
    return {"seconds": seconds, "peak_mib": peak, "nodes": len(net.order),
            "sparse": sum(node.is_sparse for node in net.affines), "affines": len(net.affines)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--one", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--build", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(_one(args.one[1])))
        return
    if args.build:
        model = BUILDERS[args.build[0]]()
        onnx.save(model, args.build[1])
        print(len(model.graph.node))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, targets in (("nn4sys-like 2-60100-128-60100-1", (10.0, 2048)), ("TLL-like N=64 M=64", (2.0, None))):
            path = os.path.join(tmp, "model.onnx")
            # built in a subprocess: Linux keeps ru_maxrss across exec, so this process must stay small
            built = subprocess.run([sys.executable, "-m", "benchmarks.load_speed", "--build", kind, path],
                                   capture_output=True, text=True, check=True)
            onnx_nodes = int(built.stdout.strip().splitlines()[-1])
            for run in range(args.runs):
                out = subprocess.run([sys.executable, "-m", "benchmarks.load_speed", "--one", kind, path],
                                     capture_output=True, text=True, check=True)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append({"network": kind, "onnx_nodes": onnx_nodes, "run": run + 1, **result,
                             "target_s": targets[0], "target_mib": targets[1] or ""})
    print(f"{'network':34} {'ONNX nodes':>10} {'run':>3} {'load s':>8} {'peak MiB':>9} {'IR nodes':>8} {'sparse/affine':>13}")
    for r in rows:
        print(f"{r['network']:34} {r['onnx_nodes']:>10} {r['run']:>3} {r['seconds']:>8.2f} {r['peak_mib']:>9.0f} "
              f"{r['nodes']:>8} {r['sparse']:>6}/{r['affines']:<6}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
