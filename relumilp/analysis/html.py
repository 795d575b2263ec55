"""A one-file HTML page of a network analysis (``relumilp stats --html FILE``).

:func:`html_report` renders a :class:`~relumilp.analysis.report.NetworkReport` -- model size, neuron
stability per layer, big-M coefficients before and after tightening, linear regions and the optimum of
output 0 -- as one self-contained page: inline CSS, figures from :mod:`relumilp.analysis.plots` as
base64 PNG, no JavaScript and no external reference, so it can be mailed or archived as it is and opens
offline. Each section says in a sentence what its numbers mean for the MILP.

Figures need matplotlib; without it the page is written with its tables and a note instead.
"""

from __future__ import annotations

import base64
import datetime
import html
from dataclasses import dataclass

import numpy as np

from .._io import TEXT_MARK
from ..errors import RelumilpError
from ..activations import label
from .report import big_int, domain_text


@dataclass
class Optimum:
    """The maximum or minimum of output 0 over the domain, and how it was found.

    ``value``/``x`` are None when nothing was found (``how`` says why); ``bound`` is the solver's proven
    bound when the MILP stopped before proving optimality.
    """

    sense: str
    value: float | None
    x: np.ndarray | None
    how: str
    bound: float | None = None

    @property
    def label(self) -> str:
        """The legend text of the region figure."""
        where = ", ".join(f"{v:.3g}" for v in self.x)
        return f"global {self.sense} {self.value:.6g} at ({where}) ({self.how})"


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return f"{value:.{digits}g}"


def _table(header: list[str], rows: list[list], classes: str = "") -> str:
    """An HTML table; cells are trusted HTML (callers escape text), the first column is a label."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{classes}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


#: the dots per inch of the figures' PNGs (:mod:`.plots`); CSS draws 96 pixels to the inch
_FIGURE_DPI = 150


def _figure(png: bytes | None, alt: str, caption: str) -> str:
    if png is None:
        return f'<p class="note">{html.escape(alt)}: no figure (matplotlib is not installed).</p>'
    # shown at the figure's size in inches (not at one image pixel per CSS pixel, which blows a 6-inch
    # matplotlib figure up to page width), and sharp on high-density screens
    width = int.from_bytes(png[16:20], "big") * 96 // _FIGURE_DPI
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{html.escape(alt)}" width="{width}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _png(plot, *args, **kwargs) -> bytes | None:
    """The figure's PNG bytes, or None when matplotlib is missing (the page still has its tables)."""
    try:
        return plot(*args, None, **kwargs)
    except RelumilpError as exc:
        if "matplotlib" in str(exc):
            return None
        raise


def _card(label: str, value: str, detail: str = "", tone: str = "") -> str:
    detail = f'<div class="detail">{detail}</div>' if detail else ""
    return (f'<div class="card {tone}"><div class="label">{label}</div><div class="value">{value}</div>'
            f"{detail}</div>")


def _stack_bar(active: int, inactive: int, unstable: int) -> str:
    """A small inline stacked bar (pure CSS) for a stability table row."""
    total = max(active + inactive + unstable, 1)
    parts = [(active, "active"), (inactive, "inactive"), (unstable, "unstable")]
    spans = "".join(f'<span class="{cls}" style="width:{100 * n / total:.2f}%"></span>' for n, cls in parts if n)
    return f'<div class="stack">{spans}</div>'


def _summary(report, optima) -> str:
    unstable = sum(layer.unstable for layer in report.layers)
    neurons = report.stability.neurons
    cards = [
        _card("inputs &rarr; outputs", f"{report.input_size} &rarr; {report.output_size}"),
        _card("neurons", _fmt(neurons), f"{len(report.layers)} activation layer{'s' * (len(report.layers) != 1)}"),
        _card("unstable", f"{100 * unstable / neurons:.1f}%" if neurons else "&ndash;",
              f"{unstable:,} of {neurons:,} need a binary", "warn" if unstable > neurons / 2 else ""),
        _card("binaries", _fmt(report.model.get("binaries")),
              f"interval bounds: {_fmt(report.model_before.get('binaries'))}"),
        _card("bound method", html.escape(report.bound_method) + (", scaled" if report.scaled else "")),
        _card("analysis time", f"{report.times.get('total', 0.0):.2f} s"),
    ]
    regions = report.regions
    if regions is not None:  # the count alone: "at least N (method)" is too long for a card
        cards.append(_card("linear regions", f"{'' if regions.exact else '&ge; '}{regions.count:,}",
                           html.escape(regions.method) + ("" if regions.exact else ", a lower bound")))
    for opt in optima or []:
        if opt.value is not None:
            cards.append(_card(f"{opt.sense} of output 0", _fmt(opt.value, 6)))
    return f'<div class="cards">{"".join(cards)}</div>'


