"""Network analysis: stable neurons, linear regions, big-M coefficients and model size.

* :mod:`.stability` -- proven stable neurons per layer (from bounds) and an EMPIRICAL census from samples;
* :mod:`.regions` -- activation regions on the input domain (``exact`` for 1-D/2-D inputs, ``mip`` LP
  enumeration, ``sample`` lower bound) and the architecture's theoretical upper bound;
* :mod:`.report` -- :func:`analyze_network` / :class:`NetworkReport` (JSON and text);
* :mod:`.plots` -- PNG figures (needs matplotlib: ``pip install relumilp[plot]``).

The region count that matters for optimisation is the one on the input domain, not the worst case of
the architecture.
"""

from .regions import (RegionCount, activation_patterns, count_regions, exact_regions, mip_regions,
                      regions_upper_bound, sample_regions, serra_bound)
from .report import BigMStats, NetworkReport, analyze_network, big_m_values, report_from_compiled
from .stability import LayerStability, StabilityReport, empirical_census, proven_stability, stability_report

__all__ = [
    "BigMStats", "LayerStability", "NetworkReport", "RegionCount", "StabilityReport", "activation_patterns",
    "analyze_network", "big_m_values", "count_regions", "empirical_census", "exact_regions", "mip_regions",
    "proven_stability", "regions_upper_bound", "report_from_compiled", "sample_regions", "serra_bound",
    "stability_report",
]
