"""Census of ONNX files: which load into relumilp, and the first operator that blocks the others (issue #14).

Loads every ``.onnx`` file under a folder (default: the shared data folder beside the repository,
``/work/shared/data`` here) with :func:`relumilp.frontends.onnx.from_onnx` and reports, per file,
``loaded`` (with the IR's node count and the load time) or the first blocking operator and the one-line
error; then the number of files per blocking operator. A file blocks on the first node the frontend
refuses, so an operator that appears only after it is not counted. ::

    nice python -m benchmarks.onnx_census                     # the shared data folder
    nice python -m benchmarks.onnx_census FOLDER --csv out.csv --ort

With ``--ort``, every file that loads is also run by onnxruntime on three random inputs in ``[-1, 1]`` and
the largest difference from the IR's float64 forward pass is reported, relative to the outputs' largest
magnitude (at least 1): float32 onnxruntime against float64, so about 1e-7 is agreement.

:mod:`benchmarks.architecture_exports` writes a folder of architecture-shaped exports to run it on.
"""

from __future__ import annotations

import argparse
import collections
import csv
import io
import re
import sys
import time
from pathlib import Path

import numpy as np
import onnx

from relumilp._io import any_file, atomic_write_text
from relumilp.errors import UnsupportedOperatorError
from relumilp.frontends.onnx import from_onnx

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data"

#: the operator an error names: an unknown operator, or the node a handler refused
_OPERATOR = (re.compile(r"ONNX operator '([^']+)'"), re.compile(r"ONNX node '[^']*' \(([^)]+)\)"))


def blocking_operator(error: Exception) -> str:
    """The ONNX operator type an error from :func:`from_onnx` names, else the error's class name."""
    for pattern in _OPERATOR:
        match = pattern.search(str(error))
        if match:
            return match.group(1)
    return type(error).__name__


def ort_difference(path: Path, net, samples: int = 3, seed: int = 0) -> float:
    """Largest ``|IR - onnxruntime|`` over ``samples`` random inputs in ``[-1, 1]``, relative to ``max(1, |y|)``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in spec.shape]
    dtype = np.float64 if "double" in spec.type else np.float32
    X = np.random.default_rng(seed).uniform(-1.0, 1.0, (samples, net.input_size)).astype(dtype).astype(np.float64)
    reference = np.concatenate([np.asarray(session.run(None, {spec.name: x.reshape(shape).astype(dtype)})[0],
                                           dtype=np.float64).reshape(1, -1) for x in X])
    return float(np.abs(net.forward(X) - reference).max() / max(1.0, np.abs(reference).max()))


def census_one(path: Path, compare: bool = False) -> dict:
    """``{"file", "status", "operator", "nodes", "seconds", "error", "operators", "ort_difference"}`` for one
    file (the last with ``compare``: :func:`ort_difference`)."""
    row = {"file": str(path), "status": "loaded", "operator": "", "nodes": "", "seconds": "", "error": "",
           "ort_difference": ""}
    try:
        model = onnx.load(str(path), load_external_data=False)
        row["operators"] = " ".join(sorted({n.op_type for n in model.graph.node}))
    except Exception:  # from_onnx reports unreadable files itself
        row["operators"] = ""
    start = time.perf_counter()
    try:
        net = from_onnx(path)
    except Exception as exc:  # every failure is a finding of the census, reported on its line
        row["status"] = "unsupported" if isinstance(exc, UnsupportedOperatorError) else "error"
        row["operator"] = blocking_operator(exc)
        row["error"] = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    else:
        row["nodes"] = len(net.order)
    row["seconds"] = f"{time.perf_counter() - start:.3f}"
    if compare and row["status"] == "loaded":
        try:
            row["ort_difference"] = f"{ort_difference(path, net):.2e}"
        except Exception as exc:  # onnxruntime refuses the file: reported, not fatal
            row["ort_difference"] = f"onnxruntime: {str(exc).splitlines()[0][:120]}"
    return row


def census(folder: Path, compare: bool = False) -> list[dict]:
    files = sorted(folder.rglob("*.onnx"))
    if not files:
        raise SystemExit(f"no .onnx files under {folder}")
    return [census_one(path, compare) for path in files]


def summary(rows: list[dict]) -> str:
    loaded = sum(r["status"] == "loaded" for r in rows)
    blocked = collections.Counter(r["operator"] for r in rows if r["status"] != "loaded")
    lines = [f"{loaded} of {len(rows)} files load"]
    if blocked:
        lines.append("files per first blocking operator:")
        lines += [f"  {op:<28} {count}" for op, count in blocked.most_common()]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT, help=f"default {DEFAULT}")
    parser.add_argument("--csv", type=Path, help="also write the per-file rows to this CSV file")
    parser.add_argument("--ort", action="store_true", help="compare every loaded file with onnxruntime")
    args = parser.parse_args(argv)
    rows = census(args.folder, args.ort)
    width = max(len(str(Path(r["file"]).relative_to(args.folder))) for r in rows)
    for r in rows:
        name = str(Path(r["file"]).relative_to(args.folder))
        what = f"loaded ({r['nodes']} IR nodes)" if r["status"] == "loaded" else f"{r['operator']}: {r['error']}"
        compared = f"  onnxruntime {r['ort_difference']}" if r["ort_difference"] else ""
        print(f"{name:<{width}}  {r['seconds']:>7}s  {what}{compared}")
    print(summary(rows))
    if args.csv:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(args.csv, text.getvalue(), ours=any_file)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
