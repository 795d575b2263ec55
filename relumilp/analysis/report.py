"""The network/model report: stability, linear regions, big-M coefficients, MILP size and phase times.

:func:`analyze_network` compiles a network twice -- a baseline with interval bounds and no scaling, and
the requested configuration (bound method, scaling) -- and reports both, so the effect of tightening and
scaling on the big-M coefficients and on the model size is visible side by side.
:class:`NetworkReport` renders as JSON (:meth:`~NetworkReport.to_json`) or a plain-text table
(:meth:`~NetworkReport.to_text`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..activations import label
from ..bounds import big_m_values
from ..choices import SOLVER_BOUND_METHODS
from ..domain import InputDomain
from ..errors import RelumilpError
from .regions import RegionCount, count_regions, regions_upper_bound
from .stability import StabilityReport, stability_report



def _stat(values: np.ndarray, fn) -> float | None:
    return float(fn(values)) if values.size else None


@dataclass
class BigMStats:
    """Summary of the big-M coefficients of one compiled model (unstable neurons only)."""

    label: str
    values: dict[str, np.ndarray] = field(repr=False)

    @property
    def all(self) -> np.ndarray:
        parts = list(self.values.values())
        return np.concatenate(parts) if parts else np.zeros(0)

    @property
    def count(self) -> int:
        return int(self.all.size)

    @property
    def max(self) -> float | None:
        return _stat(self.all, np.max)

    @property
    def median(self) -> float | None:
        return _stat(self.all, np.median)

    @property
    def mean(self) -> float | None:
        return _stat(self.all, np.mean)

    def per_layer(self) -> list[dict]:
        rows = []
        for name, v in self.values.items():
            rows.append({"name": name, "count": int(v.size), "min": _stat(v, np.min),
                         "q25": _stat(v, lambda a: np.quantile(a, 0.25)), "median": _stat(v, np.median),
                         "q75": _stat(v, lambda a: np.quantile(a, 0.75)), "max": _stat(v, np.max)})
        return rows

    def to_json(self) -> dict:
        return {"label": self.label, "count": self.count, "max": self.max, "median": self.median, "mean": self.mean,
                "per_layer": self.per_layer()}


@dataclass
class NetworkReport:
    """Everything ``relumilp stats`` prints; see :func:`analyze_network`.

    ``big_m``/``model`` describe the requested configuration, ``big_m_before``/``model_before`` the
    baseline (interval bounds, no scaling). ``regions`` is None when region counting was skipped.
    """

    network: str
    input_size: int
    output_size: int
    hidden_sizes: list[int]
    activations: list[str]
    domain: InputDomain
    bound_method: str
    scaled: bool
    stability: StabilityReport
    regions: RegionCount | None
    regions_upper_bound: int | None
    regions_upper_bound_source: str
    big_m: BigMStats
    big_m_before: BigMStats
    model: dict
    model_before: dict
    times: dict[str, float] = field(default_factory=dict)

    @property
    def layers(self):
        return self.stability.layers

    @property
    def stable_fraction(self) -> float:
        return self.stability.stable_fraction

    @property
    def empirical_stable_fraction(self) -> float | None:
        return self.stability.empirical_stable_fraction

    def to_json(self) -> dict:
        """A JSON-ready dict (no NaN/inf; the upper bound is an exact, possibly very large, integer)."""
        emp = self.empirical_stable_fraction
        return {
            "network": {"name": self.network, "input_size": self.input_size, "output_size": self.output_size,
                        "hidden_sizes": self.hidden_sizes, "activations": self.activations},
            "domain": self.domain.to_json(),
            "bound_method": self.bound_method,
            "scaled": self.scaled,
            "layers": [layer.to_json() for layer in self.layers],
            "neurons": self.stability.neurons,
            "stable_fraction": round(self.stable_fraction, 6),
            "empirical_stable_fraction": None if emp is None else round(emp, 6),
            "empirical_samples": self.stability.samples,
            "empirical_note": "EMPIRICAL: neurons never seen switching over the samples; an upper estimate of "
                              "stability, not a proof",
            "linear_regions": None if self.regions is None else self.regions.to_json(),
            "regions_upper_bound": self.regions_upper_bound,
            "regions_upper_bound_source": self.regions_upper_bound_source,
            "big_m": self.big_m.to_json(),
            "big_m_before": self.big_m_before.to_json(),
            "model": dict(self.model),
            "model_before": dict(self.model_before),
            "times": {k: round(v, 6) for k, v in self.times.items()},
        }

    def to_text(self) -> str:
        """A plain-text report: per-layer stability table, regions, big-M, model size, times."""
        out = []
        hidden = [f"{n} {label(k)}" for n, k in zip(self.hidden_sizes, self.activations)]
        arch = " -> ".join([str(self.input_size), *hidden, str(self.output_size)])
        out.append(f"network   {self.network}: {arch}")
        out.append(f"domain    {domain_text(self.domain)}")
        out.append(f"bounds    {self.bound_method}{', scaled' if self.scaled else ''}")
        out.append("")
        samples = self.stability.samples
        header = ["layer", "size", "stable active", "stable inactive", "unstable", "stable %"]
        if samples:
            header.append("empirical stable*")
        rows = []
        for layer in self.layers:
            row = [layer.name, layer.size, layer.stable_active, layer.stable_inactive, layer.unstable,
                   f"{100 * layer.stable_fraction:.1f}"]
            if samples:
                row.append(f"{layer.empirical_stable} ({100 * layer.empirical_stable_fraction:.1f}%)")
            rows.append(row)
        total = [sum(getattr(layer, k) for layer in self.layers) for k in ("size", "stable_active", "stable_inactive",
                                                                             "unstable")]
        row = ["total", *total, f"{100 * self.stable_fraction:.1f}"]
        if samples:
            empirical = sum(la.empirical_stable for la in self.layers)
            row.append(f"{empirical} ({100 * self.empirical_stable_fraction:.1f}%)")
        rows.append(row)
        out.extend(_table(header, rows))
        if samples:
            out.append(f"* EMPIRICAL: never seen switching over {samples} random samples -- an upper estimate of "
                       "stability, not a proof")
        out.append("")
        if self.regions is not None:
            r = self.regions
            out.append(f"linear regions on the domain: {r.label}" + (f"  [{r.note}]" if r.note else ""))
            if r.distinct_affine_maps is not None:
                out.append(f"distinct affine maps:        {r.distinct_affine_maps}")
        if self.regions_upper_bound is not None:
            out.append(f"architecture upper bound:    {big_int(self.regions_upper_bound)} over all of input space "
                       f"({self.regions_upper_bound_source})")
        else:
            out.append(f"architecture upper bound:    none ({self.regions_upper_bound_source})")
        out.append("  (the count on the input domain is what matters for optimisation)")
        out.append("")
        fmt = lambda v: "-" if v is None else f"{v:.4g}"
        same = self.big_m.label == self.big_m_before.label and self.model == self.model_before
        configs = [(f"{self.big_m.label} (baseline = requested)", self.big_m, self.model)] if same else [
            (f"baseline {self.big_m_before.label}", self.big_m_before, self.model_before),
            (f"requested {self.big_m.label}", self.big_m, self.model)]
        out.extend(_table(["big-M (unstable neurons)", "count", "max", "median", "mean"], [
            [label, s.count, fmt(s.max), fmt(s.median), fmt(s.mean)] for label, s, _ in configs]))
        per_layer = [[row["name"], row["count"], fmt(row["min"]), fmt(row["median"]), fmt(row["max"])]
                     for row in self.big_m.per_layer()]
        out.extend(_table([f"  per layer ({self.big_m.label})", "count", "min", "median", "max"], per_layer))
        out.append("")
        keys = ("binaries", "continuous", "constraints", "nonzeros")
        out.extend(_table(["model", *keys], [[label, *(model[k] for k in keys)] for label, _, model in configs]))
        out.append("")
        out.append("times     " + ", ".join(f"{k} {v:.3f}s" for k, v in self.times.items()))
        return "\n".join(out)


def big_int(n: int) -> str:
    text = str(n)
    return text if len(text) <= 15 else f"{text[0]}.{text[1:4]}e{len(text) - 1} ({len(text)} digits)"


def domain_text(domain: InputDomain) -> str:
    if domain.size <= 4:
        text = " x ".join(f"[{lo:g}, {hi:g}]" for lo, hi in zip(domain.lower, domain.upper))
    else:
        text = f"box over {domain.size} inputs"
    if domain.A is not None:
        text += f" with {domain.num_constraints} linear rows A x <= b"
    return text


def _table(header: list, rows: list[list]) -> list[str]:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(parts).rstrip())
    return lines


def _compile(net, domain, tighten, scale, bound_options, bounds=None):
    from ..pipeline import compile_network

    try:
        return compile_network(net, domain, tighten=tighten, scale=scale, bounds=bounds, **bound_options)
    except ModuleNotFoundError as exc:
        if scale and "scaling" in str(exc):
            raise RelumilpError("scaling is not available in this installation of relumilp (relumilp.scaling "
                                "is missing); run without --scale") from None
        raise


def analyze_network(network, domain, tighten: str = "interval", scale: bool | str = False,
                    regions: str | None = "auto", region_time_limit: float | None = 60.0, samples: int = 10000,
                    seed: int | None = 0, time_limit=None, progress: bool = False, **bound_options) -> NetworkReport:
    """Analyse ``network`` over ``domain``: stability, linear regions, big-M and model size, phase times.

    Parameters
    ----------
    network:
        A :class:`~relumilp.ir.Network`, torch module or model file.
    domain:
        An :class:`~relumilp.domain.InputDomain` or ``(lower, upper)``.
    tighten, scale, bound_options:
        The configuration to report (as for :func:`relumilp.compile_network`); it is compared against a
        baseline with interval bounds and no scaling.
    regions:
        ``auto`` (exact for at most 2 inputs, else sample), ``exact``, ``mip``, ``sample`` or
        None/``none`` to skip region counting.
    region_time_limit:
        Seconds for the ``mip`` region enumeration ("at least N" when reached).
    samples, seed:
        Random domain points for the EMPIRICAL census and the ``sample`` region estimate.
    time_limit:
        Seconds (or a :class:`~relumilp.limits.Deadline`) for bounds and region counting together:
        symbolic and LP/MILP tightening stop with sound bounds, ``mip`` enumeration gets what is left,
        and the empirical census and ``sample`` region count use the points they reached in time.
    progress:
        Show bound tightening and region counting on stderr.
    """
    from ..limits import Deadline
    from ..ir import Network as _Network

    total_start = time.perf_counter()
    deadline = Deadline.of(time_limit)
    if not isinstance(network, _Network):
        from ..frontends import load_network

        network = load_network(network)
    domain = InputDomain.of(domain, network.input_size)
    times: dict[str, float] = {}
    before = _compile(network, domain, "interval", False, {})
    times["bounds_baseline"] = before.times.get("bounds", 0.0)
    if tighten == "interval" and not scale and not bound_options:
        after = before
    else:
        options = {**bound_options, "time_limit": deadline}
        if progress and tighten in SOLVER_BOUND_METHODS:
            options.setdefault("progress", True)
        after = _compile(network, domain, tighten, scale, options)
    for phase in ("bounds", "scaling", "formulation"):
        if phase in after.times:
            times[phase] = after.times[phase]
    net, bounds = after.network, after.bounds
    stability = stability_report(net, domain, bounds=bounds, samples=samples, seed=seed, deadline=deadline)
    times.update(stability.times)
    region_count = None
    if regions not in (None, "none") and not net.has_smooth:  # a smooth network has no linear regions
        start = time.perf_counter()
        region_count = count_regions(net, domain, regions, bounds=bounds,
                                     time_limit=deadline.earlier(region_time_limit),
                                     samples=max(int(samples), 1000), seed=seed, progress=progress)
        times["regions"] = time.perf_counter() - start
    upper, source = regions_upper_bound(net)
    label = f"{bounds.method}{', scaled' if after.original is not None else ''}"
    times["total"] = time.perf_counter() - total_start
    return NetworkReport(
        network=network.name,
        input_size=network.input_size,
        output_size=network.output_size,
        hidden_sizes=network.hidden_sizes,
        activations=[node.kind for node in network.activations],
        domain=domain,
        bound_method=bounds.method,
        scaled=after.original is not None,
        stability=stability,
        regions=region_count,
        regions_upper_bound=upper,
        regions_upper_bound_source=source,
        big_m=BigMStats(label, big_m_values(net, bounds)),
        big_m_before=BigMStats("interval", big_m_values(before.network, before.bounds)),
        model=after.milp.size_report(),
        model_before=before.milp.size_report(),
        times=times,
    )


def report_from_compiled(before, after, regions: RegionCount | None = None, samples: int = 0,
                         seed: int | None = 0) -> NetworkReport:
    """A :class:`NetworkReport` from two :class:`~relumilp.pipeline.CompiledNetwork` of the same network
    (e.g. interval vs. tightened/scaled), with an optional region count computed elsewhere."""
    net, bounds = after.network, after.bounds
    stability = stability_report(net, after.domain, bounds=bounds, samples=samples, seed=seed)
    upper, source = regions_upper_bound(net)
    original = after.original or net
    times = dict(after.times)
    if regions is not None:
        times["regions"] = regions.time
    return NetworkReport(
        network=original.name, input_size=net.input_size, output_size=net.output_size,
        hidden_sizes=net.hidden_sizes, activations=[a.kind for a in net.activations], domain=after.domain,
        bound_method=bounds.method, scaled=after.original is not None,
        stability=stability, regions=regions,
        regions_upper_bound=upper, regions_upper_bound_source=source,
        big_m=BigMStats(f"{bounds.method}{', scaled' if after.original is not None else ''}",
                        big_m_values(net, bounds)),
        big_m_before=BigMStats(f"{before.bounds.method}{', scaled' if before.original is not None else ''}",
                               big_m_values(before.network, before.bounds)),
        model=after.milp.size_report(), model_before=before.milp.size_report(), times=times,
    )


__all__ = ["BigMStats", "NetworkReport", "analyze_network", "big_m_values", "report_from_compiled"]  # big_m_values: re-exported