def _model_section(report) -> str:
    keys = ("binaries", "continuous", "constraints", "nonzeros")
    same = report.big_m.label == report.big_m_before.label and report.model == report.model_before
    configs = [(f"{report.big_m.label} (baseline = requested)", report.model)] if same else [
        (f"baseline: {report.big_m_before.label}", report.model_before),
        (f"requested: {report.big_m.label}", report.model)]
    rows = [[html.escape(label), *(_fmt(model.get(k)) for k in keys)] for label, model in configs]
    return f"""
<section id="size"><h2>MILP size</h2>
<p class="explain">The mixed-integer program HiGHS solves. Each <b>binary</b> is one unstable neuron: the
branch-and-bound tree can grow exponentially in their number, so they dominate solve time. Continuous
variables, constraints and nonzeros set the cost of every LP relaxation solved at a node.</p>
{_table(["configuration", *keys], rows, "num")}
</section>"""


def _stability_section(report) -> str:
    stability = report.stability
    samples = stability.samples
    header = ["layer", "kind", "size", "stable active", "stable inactive", "unstable", "stable %", ""]
    if samples:
        header.insert(7, "empirical stable*")
    rows = []
    for layer in report.layers:
        row = [html.escape(layer.name), html.escape(label(layer.kind)), _fmt(layer.size),
               _fmt(layer.stable_active), _fmt(layer.stable_inactive), _fmt(layer.unstable),
               f"{100 * layer.stable_fraction:.1f}",
               _stack_bar(layer.stable_active, layer.stable_inactive, layer.unstable)]
        if samples:
            row.insert(7, f"{_fmt(layer.empirical_stable)} ({100 * layer.empirical_stable_fraction:.1f}%)")
        rows.append(row)
    totals = [sum(getattr(layer, k) for layer in report.layers)
              for k in ("size", "stable_active", "stable_inactive", "unstable")]
    total = ["<b>total</b>", "", *(_fmt(t) for t in totals), f"{100 * report.stable_fraction:.1f}",
             _stack_bar(*totals[1:])]
    if samples:
        empirical = sum(layer.empirical_stable for layer in report.layers)
        total.insert(7, f"{_fmt(empirical)} ({100 * report.empirical_stable_fraction:.1f}%)")
    rows.append(total)
    note = (f'<p class="note">* EMPIRICAL: never seen switching over {samples:,} random samples &mdash; an upper '
            "estimate of stability, not a proof. The gap to the proven column is what tighter bounds could "
            "still win.</p>") if samples else ""
    from .plots import plot_stability

    key = ('<p class="note"><span class="key active"></span> stably active <span class="key inactive"></span> '
           'stably inactive <span class="key unstable"></span> unstable (one binary each)</p>')
    figure = _figure(_png(plot_stability, report), "neuron stability per layer",
                     "Proven stability per layer; the dashed ticks are the empirical census.")
    return f"""
<section id="stability"><h2>Neuron stability</h2>
<p class="explain">A neuron is <b>stable</b> when its pre-activation bounds ({html.escape(report.bound_method)})
keep it on one piece over the whole domain: it is then a linear constraint, with no binary. Each
<b>unstable</b> neuron adds one binary and a big-M pair of constraints. Tighter bounds prove more neurons
stable.</p>
{_table(header, rows, "num stability")}
{key}
{note}
{figure}
</section>"""


