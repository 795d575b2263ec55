"""Tables and summaries of the study, from its rows (a fresh run or the CSV read back with ``--report``).

:func:`summaries` gives the headline numbers (relumilp vs OMLT, post-processing effects, best recipe vs
plain) written to ``<out>/study_<name>_summary.json``; :func:`markdown` writes ``<out>/study_<name>.md``
and :func:`training_markdown` the training preset's ``training.md`` / ``training.csv`` (one row per
trained network). Nothing here trains or solves.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from benchmarks.study.runner import Config


def _fmt(value, digits: int = 3) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0:
            return "0"
        if abs(value) >= 1e4 or abs(value) < 1e-3:
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value)


def _geomean(values) -> float | None:
    values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return float(np.exp(np.mean(np.log(values)))) if values else None


def _md_table(header: list[str], body: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in body]
    return lines


def _solved(row) -> bool:
    return row.get("status") == "optimal"


def _time_cell(row) -> str:
    """Solve time, ``>T`` at a time limit, the status otherwise."""
    status = row.get("status")
    if status == "optimal":
        return _fmt(row["solve_s"])
    if status == "time_limit":
        return f">{_fmt(row['time_limit'])} (limit)"
    return str(status)


def summaries(rows: list[dict], config: Config) -> dict:
    """Headline numbers: relumilp vs OMLT, post-processing effects, best recipe vs plain."""
    out: dict = {}
    # relumilp (interval, no scaling: the same bound class as OMLT) vs OMLT
    peer = [r for r in rows if r.get("tightening") == "interval" and r.get("scaling") == "off"
            and _solved(r) and r.get("omlt_status") == "optimal"]
    if peer:
        out["omlt"] = {
            "pairs": len(peer), "agree": sum(bool(r.get("omlt_agree")) for r in peer),
            "max_diff": max(r.get("omlt_diff", 0.0) for r in peer),
            "geomean_total_ratio": _geomean([r.get("omlt_time_ratio") for r in peer]),
            "geomean_solve_ratio": _geomean([r.get("omlt_solve_ratio") for r in peer]),
            "geomean_build_ratio": _geomean([r["omlt_build_s"] / max(r["build_s"], 1e-9) for r in peer]),
            "median_total_ratio": float(np.median([r["omlt_time_ratio"] for r in peer])),
        }
    omlt_any = [r for r in rows if r.get("tightening") == "interval" and r.get("scaling") == "off"
                and r.get("omlt_status") not in (None, "n/a")]
    out["omlt_status_counts"] = {
        "relumilp_optimal_omlt_timeout": sum(_solved(r) and r.get("omlt_status") == "time_limit" for r in omlt_any),
        "relumilp_timeout_omlt_optimal": sum(r.get("status") == "time_limit" and r.get("omlt_status") == "optimal"
                                             for r in omlt_any),
        "both_timeout": sum(r.get("status") == "time_limit" and r.get("omlt_status") == "time_limit" for r in omlt_any),
    }
    # post-processing vs interval/off on the same network (paired)
    by_net: dict = {}
    for r in rows:
        by_net.setdefault((r["problem"], r["architecture"], r["training"]), []).append(r)
    effects = {}
    for tighten in config.tightenings:
        for scale in ("off", "on"):
            ratios, solve_ratios, wins, losses, n = [], [], 0, 0, 0
            for group in by_net.values():
                base = next((r for r in group if r["tightening"] == "interval" and r["scaling"] == "off"), None)
                other = next((r for r in group if r["tightening"] == tighten and r["scaling"] == scale), None)
                if base is None or other is None or other.get("status") in ("n/a", "error") or other is base:
                    continue
                n += 1
                if _solved(base) and _solved(other):
                    ratios.append(base["total_s"] / max(other["total_s"], 1e-9))
                    solve_ratios.append(base["solve_s"] / max(other["solve_s"], 1e-9))
                elif _solved(other) and base.get("status") == "time_limit":
                    wins += 1
                elif _solved(base) and other.get("status") == "time_limit":
                    losses += 1
            if n:
                effects[f"{tighten}/{scale}"] = {"networks": n, "geomean_speedup_total": _geomean(ratios),
                                                 "geomean_speedup_solve": _geomean(solve_ratios),
                                                 "solved_only_here": wins, "lost_here": losses,
                                                 "faster": sum(x > 1 for x in ratios), "slower": sum(x < 1 for x in ratios)}
    out["post_processing"] = effects
    # best recipe within 1.5x of plain's test MSE vs plain with interval bounds, per problem/architecture
    best = []
    for (problem, arch) in sorted({(r["problem"], r["architecture"]) for r in rows}):
        group = [r for r in rows if r["problem"] == problem and r["architecture"] == arch]
        plain = next((r for r in group if r["training"] == "plain" and r["tightening"] == "interval"
                      and r["scaling"] == "off"), None)
        if plain is None:
            continue
        ok = [r for r in group if _solved(r) and r["test_mse"] <= 1.5 * plain["test_mse"]]
        any_ = [r for r in group if _solved(r)]
        entry = {"problem": problem, "architecture": arch, "plain_status": plain.get("status"),
                 "plain_total_s": plain.get("total_s"), "plain_time_limit": plain.get("time_limit"),
                 "plain_test_mse": plain["test_mse"]}
        for label, pool in (("accurate", ok), ("any", any_)):
            if pool:
                r = min(pool, key=lambda r: r["total_s"])
                entry[label] = {"training": r["training"], "tightening": r["tightening"], "scaling": r["scaling"],
                                "total_s": r["total_s"], "mse_ratio": r["test_mse"] / plain["test_mse"],
                                "speedup": (plain["total_s"] / r["total_s"]) if _solved(plain) else None,
                                "speedup_at_least": None if _solved(plain) else
                                (plain.get("total_s") or plain["time_limit"]) / r["total_s"]}
        best.append(entry)
    out["best_vs_plain"] = best
    # training recipes vs plain on the same problem and architecture (interval bounds, no scaling)
    recipes = {}
    for spec in dict.fromkeys(r["training"] for r in rows):
        speed, mse, stable, binaries, solved = [], [], [], [], 0
        for (problem, arch) in {(r["problem"], r["architecture"]) for r in rows}:
            pick = lambda t: next((r for r in rows if r["problem"] == problem and r["architecture"] == arch
                                   and r["training"] == t and r["tightening"] == "interval" and r["scaling"] == "off"), None)
            base, me = pick("plain"), pick(spec)
            if base is None or me is None:
                continue
            mse.append(me["test_mse"] / base["test_mse"])
            if me.get("stable_pct") is not None:
                stable.append(me["stable_pct"])
                binaries.append(me["binaries"])
            solved += _solved(me)
            if _solved(base) and _solved(me):
                speed.append(base["solve_s"] / max(me["solve_s"], 1e-9))
        if mse:
            recipes[spec] = {"networks": len(mse), "solved": solved, "geomean_solve_speedup": _geomean(speed),
                             "min_speedup": min(speed) if speed else None, "max_speedup": max(speed) if speed else None,
                             "geomean_mse_ratio": _geomean(mse), "mean_stable_pct": float(np.mean(stable)) if stable else None,
                             "mean_binaries": float(np.mean(binaries)) if binaries else None}
    out["recipes"] = recipes
    # big-M vs depth (plain networks, interval bounds, no scaling)
    out["big_m_depth"] = [{"problem": r["problem"], "architecture": r["architecture"], "training": r["training"],
                           "max_M_by_layer": r.get("max_M_by_layer", "")}
                          for r in rows if r["tightening"] == "interval" and r["scaling"] == "off"
                          and r["training"] == "plain" and r.get("max_M_by_layer")]
    return out


def markdown(config: Config, rows: list[dict], env: dict, summary: dict) -> str:
    lines = [f"# Study `{config.name}`", "",
             f"Generated by `{env['command']}` on {env['date']}; "
             f"{env['machine']}; load average {env['load_start']} at start, {env.get('load_end', '?')} at the end; "
             f"wall time {env.get('wall_s', 0):.0f} s.", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".", "",
             f"Settings: {config.epochs} epochs, batch {config.batch_size}, lr {config.lr}, seed {config.seed}; "
             f"time limit {config.time_limit:g} s per solve"
             + (f" ({', '.join(f'{k}: {v:g} s' for k, v in config.time_limits.items())})" if config.time_limits else "")
             + f"; MILP-OBBT {config.milp_time_limit:g} s per neuron; HiGHS with 1 thread, "
             "mip_feasibility_tolerance = primal_feasibility_tolerance = 1e-9 for relumilp and OMLT alike; "
             "torch training with 1 thread.", ""]
    for item in env.get("skipped", []):
        lines += [f"Skipped: {item}", ""]
    if env.get("reused_rows"):
        lines += [f"{env['reused_rows']} rows were reused from the previous run's CSV (`--resume`): their times "
                  "were measured in that run.", ""]
    om = summary.get("omlt")
    if om:
        lines += ["## relumilp vs OMLT (interval bounds, no scaling, both optimal)", "",
                  f"{om['pairs']} networks; optima agree (|diff| <= 1e-6 max(1, |opt|)) on {om['agree']}, "
                  f"max |diff| {_fmt(om['max_diff'])}. OMLT time / relumilp time (geometric mean): total "
                  f"{_fmt(om['geomean_total_ratio'])}x, build {_fmt(om['geomean_build_ratio'])}x, solve "
                  f"{_fmt(om['geomean_solve_ratio'])}x (median total {_fmt(om['median_total_ratio'])}x).", ""]
    counts = summary.get("omlt_status_counts")
    if counts and any(counts.values()):
        lines += [f"Timeouts: relumilp optimal / OMLT at the limit on {counts['relumilp_optimal_omlt_timeout']} networks, "
                  f"the reverse on {counts['relumilp_timeout_omlt_optimal']}, both at the limit on {counts['both_timeout']}.", ""]
    if summary.get("post_processing"):
        lines += ["## Post-processing vs interval bounds without scaling (same network, paired)", "",
                  "Speedup = total time (bounds + build + solve) of interval/off divided by that of the variant, "
                  "geometric mean over networks both solve; 'solved only here' = interval/off hit the time limit.", ""]
        body = [[k, v["networks"], v["geomean_speedup_total"], v["geomean_speedup_solve"], v["faster"], v["slower"],
                 v["solved_only_here"], v["lost_here"]] for k, v in summary["post_processing"].items()]
        lines += _md_table(["tightening/scaling", "networks", "geomean speedup (total)", "geomean speedup (solve only)",
                            "faster", "slower", "solved only here", "timed out only here"], body) + [""]
    if summary.get("recipes"):
        lines += ["## Training recipes vs plain (interval bounds, no scaling, same problem and architecture)", "",
                  "Speedup = plain's solve time / the recipe's (geometric mean over the networks both solve, with "
                  "min and max); MSE ratio = test MSE / plain's (geometric mean).", ""]
        body = [[k, v["networks"], v["solved"], v["geomean_solve_speedup"], v["min_speedup"], v["max_speedup"],
                 v["geomean_mse_ratio"], v["mean_stable_pct"], v["mean_binaries"]] for k, v in summary["recipes"].items()]
        lines += _md_table(["training", "networks", "solved", "geomean speedup", "min", "max", "MSE / plain",
                            "mean % stable", "mean binaries"], body) + [""]
    if summary.get("best_vs_plain"):
        lines += ["## Best training + post-processing vs plain (interval, no scaling)", "",
                  "'accurate' = test MSE within 1.5x of the plain network's; total time = bounds + build + solve.", ""]
        body = []
        for e in summary["best_vs_plain"]:
            plain_time = _fmt(e["plain_total_s"]) if e["plain_status"] == "optimal" else f">{_fmt(e['plain_time_limit'])}"
            for label in ("accurate", "any"):
                b = e.get(label)
                if not b:
                    body.append([e["problem"], e["architecture"], plain_time, label, "none solved", "", "", "", ""])
                    continue
                speed = _fmt(b["speedup"]) if b["speedup"] is not None else f">={_fmt(b['speedup_at_least'])}"
                body.append([e["problem"], e["architecture"], plain_time, label, b["training"],
                             f"{b['tightening']}/{b['scaling']}", b["total_s"], b["mse_ratio"], speed])
        lines += _md_table(["problem", "arch", "plain total s", "pool", "training", "post-processing", "total s",
                            "MSE / plain", "speedup"], body) + [""]
    if summary.get("big_m_depth"):
        lines += ["## Largest big-M per hidden layer (plain training, interval bounds)", ""]
        lines += _md_table(["problem", "arch", "largest big-M, layer 1/2/..."],
                           [[e["problem"], e["architecture"], e["max_M_by_layer"]] for e in summary["big_m_depth"]]) + [""]
    lines += ["## Per network", "",
              "Times are totals (bounds + build + solve, s) per post-processing; '>T' = time limit; stability and "
              "big-M with interval bounds unless marked; max rel fwd = largest |objective - c.f(x*)| / max(1, |objective|) "
              "over the variants; OMLT = its build + solve with interval bounds.", ""]
    lines += network_table(rows) + [""]
    lines += ["## All rows", "",
              "rel MSE = test MSE / variance of the test targets (the CSV also has the MSE in original units); "
              "regions: count on the input domain ('>=' = lower bound); time = solve time (s), '>T' = time limit; "
              "fwd = |objective - c.f(x*)|; OMLT ratio = OMLT (build + solve) / relumilp (bounds + build + solve).", ""]
    header = ["problem", "arch", "training", "tighten", "scale", "rel MSE", "regions", "% stable", "bin", "max M",
              "bounds s", "build s", "solve", "optimum", "fwd", "OMLT solve", "agree", "OMLT ratio"]
    body = []
    for r in rows:
        regions = "" if r.get("regions") is None else (("" if r.get("regions_exact") else ">=") + str(r["regions"]))
        omlt_solve = r.get("omlt_status", "")
        if omlt_solve == "optimal":
            omlt_solve = _fmt(r.get("omlt_solve_s"))
        elif omlt_solve == "time_limit":
            omlt_solve = f">{_fmt(r['time_limit'])}"
        elif omlt_solve == "n/a" and "cannot read" in r.get("omlt_note", ""):
            omlt_solve = "cannot read"
        body.append([r["problem"], r["architecture"], r["training"], r["tightening"], r["scaling"], r["test_rel_mse"],
                     regions, r.get("stable_pct"), r.get("binaries"), r.get("max_M"), r.get("bounds_s"),
                     r.get("build_s"), _time_cell(r) if r.get("status") not in ("n/a", "error") else
                     f"{r.get('status')}: {r.get('note', '')[:60]}", r.get("objective"), r.get("fwd_check"), omlt_solve,
                     r.get("omlt_agree", ""), r.get("omlt_time_ratio")])
    lines += _md_table(header, body)
    return "\n".join(lines) + "\n"


def network_table(rows: list[dict]) -> list[str]:
    """One line per trained network: accuracy, regions, stability, big-M and the time of every variant."""
    if not rows:
        return ["(no rows)"]
    nets: dict = {}
    for r in rows:
        nets.setdefault((r["problem"], r["architecture"], r["training"]), {})[(r["tightening"], r["scaling"])] = r
    variants = list(dict.fromkeys((r["tightening"], r["scaling"]) for r in rows))
    tightest = list(dict.fromkeys(r["tightening"] for r in rows))[-1]

    def cell(r):
        if r is None:
            return ""
        if r.get("status") == "optimal":
            return _fmt(r["total_s"])
        if r.get("status") == "time_limit":
            return f">{_fmt(r['time_limit'])}"
        return str(r.get("status"))

    body = []
    for (problem, arch, spec), group in nets.items():
        base = group.get(("interval", "off")) or next(iter(group.values()))
        regions = "" if base.get("regions") is None else (("" if base.get("regions_exact") else ">=") + str(base["regions"]))
        tight = group.get((tightest, "off")) or {}
        omlt = base.get("omlt_status")
        omlt_cell = (_fmt(base["omlt_build_s"] + base["omlt_solve_s"]) if omlt == "optimal" else
                     f">{_fmt(base['time_limit'])}" if omlt == "time_limit" else
                     "cannot read" if omlt == "n/a" and "cannot read" in (base.get("omlt_note") or "") else (omlt or ""))
        agree = "" if omlt != "optimal" or base.get("status") != "optimal" else ("yes" if base.get("omlt_agree") else "NO")
        body.append([problem, arch, spec, base["test_rel_mse"], regions, base.get("stable_pct"), tight.get("stable_pct"),
                     base.get("binaries"), base.get("max_M"), *[cell(group.get(v)) for v in variants],
                     base.get("objective"),
                     max((r.get("fwd_check") or 0.0) / max(1.0, abs(r.get("objective") or 0.0)) for r in group.values()),
                     omlt_cell, agree])
    header = ["problem", "arch", "training", "rel MSE", "regions", "% stable", f"% stable ({tightest})", "bin",
              "max M", *[f"{t}/{sc}" for t, sc in variants], "optimum", "max rel fwd", "OMLT", "agree"]
    return _md_table(header, body)


def training_markdown(config: Config, rows: list[dict], env: dict) -> tuple[str, list[dict]]:
    """The training benchmark: one row per trained network (interval and LP columns side by side)."""
    table = []
    for (problem, arch, spec) in dict.fromkeys((r["problem"], r["architecture"], r["training"]) for r in rows):
        group = {r["tightening"]: r for r in rows if (r["problem"], r["architecture"], r["training"]) == (problem, arch, spec)}
        first = next(iter(group.values()))
        entry = {"problem": problem, "architecture": arch, "training": spec, "test_mse": first["test_mse"],
                 "test_rel_mse": first["test_rel_mse"], "regions": first.get("regions"),
                 "regions_method": first.get("regions_method"), "regions_exact": first.get("regions_exact"),
                 "hidden_after_prune": first.get("hidden_after_prune")}
        for t, r in group.items():
            entry[f"stable_pct_{t}"] = r.get("stable_pct")
            entry[f"binaries_{t}"] = r.get("binaries")
            entry[f"status_{t}"] = r.get("status")
            entry[f"solve_s_{t}"] = r.get("solve_s")
            entry[f"total_s_{t}"] = r.get("total_s")
            entry[f"time_limit_{t}"] = r.get("time_limit")
            entry[f"objective_{t}"] = r.get("objective")
            entry[f"fwd_check_{t}"] = r.get("fwd_check")
        table.append(entry)
    tightenings = config.tightenings
    solved = [t for t in tightenings if config.solve_tightenings is None or t in config.solve_tightenings]
    for entry in table:
        plain = next((e for e in table if e["problem"] == entry["problem"] and e["architecture"] == entry["architecture"]
                      and e["training"] == "plain"), None)
        if plain is None:
            continue
        entry["mse_vs_plain"] = entry["test_mse"] / plain["test_mse"]
        for t in tightenings:
            mine, base = entry.get(f"total_s_{t}"), plain.get(f"total_s_{t}")
            if entry.get(f"status_{t}") != "optimal" or not mine:
                continue
            if plain.get(f"status_{t}") == "optimal":
                entry[f"speedup_{t}"], entry[f"speedup_{t}_lower_bound"] = base / mine, False
            elif plain.get(f"status_{t}") == "time_limit":
                entry[f"speedup_{t}"], entry[f"speedup_{t}_lower_bound"] = base / mine, True
        speedups = [entry.get(f"speedup_{t}") for t in tightenings if entry.get(f"speedup_{t}")]
        entry["best_speedup"] = max(speedups) if speedups else None
        entry["goal_met"] = bool(entry["mse_vs_plain"] <= 1.5 and (entry["best_speedup"] or 0) >= 100)
    lines = ["# Training benchmark", "",
             f"Generated by `{env['command']}` on {env['date']}; {env['machine']}; "
             f"load average {env['load_start']} at start, {env.get('load_end', '?')} at the end; wall time "
             f"{env.get('wall_s', 0):.0f} s. Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".",
             "", f"{config.epochs} epochs, batch {config.batch_size}, lr {config.lr}, seed {config.seed}. HiGHS (1 thread) "
             f"time limit {config.time_limit:g} s per solve"
             + (f" ({', '.join(f'{k}: {v:g} s' for k, v in config.time_limits.items())})" if config.time_limits else "")
             + ". Time = bounds + build + solve to the proven global optimum; speedup = plain's time / this time "
             "with the same bounds ('>=' when plain hit its time limit: a lower bound). Goal: test MSE within 1.5x "
             "of plain and >= 100x faster. Binaries = unstable neurons of the pruned network under those bounds.", ""]
    if solved != list(tightenings):
        lines += [f"Only the MILP with {', '.join(solved)} bounds is solved; the other bound columns are statistics of "
                  "the bounds alone.", ""]
    if env.get("reused_rows"):
        lines += [f"{env['reused_rows']} rows were reused from the previous run's CSV (`--resume`): their times were "
                  "measured in that run.", ""]
    header = ["problem", "arch", "training", "test MSE", "MSE / plain", "regions"]
    for t in tightenings:
        header += [f"% stable ({t})", f"bin ({t})"]
    for t in solved:
        header += [f"time {t} (s)", f"speedup ({t})", f"optimum ({t})"]
    header += ["goal"]
    body = []
    for e in table:
        regions = "" if e.get("regions") is None else (("" if e.get("regions_exact") else ">=") + str(e["regions"]))
        cells = [e["problem"], e["architecture"], e["training"], e["test_mse"], e.get("mse_vs_plain"), regions]
        for t in tightenings:
            cells += [e.get(f"stable_pct_{t}"), e.get(f"binaries_{t}")]
        for t in solved:
            status = e.get(f"status_{t}")
            time_cell = _fmt(e.get(f"total_s_{t}")) if status == "optimal" else (
                f">{_fmt(e.get(f'time_limit_{t}'))}" if status == "time_limit" else str(status))
            speed = e.get(f"speedup_{t}")
            speed = "" if speed is None else (">=" if e.get(f"speedup_{t}_lower_bound") else "") + _fmt(speed)
            cells += [time_cell, speed, e.get(f"objective_{t}") if status == "optimal" else ""]
        cells.append("MET" if e.get("goal_met") else "")
        body.append(cells)
    lines += _md_table(header, body)
    met = [e for e in table if e.get("goal_met")]
    lines += ["", f"Goal (<= 1.5x plain's test MSE and >= 100x faster) met by {len(met)} of {len(table)} networks"
              + (": " + ", ".join(f"{e['problem']} {e['training']}" for e in met) if met else "") + "."]
    return "\n".join(lines) + "\n", table
