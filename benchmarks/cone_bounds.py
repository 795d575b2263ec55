"""Root bounds of verify on convolutional networks: ``alpha`` against ``cones``, side by side in one run.

For each oval21 instance, the margin network of its first input region (:func:`relumilp.verify.spec_network`)
is bounded over the region's box by ``compute_bounds(..., "alpha")`` and by ``"cones"`` (MILP bound
tightening over cones of influence, :func:`relumilp.bounds.obbt.cone_bounds`, then ``alpha`` on the nodes
it did not bound exactly).
Reported per method: seconds, unstable neurons (MILP binaries), and the lower bound of the weakest margin
row (the row whose lower bound is smallest: ``> 0`` on every row of a conjunction proves it unreachable;
branch and bound keeps these intermediate bounds in every node, so a higher one helps everywhere). Every
bound is also checked against 200 sampled forward passes.

Default: the six oval21 instances that verify has not decided at 720 s and four it has, from
``../shared/data/vnncomp2021`` (exits with a message when absent). Prints a Markdown table and writes
``benchmarks/results/cone_bounds.csv``.

    python -m benchmarks.cone_bounds [--instances cifar_base_kw:img7779,cifar_wide_kw:img19] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.tables import markdown, save_rows  # noqa: E402
from benchmarks.node_throughput import instance_files  # noqa: E402
from benchmarks.problems import shared_data_dir  # noqa: E402
from relumilp.bounds import compute_bounds  # noqa: E402
from relumilp.frontends import load_network  # noqa: E402
from relumilp.frontends.vnnlib import read_vnnlib  # noqa: E402
from relumilp.verify.spec import spec_network, stack_rows  # noqa: E402

DEFAULT = ("cifar_base_kw:img590,cifar_base_kw:img7086,cifar_base_kw:img7779,cifar_wide_kw:img6762,"
           "cifar_wide_kw:img1075,cifar_wide_kw:img9214,cifar_wide_kw:img19,cifar_base_kw:img6638,"
           "cifar_deep_kw:img5168,cifar_deep_kw:img5533")
FIELDS = ["instance", "method", "seconds", "unstable", "weakest_margin", "cone_neurons", "cone_timeouts"]


def measure(instance: str, workers: int) -> list[dict]:
    folder = shared_data_dir() / "vnncomp2021" / "oval21"
    onnx, vnnlib = instance_files(folder, instance)
    net = load_network(onnx)
    domain, outputs = next(iter(read_vnnlib(vnnlib, net.input_size, net.output_size).regions()))
    G, h, _ = stack_rows(outputs)
    margins = spec_network(net, G, h)
    samples = domain.lower + np.random.default_rng(0).random((200, domain.size)) * (domain.upper - domain.lower)
    rows = []
    for method in ("alpha", "cones"):
        stats: dict = {}
        options = {"workers": workers, "stats": stats} if method == "cones" else {}
        clock = time.perf_counter()
        bounds = compute_bounds(margins, domain, method, **options)
        seconds = time.perf_counter() - clock
        bounds.check_sound(margins, samples)
        unstable = sum(int(np.sum((bounds.lower[a.inputs[0]] < 0) & (bounds.upper[a.inputs[0]] > 0)))
                       for a in margins.activations)
        cones = stats.get("cones", {})
        rows.append({"instance": instance, "method": method, "seconds": round(seconds, 1), "unstable": unstable,
                     "weakest_margin": round(float(bounds.lower[margins.output].min()), 4),
                     "cone_neurons": cones.get("neurons", ""), "cone_timeouts": cones.get("timeouts", "")})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", default=DEFAULT, help="comma-separated NETWORK:IMAGE of oval21")
    parser.add_argument("--workers", type=int, default=2, help="processes of the cone MILPs")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cone_bounds.csv"))
    args = parser.parse_args()
    if not (shared_data_dir() / "vnncomp2021" / "oval21").is_dir():
        raise SystemExit("../shared/data/vnncomp2021/oval21 is absent: nothing to measure")
    rows = []
    for instance in args.instances.split(","):
        rows += measure(instance.strip(), args.workers)
        print(f"{instance}: done", file=sys.stderr)
    save_rows(args.out, FIELDS, rows)
    print(markdown(FIELDS, rows))


if __name__ == "__main__":
    main()
