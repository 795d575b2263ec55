"""Built-in example networks, shipped with the package so every command works without a model file.

* ``peaks``: a 2-16-16-1 ReLU surrogate of MATLAB's Peaks function on ``[-3, 3]^2`` (true maximum
  8.1062 near (-0.0093, 1.5814); true minimum -6.5511 near (0.2283, -1.6255)); solves in about a second.
* ``peaks32``: a 2-32-32-1 ReLU surrogate of the same function, trained without any MILP-friendly
  regularisation: with interval bounds none of its 64 neurons is stable and HiGHS needs tens of
  seconds -- the cost the bound passes and the training side exist to cut.

Both were trained deterministically on 2,000 (resp. 4,000) uniform samples with ``fit_surrogate``
(resp. plain full-batch Adam); ``python examples/train_peaks.py`` shows how.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

from .domain import InputDomain
from .errors import RelumilpError
from .ir import Network


def peaks_function(x, y):
    """MATLAB's Peaks function, a standard 2-D test surface with several local optima."""
    return (
        3 * (1 - x) ** 2 * np.exp(-(x**2) - (y + 1) ** 2)
        - 10 * (x / 5 - x**3 - y**5) * np.exp(-(x**2) - y**2)
        - np.exp(-((x + 1) ** 2) - y**2) / 3
    )


@dataclass(frozen=True)
class Example:
    name: str
    network: Network
    domain: InputDomain
    description: str


_EXAMPLES = {
    "peaks": ("peaks.npz", ([-3.0, -3.0], [3.0, 3.0]), "2-16-16-1 ReLU surrogate of the Peaks function"),
    "peaks32": ("peaks32.npz", ([-3.0, -3.0], [3.0, 3.0]), "2-32-32-1 ReLU surrogate of the Peaks function"),
}


def available() -> list[str]:
    return sorted(_EXAMPLES)


def load_example(name: str) -> Example:
    """The built-in example ``name`` with its default input domain."""
    if name not in _EXAMPLES:
        raise RelumilpError(f"unknown example {name!r}; available: {', '.join(available())}")
    filename, (lower, upper), description = _EXAMPLES[name]
    with resources.as_file(resources.files("relumilp") / "data" / filename) as path:
        network = Network.load(path)
    return Example(name, network, InputDomain(lower, upper), description)


def peaks() -> Network:
    """The built-in Peaks surrogate network."""
    return load_example("peaks").network
