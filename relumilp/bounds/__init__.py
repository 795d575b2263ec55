"""Bound passes: sound lower/upper bounds on every node of a network over an input domain.

``compute_bounds(net, domain, method)`` runs the named method after all cheaper ones
(interval -> symbolic -> LP-based OBBT -> MILP-based OBBT), each starting from the last one's bounds.
"""

from __future__ import annotations

import time

from ..domain import InputDomain
from ..errors import RelumilpError
from ..ir import Network
from .base import METHODS, Bounds, phases, stability_counts
from .interval import interval_bounds

__all__ = ["METHODS", "Bounds", "compute_bounds", "interval_bounds", "phases", "stability_counts"]


def compute_bounds(net: Network, domain: InputDomain, method: str = "interval", **options) -> Bounds:
    """Bounds of every node of ``net`` over ``domain`` by ``method`` (and every cheaper method first)."""
    if method not in METHODS:
        raise RelumilpError(f"unknown bound method {method!r}; choose one of {', '.join(METHODS)}")
    domain.check_size(net.input_size)
    start = time.perf_counter()
    bounds = interval_bounds(net, domain)
    bounds.times["interval"] = time.perf_counter() - start
    return bounds