def _big_m_section(report) -> str:
    before, after = report.big_m_before, report.big_m
    same = before.label == after.label and report.model == report.model_before
    summary = [(f"{after.label} (baseline = requested)", after)] if same else [
        (f"baseline: {before.label}", before), (f"requested: {after.label}", after)]
    rows = [[html.escape(label), _fmt(s.count), _fmt(s.max), _fmt(s.median), _fmt(s.mean)] for label, s in summary]
    per_before = {row["name"]: row for row in before.per_layer()}
    layer_rows = []
    for row in after.per_layer():
        old = per_before.get(row["name"], {})
        cells = [html.escape(row["name"])]
        if not same:
            cells += [_fmt(old.get("count")), _fmt(old.get("median")), _fmt(old.get("max"))]
        cells += [_fmt(row["count"]), _fmt(row["median"]), _fmt(row["max"])]
        layer_rows.append(cells)
    if same:
        layer_header = ["layer", "unstable", "median M", "max M"]
    else:
        layer_header = ["layer", "unstable (before)", "median M (before)", "max M (before)",
                        "unstable (after)", "median M (after)", "max M (after)"]
    from .plots import plot_big_m

    figure = _figure(_png(plot_big_m, report), "big-M coefficients",
                     "Left: histogram of big-M over unstable neurons (log scale). Right: per layer after "
                     "tightening.")
    return f"""
<section id="big-m"><h2>Big-M coefficients</h2>
<p class="explain">Each unstable ReLU neuron with bounds [L, U] is modelled with M = max(&minus;L, U) (other
kinds: the largest distance from a kink they cross to the far bound, M = max(b &minus; L, U &minus; b)). The LP
relaxation of a big-M constraint is weaker the larger M is, so large M means weak bounds in
branch-and-bound, more nodes and, at extreme sizes, numerical trouble. Tightening shrinks M (and proves
some neurons stable, removing their M altogether).</p>
{_table(["configuration", "unstable neurons", "max M", "median M", "mean M"], rows, "num")}
<h3>Per layer</h3>
{_table(layer_header, layer_rows, "num")}
{figure}
</section>"""


def _regions_section(report, network, optima) -> str:
    regions = report.regions
    rows = []
    if regions is not None:
        rows.append(["on the input domain", html.escape(regions.label)
                     + (f' <span class="muted">[{html.escape(regions.note)}]</span>' if regions.note else "")])
        if regions.distinct_affine_maps is not None:
            rows.append(["distinct affine maps", _fmt(regions.distinct_affine_maps)])
    if report.regions_upper_bound is not None:
        rows.append(["architecture upper bound (all of input space)",
                     f"{html.escape(big_int(report.regions_upper_bound))} "
                     f'<span class="muted">({html.escape(report.regions_upper_bound_source)})</span>'])
    figure = ""
    if regions is not None and any(r.vertices is not None for r in regions.regions):
        from .plots import plot_regions

        marks = [(o.label, o.x) for o in optima or [] if o.x is not None]
        figure = _figure(_png(plot_regions, regions, report.domain, network=network, optima=marks),
                         "linear regions", "Left: each linear region in its own colour. Right: output 0 of the "
                         "network with the region boundaries; the markers are the global optima.")
    elif regions is None:
        figure = '<p class="note">Region counting was skipped (--regions none).</p>'
    else:
        figure = ('<p class="note">The region figure is drawn for 1&ndash;2 inputs with an exact count '
                  "(--regions exact).</p>")
    return f"""
<section id="regions"><h2>Linear regions</h2>
<p class="explain">On each linear region every neuron keeps one activation piece, so the network is affine
there. The count on the input domain &mdash; not the architecture's worst case &mdash; is what an
optimiser faces: it bounds how many activation patterns branch-and-bound could have to tell apart.</p>
{_table(["", "count"], rows, "kv")}
{figure}
</section>"""


def _optimum_section(optima) -> str:
    if not optima:
        return ""
    rows = []
    for opt in optima:
        where = "&ndash;" if opt.x is None else "(" + ", ".join(f"{v:.4g}" for v in opt.x) + ")"
        rows.append([opt.sense, _fmt(opt.value, 8), _fmt(opt.bound, 8), where, html.escape(opt.how)])
    return f"""
<section id="optimum"><h2>Optimum of output 0</h2>
<p class="explain">The global maximum and minimum of output 0 over the domain, with the input x that
attains them. The value is the float64 forward pass at x; for an exact 2-D partition the vertex
enumeration of the regions gives it independently of the MILP.</p>
{_table(["", "value", "proven bound", "x", "how"], rows, "num optimum")}
</section>"""


def _times_section(report) -> str:
    rows = [[html.escape(k.replace("_", " ")), f"{v:.3f}"] for k, v in report.times.items()]
    return f"""
<section id="times"><h2>Times</h2>
{_table(["phase", "seconds"], rows, "num narrow")}
</section>"""


