"""Time-limit overshoot of the CLI: ``solve``, ``verify`` and ``bounds`` with every bound method.

Each run is a fresh ``python -m relumilp`` subprocess with ``--time-limit T``; the table reports its wall
time (start-up and imports included), the overshoot ``wall - T`` and whether it stayed within the
promise ``T * 1.1 + 2 s``. Networks: ACAS Xu 1_1 over property 2's input region (skipped when
``../shared/data/acasxu`` is absent; see :func:`benchmarks.problems.shared_data_dir`), a
deterministic random 2-64-64-64-1 net over ``[-3, 3]^2`` and (``dense``) a random 784-200-200-200-10
net over an L-inf ball of 0.0006, whose dense leaf MILPs once spent seconds in HiGHS's presolve past
the limit. Each command runs with every bound method and with none given (``default``). Prints a
Markdown table and writes ``benchmarks/results/time_limits.csv``.

    python -m benchmarks.time_limits [--limits 5 20] [--nets acas random dense] [--out CSV]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.problems import shared_data_dir  # noqa: E402
from benchmarks.tables import markdown, save_rows  # noqa: E402
from relumilp.bounds import METHODS  # noqa: E402
from relumilp.ir import Network  # noqa: E402

COMMANDS = ("solve", "verify", "bounds")


def he_net(sizes, seed: int, bias_scale: float) -> Network:
    """A deterministic random ReLU MLP of layer ``sizes`` (He-scaled weights, biases of ``bias_scale``)."""
    rng = np.random.default_rng(seed)
    layers = [(rng.normal(0.0, np.sqrt(2.0 / n_in), size=(n_out, n_in)), rng.normal(0.0, bias_scale, size=n_out))
              for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    return Network.sequential(layers, "relu")


def random_net() -> Network:
    """A deterministic random 2-64-64-64-1 ReLU net."""
    return he_net([2, 64, 64, 64, 1], 0, 0.3)


def dense_net() -> Network:
    """A deterministic random 784-200-200-200-10 ReLU net."""
    return he_net([784, 200, 200, 200, 10], 1, 0.1)


def problems(folder: Path, names) -> dict:
    """``{name: (model, input-bounds JSON, property)}`` for the available networks."""
    out = {}
    if "random" in names:
        net = random_net()
        model = folder / "random-2-64x3.npz"
        net.save(model)
        lower, upper = [-3.0, -3.0], [3.0, 3.0]
        x = np.random.default_rng(1).uniform(lower, upper, size=(20000, 2))
        threshold = float(net.forward(x).max()) + 0.05  # not refuted by sampling; a MILP must prove it
        prop = folder / "random.vnnlib"
        prop.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
                        + "".join(f"(assert (>= X_{i} -3.0))\n(assert (<= X_{i} 3.0))\n" for i in range(2))
                        + f"(assert (>= Y_0 {threshold!r}))\n")
        box = folder / "random-box.json"
        box.write_text(json.dumps({"lower": lower, "upper": upper}))
        out["random 2-64x3"] = (model, box, prop)
    if "dense" in names:
        net = dense_net()
        model = folder / "dense-784-200x3-10.npz"
        net.save(model)
        centre = np.random.default_rng(0).random(784)
        label = int(np.argmax(net.forward(centre[None])[0]))
        lower, upper = np.clip(centre - 0.0006, 0.0, 1.0), np.clip(centre + 0.0006, 0.0, 1.0)
        prop = folder / "dense.vnnlib"
        prop.write_text("".join(f"(declare-const X_{i} Real)\n" for i in range(784))
                        + "".join(f"(declare-const Y_{j} Real)\n" for j in range(10))
                        + "".join(f"(assert (>= X_{i} {a!r}))\n(assert (<= X_{i} {b!r}))\n"
                                  for i, (a, b) in enumerate(zip(lower.tolist(), upper.tolist())))
                        + "(assert (or " + " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(10) if j != label)
                        + "))\n")
        box = folder / "dense-box.json"
        box.write_text(json.dumps({"lower": lower.tolist(), "upper": upper.tolist()}))
        out["dense 784-200x3-10"] = (model, box, prop)
    acas = shared_data_dir() / "acasxu"
    if "acas" in names and (acas / "ACASXU_run2a_1_1_batch_2000.onnx").exists():
        from relumilp.frontends.vnnlib import read_vnnlib

        model, prop = acas / "ACASXU_run2a_1_1_batch_2000.onnx", acas / "prop_2.vnnlib"
        domain, _ = next(iter(read_vnnlib(prop, 5, 5).regions()))
        box = folder / "acas-box.json"
        box.write_text(json.dumps({"lower": domain.lower.tolist(), "upper": domain.upper.tolist()}))
        out["ACAS Xu 1_1"] = (model, box, prop)
    elif "acas" in names:
        print(f"ACAS Xu skipped: no networks in {acas}", file=sys.stderr)
    return out


def command_line(command, model, box, prop, method, limit) -> list[str]:
    base = [sys.executable, "-m", "relumilp", command]
    tighten = [] if method == "default" else ["--tighten", method]
    if command == "verify":
        return base + [str(model), str(prop), *tighten, "--time-limit", str(limit), "--json"]
    args = base + [str(model), "--input-bounds", str(box), *tighten, "--time-limit", str(limit), "--json"]
    if command == "solve":
        return args + ["--maximize", "0"]
    return args + (["--workers", "2"] if method in ("lp", "milp") else [])


def outcome(command, stdout: str) -> str:
    try:
        data = json.loads(stdout)
    except ValueError:
        return "no JSON"
    if command == "solve":
        return data["status"]
    if command == "verify":
        return data["result"]
    return "complete" if data.get("complete", True) else "partial"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limits", type=float, nargs="+", default=[5.0, 20.0])
    parser.add_argument("--nets", nargs="+", default=["acas", "random", "dense"], choices=("acas", "random", "dense"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "time_limits.csv",
                        help="the CSV to write (default: benchmarks/results/time_limits.csv)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for net_name, (model, box, prop) in problems(Path(tmp), args.nets).items():
            for limit in args.limits:
                for command in COMMANDS:
                    for method in ("default", *METHODS):
                        cmd = command_line(command, model, box, prop, method, limit)
                        start = time.perf_counter()
                        # a hard cap far above the promise, so a regression cannot hang the benchmark
                        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10 * limit + 120)
                        wall = time.perf_counter() - start
                        row = {"network": net_name, "command": command, "tighten": method, "limit_s": limit,
                               "wall_s": round(wall, 2), "overshoot_s": round(wall - limit, 2),
                               "within_promise": wall <= 1.1 * limit + 2.0, "exit": done.returncode,
                               "outcome": outcome(command, done.stdout)}
                        rows.append(row)
                        print(f"{net_name:<14} {command:<7} {method:<9} {limit:>5g} s: {wall:7.2f} s "
                              f"({row['outcome']})", file=sys.stderr, flush=True)
    header = list(rows[0]) if rows else []
    print(markdown(header, rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_rows(args.out, header, rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
