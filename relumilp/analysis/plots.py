"""Figures of a network analysis (PNG, written whole or not at all). Needs matplotlib (``pip install relumilp[plot]``).

Every figure function takes a ``path``; with ``path=None`` it returns the PNG bytes instead of writing a
file (for pages that inline their figures, :mod:`relumilp.analysis.html`).

* :func:`plot_regions` -- the activation regions of a 1-D or 2-D network over its domain (from
  :func:`relumilp.analysis.regions.exact_regions`), coloured by region, beside the network's output with
  the region boundaries, and the optimum (or optima) marked;
* :func:`plot_stability` -- bars of stably active / stably inactive / unstable neurons per layer, with
  the EMPIRICAL census marked;
* :func:`plot_big_m` -- histograms of the big-M coefficients before and after tightening/scaling.

matplotlib is imported lazily and only through its object-oriented API (no pyplot, no global backend
change), so importing relumilp never requires it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from .._io import atomic_write
from .._progress import progress_bar
from ..errors import RelumilpError


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RelumilpError("plots need matplotlib: pip install relumilp[plot]") from None
    return Figure, FigureCanvasAgg


def _save(fig, path) -> Path | bytes:
    """Write ``fig`` as PNG to ``path``, or return the PNG bytes when ``path`` is None."""
    _, canvas_class = _matplotlib()
    canvas_class(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=150, bbox_inches="tight", metadata={"Software": "relumilp"})
    data = buffer.getvalue()
    if path is None:
        return data
    path = atomic_write(path, lambda handle: handle.write(data), binary=True)
    try:
        os.chmod(path, 0o644)  # a figure, not a secret (the temporary file was created 0600)
    except OSError:
        pass
    return path


def _region_colours(n: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct-looking pastel colours in random order (neighbouring regions rarely look alike)."""
    rng = np.random.default_rng(seed)
    hue = rng.permutation(n) / max(n, 1)
    hue = (hue + rng.uniform(0, 1.0 / max(n, 1), n)) % 1.0
    sat = rng.uniform(0.2, 0.55, n)
    val = rng.uniform(0.82, 1.0, n)
    from matplotlib.colors import hsv_to_rgb

    return hsv_to_rgb(np.stack([hue, sat, val], axis=1))


