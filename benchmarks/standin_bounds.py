"""Bounds of the architecture stand-ins: time, output width and smooth neuron count per bound method (issue #14).

For every ``.onnx`` file named on the command line (default: the ViT and softmax-CNN stand-ins that
:mod:`benchmarks.architecture_exports` writes), bounds over boxes of half-width 1e-3 and 1e-2 around one
fixed input (uniform in ``[0, 1]``, seed 0) by each method, one run each. A method that refuses the box
(a kind's domain, float64 overflow) is reported with its one-line reason. ::

    python -m benchmarks.architecture_exports /tmp/arch
    nice python -m benchmarks.standin_bounds /tmp/arch/vit_opset17.onnx /tmp/arch/softmax_cnn_opset17.onnx \\
        --csv benchmarks/results/standin_bounds.csv
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from pathlib import Path

import numpy as np

from relumilp._io import any_file, atomic_write_text
from relumilp.bounds import compute_bounds
from relumilp.domain import InputDomain
from relumilp.errors import RelumilpError
from relumilp.frontends.onnx import from_onnx

FIELDS = ["network", "neurons", "half_width", "method", "seconds", "output_width", "refused"]


def measure(path: Path, half_widths=(1e-3, 1e-2), methods=("interval", "symbolic", "alpha")) -> list[dict]:
    net = from_onnx(path)
    counts: dict[str, int] = {}
    for node in net.activations:
        counts[node.activation.kind] = counts.get(node.activation.kind, 0) + node.size
    neurons = " ".join(f"{kind}:{count}" for kind, count in sorted(counts.items()))
    centre = np.random.default_rng(0).uniform(0.0, 1.0, net.input_size)
    rows = []
    for half in half_widths:
        domain = InputDomain(centre - half, centre + half)
        for method in methods:
            start, width, refused = time.perf_counter(), "", ""
            try:
                bounds = compute_bounds(net, domain, method)
                width = f"{float(np.max(bounds.upper[net.output] - bounds.lower[net.output])):.4g}"
            except RelumilpError as exc:
                refused = str(exc).splitlines()[0]
            rows.append({"network": path.stem, "neurons": neurons, "half_width": half, "method": method,
                         "seconds": f"{time.perf_counter() - start:.1f}", "output_width": width, "refused": refused})
            seconds = rows[-1]["seconds"]
            print(f"{path.stem:24} {half:<6g} {method:9} {seconds:>7} s  width {width or '-':>10}  {refused}", flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path,
                        default=[Path("/tmp/arch/vit_opset17.onnx"), Path("/tmp/arch/softmax_cnn_opset17.onnx")])
    parser.add_argument("--csv", type=Path, help="write the rows here (whole or not at all)")
    parser.add_argument("--methods", default="interval,symbolic,alpha")
    args = parser.parse_args(argv)
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        parser.error(f"no such file: {missing[0]} (python -m benchmarks.architecture_exports DIR writes the stand-ins)")
    rows = [row for f in args.files for row in measure(f, methods=tuple(args.methods.split(",")))]
    if args.csv:
        text = io.StringIO()
        writer = csv.DictWriter(text, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(args.csv, text.getvalue(), ours=any_file)


if __name__ == "__main__":
    main()
