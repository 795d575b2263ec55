"""Benchmark problems of the trade-off study: data, input domain, objective and optional output constraint.

Each :class:`Problem` generates (deterministically, from a seed) a training set and a held-out test set,
and knows the optimisation problem to solve over a surrogate trained on that data:

* ``peaks`` -- MATLAB's Peaks function on ``[-3, 3]^2``; maximise the output (true maximum 8.1062).
* ``rosenbrock`` -- the 4-D Rosenbrock function on ``[-2, 2]^4``; minimise the output (true minimum 0 at
  ``(1, 1, 1, 1)``).
* ``reformer`` -- an autothermal-reformer flowsheet simulated with IDAES-PSE (``reformer.csv``: 2,800
  samples, inputs ``Bypass Fraction`` and ``NG Steam Ratio``; the data set published with the OMLT
  documentation notebooks, cog-imperial/OMLT docs/notebooks/data, BSD-3 licence, from IDAES-PSE). The
  surrogate predicts the outlet mole fractions of H2 and N2; the design problem maximises H2 subject to
  N2 <= the median N2 of the data -- a linear constraint on a network output next to the network block
  in one Pyomo model. The data are read from ``$RELUMILP_SHARED_DATA/reformer.csv`` or
  ``<repo>/../shared/data/reformer.csv``; without them the problem is unavailable (``available()``
  returns the reason) and the study skips it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from relumilp.domain import InputDomain
from relumilp.examples import peaks_function

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$RELUMILP_SHARED_DATA`` when set, else ``<repo>/../shared/data``."""
    env = os.environ.get("RELUMILP_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@dataclass(frozen=True)
class OutputConstraint:
    """``outputs[index] <= limit`` (sense ``"<="``) or ``>= limit`` (``">="``)."""

    index: int
    sense: str
    limit: float
    label: str = ""


@dataclass
class Problem:
    """A benchmark problem: data generator, input box, objective (one output, min or max), constraints."""

    name: str
    lower: np.ndarray
    upper: np.ndarray
    output_names: tuple[str, ...]
    objective_index: int
    sense: str  # "min" | "max"
    description: str
    #: ``make_data(seed) -> (X_train, Y_train, X_test, Y_test)``, Y always 2-D
    make_data: Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    #: constraints on network outputs (computed from the data when they depend on it)
    constraints: list[OutputConstraint] = field(default_factory=list)
    #: the true optimum of the underlying function, when known (for orientation only)
    true_optimum: float | None = None

    @property
    def n_in(self) -> int:
        return int(self.lower.size)

    @property
    def n_out(self) -> int:
        return len(self.output_names)

    @property
    def domain(self) -> InputDomain:
        return InputDomain(self.lower, self.upper)

    def objective_vector(self) -> np.ndarray:
        c = np.zeros(self.n_out)
        c[self.objective_index] = 1.0
        return c

    def data(self, seed: int = 0):
        return self.make_data(seed)


# -- synthetic functions -----------------------------------------------------------------------------


def rosenbrock(X: np.ndarray) -> np.ndarray:
    """``sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2`` row-wise."""
    X = np.atleast_2d(X)
    return np.sum(100.0 * (X[:, 1:] - X[:, :-1] ** 2) ** 2 + (1.0 - X[:, :-1]) ** 2, axis=1)


def _sampled(fn, lower, upper, n_train, n_test):
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)

    def make(seed: int):
        rng = np.random.default_rng(seed)
        X = rng.uniform(lower, upper, size=(n_train, lower.size))
        # the test set comes from an independent stream, so the training-set size does not change it
        X_test = np.random.default_rng(seed + 10_000).uniform(lower, upper, size=(n_test, lower.size))
        return X, fn(X)[:, None], X_test, fn(X_test)[:, None]

    return make


def peaks(n_train: int = 2000, n_test: int = 2000) -> Problem:
    lower, upper = np.full(2, -3.0), np.full(2, 3.0)
    return Problem(
        "peaks", lower, upper, ("peaks",), 0, "max", "Peaks function on [-3, 3]^2, maximise",
        _sampled(lambda X: peaks_function(X[:, 0], X[:, 1]), lower, upper, n_train, n_test), true_optimum=8.1062,
    )


def rosenbrock_problem(dim: int = 4, n_train: int = 4000, n_test: int = 2000) -> Problem:
    lower, upper = np.full(dim, -2.0), np.full(dim, 2.0)
    return Problem(
        "rosenbrock", lower, upper, ("rosenbrock",), 0, "min", f"{dim}-D Rosenbrock function on [-2, 2]^{dim}, minimise",
        _sampled(rosenbrock, lower, upper, n_train, n_test), true_optimum=0.0,
    )


# -- reformer ----------------------------------------------------------------------------------------

REFORMER_INPUTS = ("Bypass Fraction", "NG Steam Ratio")
REFORMER_OUTPUTS = ("H2", "N2")


def reformer_path() -> Path:
    return shared_data_dir() / "reformer.csv"


def read_reformer(path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (n, 2) and outputs H2, N2 (n, 2) of ``reformer.csv`` (comma-separated, spaces around commas)."""
    path = reformer_path() if path is None else Path(path)
    with path.open() as handle:
        header = [h.strip() for h in handle.readline().split(",")]
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    column = {name: i for i, name in enumerate(header)}
    X = table[:, [column[c] for c in REFORMER_INPUTS]]
    Y = table[:, [column[c] for c in REFORMER_OUTPUTS]]
    return X, Y


def reformer(test_share: float = 0.2) -> Problem:
    X_all, Y_all = read_reformer()
    lower, upper = X_all.min(axis=0), X_all.max(axis=0)
    n2_limit = float(np.median(Y_all[:, 1]))

    def make(seed: int):
        order = np.random.default_rng(seed).permutation(len(X_all))
        n_test = int(round(test_share * len(X_all)))
        test, train = order[:n_test], order[n_test:]
        return X_all[train], Y_all[train], X_all[test], Y_all[test]

    return Problem(
        "reformer", lower, upper, REFORMER_OUTPUTS, 0, "max",
        f"IDAES autothermal reformer (OMLT notebooks data): maximise H2 s.t. N2 <= {n2_limit:.4f} (median)",
        make, [OutputConstraint(1, "<=", n2_limit, "N2 <= median N2")],
    )


PROBLEMS: dict[str, Callable[[], Problem]] = {"peaks": peaks, "rosenbrock": rosenbrock_problem, "reformer": reformer}


def available(name: str) -> str | None:
    """None when problem ``name`` can be built, else the reason it cannot."""
    if name not in PROBLEMS:
        return f"unknown problem {name!r}; choose from {', '.join(PROBLEMS)}"
    if name == "reformer" and not reformer_path().is_file():
        return (f"reformer data not found at {reformer_path()} (set RELUMILP_SHARED_DATA to the folder holding "
                "reformer.csv)")
    return None


def get_problem(name: str) -> Problem:
    reason = available(name)
    if reason:
        raise FileNotFoundError(reason)
    return PROBLEMS[name]()
