"""Start-up cost of the command line: ``relumilp --help`` and the README's main command, end to end.

Each command runs as a fresh ``python -m relumilp`` subprocess (imports included), ``--repeats`` times;
the table gives the best and the median wall time next to the targets of issue #16 (``--help`` within
0.5 s, the main command within 3 s on an idle 2-core machine), and a breakdown of the main command's
own ``times`` (bounds, build, solve). Writes ``benchmarks/results/startup.csv``.

    python -m benchmarks.startup [--repeats 5]
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "relumilp --help": (["--help"], 0.5),
    "relumilp solve --example peaks --maximize 0": (
        ["solve", "--example", "peaks", "--maximize", "0", "--json"], 3.0),
    "relumilp solve --example peaks --maximize 0 --tighten lp": (
        ["solve", "--example", "peaks", "--maximize", "0", "--tighten", "lp", "--json"], None),
}


def timed(args: list[str]) -> tuple[float, float, str]:
    """Wall time, CPU time (user + system of the child: what a busy machine does not inflate), stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "relumilp", *args], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"relumilp {' '.join(args)} failed: {proc.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for label, (argv, target) in COMMANDS.items():
        walls, cpus, inner = [], [], {}
        for _ in range(args.repeats):
            wall, cpu, out = timed(argv)
            walls.append(wall)
            cpus.append(cpu)
            if argv[0] == "solve":
                inner = json.loads(out)["times"]
        rows.append({"command": label, "best_s": round(min(walls), 3), "median_s": round(statistics.median(walls), 3),
                     "best_cpu_s": round(min(cpus), 3),
                     "target_s": target, "met": None if target is None else min(walls) <= target,
                     "inner": " ".join(f"{k} {v:.2f}s" for k, v in inner.items())})
    print("| command | best wall (s) | median wall (s) | best CPU (s) | target (s) | met | inside the command |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| `{r['command']}` | {r['best_s']} | {r['median_s']} | {r['best_cpu_s']} | {r['target_s']} "
              f"| {'-' if r['met'] is None else 'yes' if r['met'] else 'no'} | {r['inner']} |")
    out = ROOT / "benchmarks" / "results" / "startup.csv"
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
