"""A solver-independent MILP in matrix form: ``row_lower <= A v <= row_upper``, ``col_lower <= v <= col_upper``.

The big-M builder (:mod:`relumilp.formulation.bigm`) writes into this form with vectorised numpy, and
thin backends emit it: a Pyomo block (:mod:`relumilp.formulation.pyomo_block`), a highspy model or an
MPS/LP file (:mod:`relumilp.formulation.highs`). Keeping one matrix means the formulation logic exists
once, and every backend solves exactly the same problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..matrices import is_sparse, triplets


@dataclass
class VariableGroup:
    """A named group of columns: a node's outputs, or the binaries of one activation node.

    ``neurons[i]`` is the neuron (position in the node's output) that column ``columns[i]`` belongs to.
    """

    name: str
    columns: np.ndarray
    neurons: np.ndarray
    #: for the binaries of a band encoding (:mod:`relumilp.formulation.pwl`): its groups, which also
    #: own continuous fill columns that a MIP start must set
    band: tuple = ()


@dataclass
class MILP:
    """A mixed-integer linear program over columns ``v`` with per-node bookkeeping."""

    col_lower: np.ndarray
    col_upper: np.ndarray
    integrality: np.ndarray
    A: sp.csr_array
    row_lower: np.ndarray
    row_upper: np.ndarray
    #: output columns of every IR node, in node order
    node_columns: dict[str, np.ndarray]
    #: binary groups per activation node: ``{node: {"z": group, "z_cap": group}}``
    binaries: dict[str, dict[str, VariableGroup]]
    #: ``{owner: (first row, stop row)}``; owners are node names or ``"input_constraints"``
    row_ranges: dict[str, tuple[int, int]]
    input_name: str
    output_name: str
    objective: np.ndarray | None = None
    sense: str = "min"
    extra: dict = field(default_factory=dict)

    @property
    def num_columns(self) -> int:
        return self.col_lower.size

    @property
    def num_rows(self) -> int:
        return self.row_lower.size

    @property
    def num_binaries(self) -> int:
        return int(self.integrality.sum())

    @property
    def num_nonzeros(self) -> int:
        return int(self.A.nnz)

    @property
    def input_columns(self) -> np.ndarray:
        return self.node_columns[self.input_name]

    @property
    def output_columns(self) -> np.ndarray:
        return self.node_columns[self.output_name]

    def with_objective(self, coefficients: np.ndarray, sense: str = "min", on: str = "output") -> "MILP":
        """A copy whose objective is ``coefficients @ (output or input columns)``."""
        c = np.zeros(self.num_columns)
        c[self.output_columns if on == "output" else self.input_columns] = coefficients
        copy = MILP(**{**self.__dict__, "objective": c, "sense": sense})
        return copy

    def size_report(self) -> dict:
        return {
            "binaries": self.num_binaries,
            "continuous": self.num_columns - self.num_binaries,
            "constraints": self.num_rows,
            "nonzeros": self.num_nonzeros,
        }

    def column_names(self) -> list[str]:
        """A name per column: ``x[i]`` (input), ``y[j]`` (output), ``node[i]``, ``node.z[i]``, ``node.z_cap[i]``;
        a band encoding's ``node.z[i,j]`` and ``node.fill[i,j]`` (neuron ``i``, segment ``j``)."""
        names = [f"c{k}" for k in range(self.num_columns)]
        for node, columns in self.node_columns.items():
            label = "x" if node == self.input_name else "y" if node == self.output_name else node
            for i, column in enumerate(columns):
                names[column] = f"{label}[{i}]"
        for node, groups in self.binaries.items():
            for key, group in groups.items():
                if group.band:  # a neuron has several binaries and fill columns: number them by segment
                    for band in group.band:
                        for row, neuron in enumerate(band.neurons):
                            for j, column in enumerate(band.z[row]):
                                names[column] = f"{node}.{key}[{int(neuron)},{j + 1}]"
                            for j, column in enumerate(band.delta[row]):
                                names[column] = f"{node}.fill[{int(neuron)},{j + 1}]"
                    continue
                for neuron, column in zip(group.neurons, group.columns):
                    names[column] = f"{node}.{key}[{int(neuron)}]"
        return names

    def row_names(self) -> list[str]:
        """A name per row: ``owner[k]`` (the node that owns the row, or ``input_constraints``)."""
        names = [f"r{k}" for k in range(self.num_rows)]
        for owner, (start, stop) in self.row_ranges.items():
            for k in range(start, stop):
                names[k] = f"{owner}[{k - start}]"
        return names

    def relaxed(self) -> "MILP":
        """The LP relaxation (binaries become continuous in [0, 1])."""
        return MILP(**{**self.__dict__, "integrality": np.zeros_like(self.integrality)})

    def row_activity(self, v: np.ndarray) -> np.ndarray:
        return self.A @ v

    def max_violation(self, v: np.ndarray) -> float:
        """Largest bound or row violation of a full column vector (a self-check)."""
        activity = self.A @ v
        return float(
            max(
                np.max(self.row_lower - activity, initial=0.0),
                np.max(activity - self.row_upper, initial=0.0),
                np.max(self.col_lower - v, initial=0.0),
                np.max(v - self.col_upper, initial=0.0),
            )
        )


class MILPAssembler:
    """Collects columns and rows as COO triplets; :meth:`finish` builds one CSR matrix."""

    def __init__(self):
        self._lower: list[np.ndarray] = []
        self._upper: list[np.ndarray] = []
        self._integer: list[np.ndarray] = []
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []
        self._row_lower: list[np.ndarray] = []
        self._row_upper: list[np.ndarray] = []
        self.num_columns = 0
        self.num_rows = 0
        self.row_ranges: dict[str, tuple[int, int]] = {}

    def add_columns(self, lower, upper, integer: bool = False) -> np.ndarray:
        """Add columns with the given bounds; returns their indices."""
        lower = np.asarray(lower, dtype=np.float64)
        upper = np.asarray(upper, dtype=np.float64)
        n = lower.size
        self._lower.append(lower)
        self._upper.append(upper)
        self._integer.append(np.full(n, integer))
        columns = np.arange(self.num_columns, self.num_columns + n)
        self.num_columns += n
        return columns

    def add_rows(self, owner: str, terms, lower, upper) -> None:
        """Add ``k`` rows ``lower <= sum_t coef_t * v[col_t] <= upper``.

        ``terms`` is a list of ``(coefficients, columns)`` pairs of arrays of length ``k`` (one term per
        row each) or of blocks ``(matrix (k, n), columns (n,))``, dense or scipy sparse (only the
        nonzeros are read).
        """
        lower = np.asarray(lower, dtype=np.float64)
        upper = np.broadcast_to(np.asarray(upper, dtype=np.float64), lower.shape)
        k = lower.size
        if k == 0:
            return
        local = np.arange(k)
        for coefficients, columns in terms:
            if not is_sparse(coefficients):
                coefficients = np.asarray(coefficients, dtype=np.float64)
            if coefficients.ndim == 2:
                rows, positions, values = triplets(coefficients)
                self._rows.append(self.num_rows + rows)
                self._cols.append(np.asarray(columns)[positions])
                self._vals.append(np.asarray(values, dtype=np.float64))
            else:
                coefficients = np.broadcast_to(coefficients, (k,))
                keep = coefficients != 0.0
                self._rows.append(self.num_rows + local[keep])
                self._cols.append(np.asarray(columns)[keep])
                self._vals.append(coefficients[keep])
        self._row_lower.append(lower)
        self._row_upper.append(np.array(upper))
        start, stop = self.row_ranges.get(owner, (self.num_rows, self.num_rows))
        if stop != self.num_rows:
            raise RuntimeError(f"rows of {owner!r} must be added contiguously")
        self.num_rows += k
        self.row_ranges[owner] = (start, self.num_rows)

    def finish(self, **bookkeeping) -> MILP:
        concat = lambda parts, dtype=np.float64: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
        A = sp.csr_array(
            (concat(self._vals), (concat(self._rows, np.int64), concat(self._cols, np.int64))),
            shape=(self.num_rows, self.num_columns),
        )
        A.sum_duplicates()
        return MILP(
            col_lower=concat(self._lower),
            col_upper=concat(self._upper),
            integrality=concat(self._integer, bool),
            A=A,
            row_lower=concat(self._row_lower),
            row_upper=concat(self._row_upper),
            row_ranges=dict(self.row_ranges),
            **bookkeeping,
        )
