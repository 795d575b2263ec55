"""Where relumilp stands on a VNN-COMP benchmark family: the latest answer per instance against the published ones.

Usage::

    python -m benchmarks.vnncomp_standing PUBLISHED.csv RESULTS.csv [RESULTS.csv ...] [--out standing.csv]
        [--settled PROPERTY=ANSWER ...]

``PUBLISHED.csv`` is a family's ``published_answers.csv`` (``onnx,vnnlib,timeout,answer,note``; answers
``holds`` / ``violated`` / ``unknown``). Each ``RESULTS.csv`` is an output of :mod:`benchmarks.vnncomp`;
when several answer one instance, the one given **last** on the command line counts (list them oldest
first), and its file is named in the table. Prints one row per instance (the published answer, relumilp's,
its time and time limit, and whether they agree: ``yes``, ``no`` when one side is ``unknown``,
``CONTRADICTION`` for holds against violated) and one summary row per network: instances, run, solved,
holds, violated, unknown, agreeing answers, contradictions, and the median and largest time of the decided
ones. Exit 1 on a contradiction: a published answer can be wrong, but each one needs an explanation by
independent means; ``--settled PROPERTY=ANSWER`` (a property file name) replaces the published answer of
an instance so settled, and its row says ``settled``. ``docs/benchmarks.md`` settles two verivital
instances that way (``benchmarks/verivital_disputed.py``, with no relumilp code).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

from benchmarks.tables import markdown, save_rows

INSTANCE_FIELDS = ["network", "property", "published", "relumilp", "time", "time_limit", "agree", "source"]
SUMMARY_FIELDS = ["network", "instances", "run", "solved", "holds", "violated", "unknown", "agree",
                  "contradictions", "median s (decided)", "max s (decided)"]


def _agreement(published: str, ours: str) -> str:
    if {published, ours} == {"holds", "violated"}:
        return "CONTRADICTION"
    return "yes" if published == ours else "no"


def standing(published_path: Path, result_paths: list[Path], settled: dict[str, str] | None = None
             ) -> tuple[list[dict], list[dict]]:
    """Per-instance rows and per-network summary rows (see the module docstring); ``settled`` maps a
    property file name to the answer that replaces the published one."""
    settled = settled or {}
    latest: dict[tuple[str, str], tuple[dict, str]] = {}
    for path in result_paths:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                latest[(row["network"], row["property"])] = (row, path.name)
    rows = []
    with open(published_path, newline="") as handle:
        for entry in csv.DictReader(handle):
            key = (Path(entry["onnx"]).name, Path(entry["vnnlib"]).name)
            found, source = latest.get(key, (None, ""))
            ours = found["result"] if found else "not run"
            published = entry["answer"]
            if key[1] in settled:
                published = f"{published}, settled {settled[key[1]]}"
            rows.append({
                "network": key[0], "property": key[1], "published": published, "relumilp": ours,
                "time": f"{float(found['time']):.1f}" if found else "", "time_limit": found["time_limit"] if found else "",
                "agree": _agreement(settled.get(key[1], entry["answer"]), ours) if found else "", "source": source,
            })
    summaries = []
    for network in dict.fromkeys(r["network"] for r in rows):
        mine = [r for r in rows if r["network"] == network]
        run = [r for r in mine if r["relumilp"] != "not run"]
        decided = [float(r["time"]) for r in run if r["relumilp"] in ("holds", "violated")]
        count = lambda answer: sum(r["relumilp"] == answer for r in run)
        summaries.append({
            "network": network, "instances": len(mine), "run": len(run), "solved": len(decided),
            "holds": count("holds"), "violated": count("violated"), "unknown": count("unknown"),
            "agree": sum(r["agree"] == "yes" for r in run),
            "contradictions": sum(r["agree"] == "CONTRADICTION" for r in run),
            "median s (decided)": f"{statistics.median(decided):.1f}" if decided else "-",
            "max s (decided)": f"{max(decided):.1f}" if decided else "-",
        })
    return rows, summaries


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vnncomp_standing", description=__doc__.split("\n\n")[0])
    parser.add_argument("published", type=Path, help="the family's published_answers.csv")
    parser.add_argument("results", type=Path, nargs="+", help="result CSVs of benchmarks.vnncomp, oldest first")
    parser.add_argument("--out", type=Path, help="write the per-instance rows to this CSV")
    parser.add_argument("--settled", action="append", default=[], metavar="PROPERTY=ANSWER",
                        help="a property file name whose published answer was overturned by independent means")
    args = parser.parse_args(argv)
    settled = {}
    for item in args.settled:
        name, _, answer = item.partition("=")
        if answer not in ("holds", "violated"):
            parser.error(f"--settled {item!r}: give PROPERTY=holds or PROPERTY=violated")
        settled[name] = answer
    for path in (args.published, *args.results):
        if not path.is_file():
            parser.error(f"{path} is not a file")
    rows, summaries = standing(args.published, args.results, settled)
    print(markdown(INSTANCE_FIELDS, rows))
    print()
    print(markdown(SUMMARY_FIELDS, summaries))
    if args.out:
        save_rows(args.out, INSTANCE_FIELDS, rows)
    return int(any(r["agree"] == "CONTRADICTION" for r in rows))


if __name__ == "__main__":
    sys.exit(main())
