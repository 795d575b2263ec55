"""Matplotlib figures of the study, from its rows: ``<figures>/study_<name>_*.png`` (solve effort vs %
stable neurons and vs linear regions, the accuracy / optimisation-cost trade-off, big-M by layer).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from relumilp._io import any_file, atomic_path

if TYPE_CHECKING:
    from benchmarks.study.runner import Config


def _save_figure(fig, path: Path) -> Path:
    """Lay out, tidy the log axes, write ``path`` whole (via a temporary file) and close ``fig``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    for ax in fig.axes:
        _no_minor_labels(ax)
    with atomic_path(path, ours=any_file) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _no_minor_labels(ax) -> None:
    """Readable log axes: plain numbers at 1-2-5 steps when the axis spans less than 2 decades, else at
    powers of ten; no minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() != "log" or lo <= 0:
            continue
        decades = math.log10(hi / lo)
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades < 2 else (1.0,)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1000 else f"{v:.3g}"))
        axis.set_minor_formatter(NullFormatter())


def make_figures(rows: list[dict], config: Config, figures_dir: Path, prefix: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures_dir.mkdir(parents=True, exist_ok=True)
    trainings = list(dict.fromkeys(r["training"] for r in rows))
    cmap = plt.get_cmap("tab10" if len(trainings) <= 10 else "tab20")
    colors = {t: cmap(i % cmap.N) for i, t in enumerate(trainings)}
    problems = list(dict.fromkeys(r["problem"] for r in rows))
    markers = dict(zip(problems, "os^Dv"))
    solved = [r for r in rows if r.get("status") in ("optimal", "time_limit") and r.get("solve_s") is not None]
    written = []

    def scatter(ax, xs_key, rows_, xlog=False):
        for r in rows_:
            x = r.get(xs_key)
            if x is None or x == "":
                continue
            timeout = r["status"] != "optimal"
            y = r["total_s"]
            ax.scatter(x, y, marker=markers.get(r["problem"], "o"), s=36,
                       facecolors="none" if timeout else colors[r["training"]], edgecolors=colors[r["training"]],
                       linewidths=1.2, alpha=0.85)
        ax.set_yscale("log")
        if xlog:
            ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)

    def legend(fig, with_problems=True):
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], marker="o", linestyle="", color=colors[t], label=t) for t in trainings]
        if with_problems:
            handles += [Line2D([], [], marker=markers[p], linestyle="", color="gray", label=p) for p in problems]
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", color="gray",
                              label="hit time limit"))
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)

    # 1. time vs % stable, one panel per tightening
    tightenings = list(dict.fromkeys(r["tightening"] for r in solved))
    if not tightenings:
        return written
    ncols = len(tightenings) if len(tightenings) <= 2 else 2
    nrows = math.ceil(len(tightenings) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.6 * nrows), sharex=True, sharey=True, squeeze=False)
    for ax, t in zip(axes.ravel(), tightenings):
        scatter(ax, "stable_pct", [r for r in solved if r["tightening"] == t])
        ax.set_title(f"{t} bounds", fontsize=10)
    for ax in axes.ravel()[len(tightenings):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("% stable neurons")
    for ax in axes[:, 0]:
        ax.set_ylabel("bounds + build + solve (s)")
    fig.suptitle("Solve effort vs neuron stability (hollow = time limit)", fontsize=11)
    legend(fig)
    written.append(_save_figure(fig, figures_dir / f"{prefix}_time_vs_stable.png"))

    # 2. time vs linear regions (interval bounds, no scaling: one point per network)
    base = [r for r in solved if r["tightening"] == tightenings[0] and r["scaling"] == "off"]
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    if any(r.get("regions") not in (None, "") for r in base):
        scatter(ax, "regions", base, xlog=True)
        ax.set_xlabel("linear regions on the input domain (hollow: time limit; sampled counts are lower bounds)")
    else:
        ax.text(0.5, 0.5, "linear-region counting not available", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel(f"time ({tightenings[0]} bounds, no scaling) (s)")
    ax.set_title("Solve effort vs linear regions", fontsize=11)
    legend(fig)
    written.append(_save_figure(fig, figures_dir / f"{prefix}_time_vs_regions.png"))

    # 3. the trade-off: test error vs time, one panel per problem (best post-processing per network)
    fig, axes = plt.subplots(1, len(problems), figsize=(4.4 * len(problems), 3.8), squeeze=False)
    for ax, p in zip(axes[0], problems):
        nets: dict = {}
        for r in solved:
            if r["problem"] != p:
                continue
            key = (r["architecture"], r["training"])
            best = nets.get(key)
            if best is None or (r["status"] == "optimal", -r["total_s"]) > (best["status"] == "optimal", -best["total_s"]):
                nets[key] = r
        archs = list(dict.fromkeys(k[0] for k in nets))
        arch_marker = dict(zip(archs, "os^Dv"))
        for (arch, t), r in nets.items():
            timeout = r["status"] != "optimal"
            ax.scatter(r["total_s"], r["test_rel_mse"], marker=arch_marker[arch], s=44,
                       facecolors="none" if timeout else colors[t], edgecolors=colors[t], linewidths=1.2)
        for arch in archs:
            ax.scatter([], [], marker=arch_marker[arch], color="gray", label=arch)
        plain = nets.get((archs[0], "plain")) if len(archs) == 1 else None
        if plain is not None and config.training_table:  # the goal region: <= 1.5x plain's MSE, >= 100x faster
            ax.axhline(1.5 * plain["test_rel_mse"], color="black", linestyle=":", linewidth=1)
            ax.axvline(plain["total_s"] / 100.0, color="black", linestyle=":", linewidth=1)
            ax.scatter([], [], marker="", label="goal: 1.5x MSE, 100x time")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(p, fontsize=10)
        ax.set_xlabel("best time over post-processing (s)")
        ax.legend(fontsize=7, loc="best")
    axes[0][0].set_ylabel("test MSE / variance")
    fig.suptitle("Trade-off: accuracy vs optimisation cost (hollow = time limit)", fontsize=11)
    legend(fig, with_problems=False)
    written.append(_save_figure(fig, figures_dir / f"{prefix}_tradeoff.png"))

    # 4. big-M per layer vs depth (each bound method), plain networks: colour = architecture, line = bounds
    deepest = max(r["depth"] for r in rows)
    pick = [r for r in rows if r.get("max_M_by_layer") and r["scaling"] == "off" and r["training"] == "plain"]
    if pick:
        from matplotlib.lines import Line2D

        fig, axes = plt.subplots(1, len(problems), figsize=(4.2 * len(problems), 3.6), squeeze=False)
        all_tightenings = list(dict.fromkeys(r["tightening"] for r in rows))
        styles = dict(zip(all_tightenings, ["-", "--", ":", "-."]))
        depths = sorted({r["depth"] for r in pick})
        depth_color = {d: plt.get_cmap("tab10")(i) for i, d in enumerate(depths)}
        for ax, p in zip(axes[0], problems):
            for r in (r for r in pick if r["problem"] == p):
                ms = [float(v) for v in r["max_M_by_layer"].split("/")]
                ax.plot(range(1, len(ms) + 1), np.maximum(ms, 1e-3), styles[r["tightening"]], marker="o",
                        color=depth_color[r["depth"]])
            archs = ", ".join(dict.fromkeys(r["architecture"] for r in pick if r["problem"] == p))
            ax.set_yscale("log")
            ax.set_xticks(range(1, deepest + 1))
            ax.set_xlabel("hidden layer")
            ax.set_title(f"{p} ({archs})", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].set_ylabel("largest big-M of unstable neurons")
        handles = [Line2D([], [], color=depth_color[d], marker="o", label=f"{d} hidden layers") for d in depths]
        handles += [Line2D([], [], color="gray", linestyle=styles[t], label=f"{t} bounds") for t in all_tightenings]
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False,
                   handlelength=3.5)
        fig.suptitle("Big-M coefficients by layer (plain training, no scaling)", fontsize=11)
        written.append(_save_figure(fig, figures_dir / f"{prefix}_bigm_depth.png"))
    return written
