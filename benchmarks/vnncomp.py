"""Run a VNN-COMP instances file through ``relumilp.verify`` and tabulate the answers.

Usage::

    python -m benchmarks.vnncomp INSTANCES.csv [--root DIR] [--filter-props 1,2,3,4] [--filter-nets 1_,2_1]
        [--tighten METHOD] [--disjunction split|bigm] [--no-input-split] [--attack-samples N] [--timeout-scale X]
        [--out results.csv] [--details regions.jsonl] [--compare OTHER.csv] [--limit N]

``INSTANCES.csv`` has rows ``onnx,vnnlib,timeout`` (no header, paths relative to the CSV's folder or
``--root``), as in the VNN-COMP benchmark repositories. Each instance runs with time limit
``timeout * timeout-scale``. The result CSV (written whole after every instance, so an interrupted run
keeps what it finished) has one row per instance: network, property, result, time, the time limit,
how the answer was reached, and for ``violated`` two independent counterexample checks -- the float64
forward pass of the IR (``cex_forward``: must be True) and onnxruntime in float32 on the original ONNX
file (``cex_ort_margin``: the max-violation of the unsafe set there, <= 0 when it agrees; informational,
float32 can differ from float64 by ~1e-7). ``--details`` writes each instance's per-region record as one
JSON line (attack, bounds, branch-and-bound statistics and every MILP run: how the answer was reached,
or how far each half got). A summary table per property follows. ``--compare`` lists
the instances where another result CSV answers differently, and fails (exit 1) on a contradiction
(holds vs violated).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks.tables import save_rows
from relumilp._io import any_file, atomic_write_text
from relumilp.bounds import METHODS

FIELDS = ["network", "property", "result", "time", "time_limit", "decided_by", "boxes", "milps", "cex_forward",
          "cex_ort_margin", "counterexample_x"]


def read_instances(path: Path, root: Path | None) -> list[tuple[Path, Path, float]]:
    base = root if root is not None else path.parent
    rows = []
    with open(path, newline="") as handle:
        for line in csv.reader(handle):
            if not line or line[0].strip().startswith("#") or line[0].strip() == "onnx":
                continue
            if len(line) < 3:
                raise SystemExit(f"{path}: expected rows onnx,vnnlib,timeout, got {line}")
            rows.append((base / line[0].strip(), base / line[1].strip(), float(line[2])))
    return rows


def _prop_number(path: Path) -> str | None:
    match = re.search(r"(\d+)$", path.stem)
    return match.group(1) if match else None


def _ort_margin(model: Path, prop, x) -> float | None:
    """Max-violation of the unsafe set at ``x`` with the ONNX model run by onnxruntime (float32)."""
    if model.suffix.lower() != ".onnx":
        return None
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in spec.shape]
    y = session.run(None, {spec.name: np.asarray(x, dtype=np.float32).reshape(shape)})[0].astype(np.float64).ravel()
    best = np.inf
    for domain, outputs in prop.regions():
        if domain.contains(x, tol=1e-9)[0]:
            best = min(best, min(float(out.violation(y)[0]) for out in outputs))
    return best


def run_instances(instances, args) -> list[dict]:
    from tqdm import tqdm

    from relumilp.frontends import load_network
    from relumilp.frontends.vnnlib import read_vnnlib
    from relumilp.verify import verify

    networks: dict = {}
    rows: list[dict] = []
    details: list[str] = []
    bar = tqdm(instances, unit="inst", file=sys.stderr, dynamic_ncols=True)
    for model, vnnlib, timeout in bar:
        bar.set_postfix_str(f"{model.stem[:24]} {vnnlib.stem}")
        if model not in networks:
            networks[model] = load_network(model)
        net = networks[model]
        prop = read_vnnlib(vnnlib, net.input_size, net.output_size)
        limit = timeout * args.timeout_scale
        result = verify(net, prop, time_limit=limit, tighten=args.tighten, disjunction=args.disjunction,
                        formulation=args.formulation, input_split=False if args.no_input_split else None,
                        threads=args.threads,
                        attack_samples=args.attack_samples)
        regions = result.details["regions"]
        row = {
            "network": model.name,
            "property": vnnlib.name,
            "result": result.result,
            "time": f"{result.time:.3f}",
            "time_limit": f"{limit:g}",
            "decided_by": "+".join(sorted({r.get("decided_by", "-") for r in regions})) or "-",
            "boxes": sum(r.get("bab", {}).get("boxes", 0) for r in regions),
            "milps": sum(len(r.get("milp", [])) for r in regions),
            "cex_forward": "",
            "cex_ort_margin": "",
            "counterexample_x": "",
        }
        if result.counterexample is not None:
            x = np.asarray(result.counterexample["x"], dtype=np.float64)
            y = net.forward(x)
            row["cex_forward"] = bool(prop.is_counterexample(x, y))
            margin = _ort_margin(model, prop, x)
            row["cex_ort_margin"] = "" if margin is None else f"{margin:.3g}"
            row["counterexample_x"] = " ".join(repr(float(v)) for v in x)
        rows.append(row)
        if args.out:
            write_csv(args.out, rows)
        if args.details:
            details.append(json.dumps({"network": model.name, "property": vnnlib.name, "result": result.result,
                                       "regions": regions}, default=_plain))
            atomic_write_text(args.details, "\n".join(details) + "\n", ours=any_file)
    return rows


def _plain(value):
    """numpy scalars and arrays in the per-region records, for ``json.dumps``."""
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else str(value)


def write_csv(path, rows: list[dict]) -> None:
    save_rows(path, FIELDS, rows)


def summary(rows: list[dict]) -> str:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["property"], []).append(row)
    ordered = sorted(groups, key=lambda p: (int(_prop_number(Path(p)) or 0), p))
    lines = [f"{'property':<16} {'n':>4} {'solved':>6} {'holds':>6} {'viol.':>6} {'unkn.':>6} {'median s':>9} "
             f"{'max s':>8} {'cex ok':>7}"]

    def line(name, items):
        times = [float(r["time"]) for r in items]
        solved = [r for r in items if r["result"] != "unknown"]
        count = lambda v: sum(r["result"] == v for r in items)
        cex = [r for r in items if r["result"] == "violated"]
        cex_ok = sum(str(r["cex_forward"]) == "True" for r in cex)
        return (f"{name:<16} {len(items):>4} {len(solved):>6} {count('holds'):>6} {count('violated'):>6} "
                f"{count('unknown'):>6} {statistics.median(times):>9.2f} {max(times):>8.2f} {cex_ok:>3}/{len(cex):<3}")

    for prop in ordered:
        lines.append(line(prop, groups[prop]))
    if len(groups) > 1:
        lines.append(line("all", rows))
    return "\n".join(lines)


def compare(rows: list[dict], other_path: Path) -> tuple[str, int]:
    with open(other_path, newline="") as handle:
        other = {(r["network"], r["property"]): r for r in csv.DictReader(handle)}
    lines, contradictions, shared = [], 0, 0
    for row in rows:
        key = (row["network"], row["property"])
        if key not in other:
            continue
        shared += 1
        a, b = row["result"], other[key]["result"]
        if a != b:
            bad = {a, b} == {"holds", "violated"}
            contradictions += bad
            flag = "  <-- CONTRADICTION" if bad else ""
            lines.append(f"  {key[0]} {key[1]}: {a} here, {b} in {other_path.name}{flag}")
    head = f"compared {shared} shared instances with {other_path}: {len(lines)} differ, {contradictions} contradictions"
    return "\n".join([head, *lines]), contradictions


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vnncomp", description=__doc__.split("\n\n")[0])
    parser.add_argument("instances", type=Path, help="instances CSV: onnx,vnnlib,timeout per row")
    parser.add_argument("--root", type=Path, help="folder the CSV's paths are relative to (default: the CSV's)")
    parser.add_argument("--filter-props", help="comma-separated property numbers to run (prop_<k>.vnnlib)")
    parser.add_argument("--filter-nets", help="comma-separated substrings; run networks whose file name contains one")
    parser.add_argument("--tighten", choices=METHODS, default=None, help="bound method (default: verify's choice)")
    parser.add_argument("--disjunction", choices=("split", "bigm"), default="split",
                        help="encoding of a disjunctive unsafe set (default: one MILP per disjunct)")
    parser.add_argument("--formulation", choices=("ideal_cuts", "bigm"), default="ideal_cuts",
                        help="a region's MILP: with root rounds of ideal ReLU cuts (default) or big-M as compiled")
    parser.add_argument("--no-input-split", action="store_true", help="one MILP per input region (no input splitting)")
    parser.add_argument("--attack-samples", type=int, default=1000,
                        help="random points tried before any bound or MILP (0: no sampling at all)")
    parser.add_argument("--threads", type=int, default=1, help="threads per instance (default 1; 2 or more: the root MILP runs beside branch and bound)")
    parser.add_argument("--strong-candidates", type=int, metavar="K",
                        help="ablation: neurons compared per node in neuron branching (relumilp.bab.STRONG_CANDIDATES; 1: by score alone)")
    parser.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every instance's timeout")
    parser.add_argument("--limit", type=int, help="run only the first N selected instances")
    parser.add_argument("--out", type=Path, help="result CSV (rewritten after every instance)")
    parser.add_argument("--details", type=Path, help="per-region records, one JSON line per instance (rewritten after every instance)")
    parser.add_argument("--compare", type=Path, help="another result CSV to compare the answers with")
    args = parser.parse_args(argv)
    if args.strong_candidates is not None:
        import relumilp.bab

        if args.strong_candidates < 1:
            parser.error("--strong-candidates must be at least 1")
        relumilp.bab.STRONG_CANDIDATES = args.strong_candidates
    instances = read_instances(args.instances, args.root)
    if args.filter_props:
        wanted = {p.strip() for p in args.filter_props.split(",") if p.strip()}
        instances = [i for i in instances if _prop_number(i[1]) in wanted]
    if args.filter_nets:
        parts = [p.strip() for p in args.filter_nets.split(",") if p.strip()]
        instances = [i for i in instances if any(p in i[0].name for p in parts)]
    if args.limit:
        instances = instances[: args.limit]
    if not instances:
        print("no instances selected", file=sys.stderr)
        return 2
    rows = run_instances(instances, args)
    print(summary(rows))
    status = 0
    bad_cex = [r for r in rows if r["result"] == "violated" and str(r["cex_forward"]) != "True"]
    if bad_cex:
        print(f"{len(bad_cex)} counterexample(s) FAILED the forward-pass check", file=sys.stderr)
        status = 1
    if args.compare:
        text, contradictions = compare(rows, args.compare)
        print(text)
        status = status or int(contradictions > 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
