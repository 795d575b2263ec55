"""Branch-and-bound node throughput over neurons, with the engine's precision choices side by side.

Each configuration runs ``relumilp.verify`` on the same instance with one thread (branch and bound gets
:data:`relumilp.verify.bab.BAB_SHARE` of the time, then the root MILP the rest) and reports what branch
and bound did in its share: nodes bounded, nodes per second and its global bound on the violation
(below 0 proves). Configurations, all in this one run:

* ``float32 search`` -- the engine as shipped: the slope search's Adam steps and the branching estimates
  in float32 (:meth:`relumilp.bounds.engine.BoundEngine._search_ops`), every bound in float64;
* ``float64 search`` -- the same with the search kept in float64;
* ``float64, dense convolutions`` -- also the sparse weights above 4% nonzero held dense in torch (the
  rule before :data:`relumilp.matrices.SPARSE_PRODUCT_DENSITY` became 10%, once sparse products had their
  own backward).

Default instance: oval21 ``cifar_wide`` img19 (one open conjunction; 720 s published; skipped when
``../shared/data/vnncomp2021`` is absent). Prints a Markdown table and writes
``benchmarks/results/node_throughput.csv``.

    python -m benchmarks.node_throughput [--seconds 160] [--instance cifar_wide_kw:img19]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.problems import shared_data_dir  # noqa: E402
from relumilp import matrices  # noqa: E402
from relumilp.bounds.engine import BoundEngine  # noqa: E402
from relumilp.frontends import load_network  # noqa: E402
from relumilp.frontends.vnnlib import read_vnnlib  # noqa: E402
from relumilp.verify import verify  # noqa: E402

CONFIGURATIONS = ("float32 search", "float64 search", "float64, dense convolutions")


def instance_files(folder: Path, instance: str) -> tuple[Path, Path]:
    """The ONNX and VNN-LIB files of ``NETWORK:IMAGE`` (e.g. ``cifar_wide_kw:img19``) in oval21's list."""
    network, image = instance.split(":")
    for line in (folder / "oval21_instances.csv").read_text().splitlines():
        onnx, vnnlib, _ = line.split(",")
        if network in onnx and f"-{image}-" in vnnlib:
            return folder / onnx, folder / vnnlib
    raise SystemExit(f"no oval21 instance {instance!r}")


def run(configuration: str, net, prop, seconds: float) -> dict:
    """One ``verify`` call under ``configuration``; the engine's settings are restored afterwards."""
    search_ops, density = BoundEngine._search_ops, matrices.SPARSE_PRODUCT_DENSITY
    try:
        if configuration != "float32 search":
            BoundEngine._search_ops = lambda self, *groups: None
        if configuration == "float64, dense convolutions":
            matrices.SPARSE_PRODUCT_DENSITY = 0.04
        clock = time.perf_counter()
        result = verify(net, prop, time_limit=seconds, threads=1)
        wall = time.perf_counter() - clock
    finally:
        BoundEngine._search_ops, matrices.SPARSE_PRODUCT_DENSITY = search_ops, density
    region = result.details["regions"][0]
    bab = region.get("bab") or {}
    nodes, bab_seconds = bab.get("boxes", 0), bab.get("seconds", 0.0)
    return {"configuration": configuration, "answer": result.result, "wall_s": round(wall, 1),
            "root_bounds_s": round(region.get("bounds_time", 0.0), 1), "bab_s": round(bab_seconds, 1),
            "nodes": nodes, "nodes_per_s": round(nodes / bab_seconds, 1) if bab_seconds else 0.0,
            "bound": bab.get("bound")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=160.0, help="time limit of each verify call")
    parser.add_argument("--instance", default="cifar_wide_kw:img19", help="oval21 NETWORK:IMAGE")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "node_throughput.csv")
    args = parser.parse_args(argv)
    folder = shared_data_dir() / "vnncomp2021" / "oval21"
    if not folder.is_dir():
        print(f"skipped: {folder} is absent")
        return
    onnx, vnnlib = instance_files(folder, args.instance)
    net = load_network(onnx)
    prop = read_vnnlib(vnnlib, net.input_size, net.output_size)
    rows = []
    for configuration in CONFIGURATIONS:
        rows.append(run(configuration, net, prop, args.seconds))
        print(rows[-1], flush=True)
    columns = list(rows[0])
    print(f"\n{args.instance}, {args.seconds:g} s per call, one thread\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_suffix(".csv.part")
    with partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(args.out)


if __name__ == "__main__":
    main()