def plot_regions(regions, domain, path, network=None, optima: list[tuple[str, np.ndarray]] | None = None,
                 title: str | None = None, output: int = 0) -> Path | bytes:
    """Draw the activation regions (an exact :class:`~relumilp.analysis.regions.RegionCount`) and write PNG.

    For 2-D inputs: left, the regions in random colours; right (when ``network`` is given), output
    ``output`` of the network over the domain with the region boundaries. ``optima`` is a list of
    ``(label, x)`` points to mark (e.g. the global maximum found by :func:`relumilp.optimize`). For 1-D
    inputs: the output over the interval with the region boundaries and coloured bands.
    """
    Figure, _ = _matplotlib()
    from matplotlib.collections import PolyCollection

    cells = [r.vertices for r in regions.regions if r.vertices is not None]
    if not cells:
        raise RelumilpError("the region figure needs the cells of an exact region count (--regions exact)")
    d = cells[0].shape[1]
    colours = _region_colours(len(cells))
    markers = ["*", "v", "o", "s", "D"]
    heading = title or f"{regions.count} linear regions ({regions.method})"
    if d == 1:
        fig = Figure(figsize=(8, 4))
        ax = fig.add_subplot(1, 1, 1)
        for cell, colour in zip(cells, colours):
            ax.axvspan(cell[0, 0], cell[-1, 0], color=colour, alpha=0.6, lw=0)
        if network is not None:
            xs = np.linspace(domain.lower[0], domain.upper[0], 2001)
            ax.plot(xs, network.forward(xs[:, None])[:, output], color="k", lw=1.2, label=f"output {output}")
        for (label, x), marker in zip(optima or [], markers):
            if network is not None:
                ax.plot([x[0]], [network.forward(np.atleast_1d(x))[output]], marker, color="crimson", ms=12,
                        mec="k", label=label)
        ax.set_xlim(domain.lower[0], domain.upper[0])
        ax.set_xlabel("x")
        ax.set_title(heading)
        if network is not None:
            ax.legend(loc="best", fontsize=8)
        return _save(fig, path)
    if d != 2:
        raise RelumilpError("region figures are drawn for 1-D and 2-D inputs only")
    panels = 2 if network is not None else 1
    fig = Figure(figsize=(6.2 * panels, 5.6))
    ax = fig.add_subplot(1, panels, 1)
    ax.add_collection(PolyCollection(cells, facecolors=colours, edgecolors="k", linewidths=0.15))
    ax.set_title(heading)
    axes = [ax]
    if network is not None:
        ax2 = fig.add_subplot(1, 2, 2)
        n = 300
        gx = np.linspace(domain.lower[0], domain.upper[0], n)
        gy = np.linspace(domain.lower[1], domain.upper[1], n)
        X, Y = np.meshgrid(gx, gy)
        Z = network.forward(np.stack([X.ravel(), Y.ravel()], axis=1))[:, output].reshape(n, n)
        if domain.A is not None:
            Z = np.where(domain.contains(np.stack([X.ravel(), Y.ravel()], axis=1)).reshape(n, n), Z, np.nan)
        image = ax2.imshow(Z, origin="lower", extent=(gx[0], gx[-1], gy[0], gy[-1]), cmap="viridis", aspect="auto")
        fig.colorbar(image, ax=ax2, shrink=0.85, label=f"network output {output}")
        ax2.add_collection(PolyCollection(cells, facecolors="none", edgecolors="w", linewidths=0.12, alpha=0.7))
        ax2.set_title("network output and region boundaries")
        axes.append(ax2)
    for a in axes:
        a.set_xlim(domain.lower[0], domain.upper[0])
        a.set_ylim(domain.lower[1], domain.upper[1])
        a.set_xlabel("x0")
        a.set_ylabel("x1")
        a.set_aspect("equal")
        for (label, x), marker in zip(optima or [], markers):
            a.plot([x[0]], [x[1]], marker, color="crimson" if marker == "*" else "deepskyblue", ms=14, mec="k",
                   mew=0.8, label=label)
    if optima:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=1, fontsize=9, frameon=False,
                   bbox_to_anchor=(0.5, -0.06))
    return _save(fig, path)


def plot_stability(report, path, title: str | None = None) -> Path | bytes:
    """Stacked bars per layer: stably active, stably inactive (proven), unstable; EMPIRICAL census as ticks."""
    Figure, _ = _matplotlib()
    stability = getattr(report, "stability", report)
    layers = stability.layers
    names = [layer.name for layer in layers]
    x = np.arange(len(layers))
    active = np.array([layer.stable_active for layer in layers])
    inactive = np.array([layer.stable_inactive for layer in layers])
    unstable = np.array([layer.unstable for layer in layers])
    fig = Figure(figsize=(max(6.0, 1.5 + 1.0 * len(layers)), 4.6))
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(x, active, color="#2b8cbe", label="stably active (proven)")
    ax.bar(x, inactive, bottom=active, color="#a6bddb", label="stably inactive (proven)")
    ax.bar(x, unstable, bottom=active + inactive, color="#e34a33", label="unstable (binary)")
    if stability.samples:
        emp = np.array([layer.empirical_stable for layer in layers])
        ax.hlines(emp, x - 0.4, x + 0.4, colors="k", linewidths=2.5, linestyles="--",
                  label=f"EMPIRICAL stable: never seen switching in {stability.samples} samples "
                        "(upper estimate, not a proof)")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=30 if len(names) > 6 else 0)
    ax.set_ylabel("neurons")
    ax.set_title(title or f"neuron stability ({stability.bound_method} bounds): "
                          f"{100 * stability.stable_fraction:.1f}% stable")
    ax.set_ylim(0, 1.05 * max(1, max(layer.size for layer in layers)) if layers else 1)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=1, frameon=False)
    return _save(fig, path)