_CSS = """
:root { --ink: #1f2430; --muted: #6b7280; --line: #e5e7eb; --soft: #f6f7f9; --accent: #2b6cb0;
        --active: #2b8cbe; --inactive: #a6bddb; --unstable: #e34a33; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: var(--ink); line-height: 1.5; font-size: 15px;
       font-family: -apple-system, "Segoe UI", "Helvetica Neue", "DejaVu Sans", Arial, sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 32px 28px 48px; }
header { border-bottom: 3px solid var(--accent); padding-bottom: 14px; margin-bottom: 22px; }
h1 { font-size: 28px; margin: 0 0 4px; letter-spacing: -0.01em; }
h1 .tool { color: var(--muted); font-weight: 400; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.meta { color: var(--muted); margin: 2px 0; }
.meta code { color: var(--ink); }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 12px; margin: 18px 0; }
.card { background: var(--soft); border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .05em; }
.card .value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .detail { color: var(--muted); font-size: 12px; }
.card.warn .value { color: var(--unstable); }
.explain { color: #374151; max-width: 820px; }
.note { color: var(--muted); font-size: 13px; }
.muted { color: var(--muted); }
table { border-collapse: collapse; margin: 10px 0 14px; font-variant-numeric: tabular-nums; width: 100%; }
table.narrow, table.kv { width: auto; min-width: 360px; }
th, td { padding: 6px 12px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: middle; }
thead th { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em;
           border-bottom: 2px solid #d1d5db; font-weight: 600; }
tbody tr:nth-child(even) { background: #fafbfc; }
table.num td:not(:first-child), table.num th:not(:first-child) { text-align: right; }
table.optimum td:last-child, table.optimum th:last-child { text-align: left; color: var(--muted); }
table.stability td:last-child { width: 24%; }
table.stability td:nth-child(2), table.stability th:nth-child(2) { text-align: left; }
.stack { display: flex; height: 12px; border-radius: 3px; overflow: hidden; background: var(--line); }
.stack span { display: block; height: 100%; }
.active { background: var(--active); } .inactive { background: var(--inactive); }
.unstable { background: var(--unstable); }
.key { display: inline-block; width: 11px; height: 11px; border-radius: 2px; vertical-align: -1px; margin-left: 10px; }
figure { margin: 16px 0; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { color: var(--muted); font-size: 13px; text-align: center; margin-top: 4px; }
nav { font-size: 13px; margin-top: 8px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 10px; }
@media print { main { max-width: none; } section { break-inside: avoid; } }
"""


def html_report(report, network=None, optima: list[Optimum] | None = None, title: str | None = None) -> str:
    """The analysis ``report`` as one self-contained HTML page (a string).

    ``network`` (the analysed :class:`~relumilp.ir.Network`) draws its output on the region figure;
    ``optima`` are the max/min of output 0 (:class:`Optimum`), shown in their own section and marked on
    the region figure.
    """
    from .. import __version__

    name = html.escape(title or report.network)
    hidden = [f"{n} {label(k)}" for n, k in zip(report.hidden_sizes, report.activations)]
    arch = " &rarr; ".join(html.escape(str(p)) for p in [report.input_size, *hidden, report.output_size])
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    sections = [_model_section(report), _stability_section(report), _big_m_section(report),
                _regions_section(report, network, optima), _optimum_section(optima), _times_section(report)]
    links = [("size", "MILP size"), ("stability", "Stability"), ("big-m", "Big-M"), ("regions", "Regions")]
    if optima:
        links.append(("optimum", "Optimum"))
    links.append(("times", "Times"))
    nav = "".join(f'<a href="#{anchor}">{text}</a>' for anchor, text in links)
    return f"""<!DOCTYPE html>
<!-- {TEXT_MARK} -->
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>relumilp report: {name}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<header>
<h1><span class="tool">relumilp report &middot;</span> {name}</h1>
<p class="meta">architecture <code>{arch}</code></p>
<p class="meta">domain <code>{html.escape(domain_text(report.domain))}</code> &middot; bounds
<code>{html.escape(report.bound_method)}{", scaled" if report.scaled else ""}</code></p>
<nav>{nav}</nav>
</header>
{_summary(report, optima)}
{"".join(sections)}
<footer>Written by relumilp {html.escape(__version__)} on {html.escape(stamp)}. Self-contained: no external
files or scripts.</footer>
</main>
</body>
</html>
"""


__all__ = ["Optimum", "html_report"]