def _plain_minor_labels(axis) -> None:
    """Label the minor ticks of a log axis "3", not "3x10^0": over about a decade matplotlib labels them,
    and the long labels run into each other (and into the axis label)."""
    from matplotlib.ticker import LogFormatter

    axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def plot_big_m(report, path, title: str | None = None) -> Path | bytes:
    """Big-M coefficients: histogram (log bins) before vs. after tightening/scaling, and per-layer box plots."""
    Figure, _ = _matplotlib()
    before, after = report.big_m_before, report.big_m
    same = before.count == after.count and np.array_equal(np.sort(before.all), np.sort(after.all))
    series = [s for s in ([after] if same else [before, after]) if s.count]
    fig = Figure(figsize=(11, 4.2))
    ax, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    if not series:
        for a in (ax, ax2):
            a.text(0.5, 0.5, "no unstable neurons: no big-M coefficients", ha="center", va="center",
                   transform=a.transAxes)
    else:
        values = np.concatenate([s.all for s in series])
        positive = values[values > 0]
        lo = positive.min() if positive.size else 1e-3
        hi = max(values.max(), lo * 10)
        bins = np.geomspace(lo, hi, 40)
        colours = ["#3182bd"] if same else ["#fdae6b", "#3182bd"]
        for s, colour in zip(series, colours):
            label = f"{s.label}: {s.count} unstable, max {s.max:.3g}, median {s.median:.3g}"
            if same:
                label += " (baseline = requested)"
            elif s is before:
                label = "baseline " + label
            ax.hist(np.clip(s.all, lo, None), bins=bins, alpha=0.65, color=colour, label=label)
        ax.set_xscale("log")
        _plain_minor_labels(ax.xaxis)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.25)  # headroom for the legend
        ax.legend(fontsize=8, loc="upper left")
        layers = [(name, v) for name, v in after.values.items()]
        ax2.boxplot([np.clip(v, lo, None) if v.size else [np.nan] for _, v in layers])
        ax2.set_xticks(np.arange(1, len(layers) + 1))
        ax2.set_xticklabels([f"{name}\n({v.size})" for name, v in layers], fontsize=8)
        ax2.set_yscale("log")
        _plain_minor_labels(ax2.yaxis)
        ax2.set_ylabel("big-M")
        ax2.set_title(f"per layer ({after.label}; unstable neurons in brackets)", fontsize=10)
    ax.set_xlabel("big-M of unstable neurons: max(-L, U) for ReLU, max(b - L, U - b) over crossed kinks b")
    ax.set_ylabel("neurons")
    ax.set_title(title or "big-M coefficients")
    return _save(fig, path)


def write_figures(report, folder, prefix: str, network=None, optima=None, progress: bool = False) -> list[Path]:
    """Write ``{prefix}_stability.png``, ``{prefix}_big_m.png`` and, when the report holds exact
    1-D/2-D regions, ``{prefix}_regions.png`` into ``folder``; returns the paths written.
    ``progress`` shows the figures done on stderr."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RelumilpError(f"plot folder {folder} does not exist")
    jobs = []
    regions = report.regions
    if regions is not None and any(r.vertices is not None for r in regions.regions):
        jobs.append(lambda: plot_regions(regions, report.domain, folder / f"{prefix}_regions.png", network=network,
                                         optima=optima, title=f"{prefix}: {regions.count} linear regions on the "
                                                              f"domain ({regions.method})"))
    jobs.append(lambda: plot_stability(report, folder / f"{prefix}_stability.png"))
    jobs.append(lambda: plot_big_m(report, folder / f"{prefix}_big_m.png"))
    paths = []
    with progress_bar(progress, "figures", " figures", total=len(jobs)) as bar:
        for job in jobs:
            paths.append(job())
            bar.update()
    return paths
