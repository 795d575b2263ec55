"""Write a matrix-form :class:`~relumilp.formulation.milp.MILP` as an MPS or LP file (through HiGHS)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import highspy
import numpy as np
import scipy.sparse as sp

from .._io import TEXT_MARK, atomic_path, atomic_write_text, marked_json
from ..backends.highs import to_highs
from ..errors import ModelFileError
from .milp import MILP
from .numerics import SMALL, dropped_by_highs


def write_model(milp: MILP, path, names_path=None) -> Path:
    """Write ``milp`` as ``.mps`` or ``.lp`` (chosen by the suffix), whole or not at all.

    Columns are named ``x[i]`` (inputs), ``y[j]`` (outputs), ``node[i]`` and ``node.z[i]`` (binaries),
    rows ``node[k]`` (in ``.lp`` files, whose format reserves brackets, ``x(i)``, ``node(k)``, ...). With ``names_path``, a JSON map ``{"columns": [...], "rows": [...], "inputs": [...],
    "outputs": [...]}`` (names in column/row order, and the column indices of inputs and outputs) is
    written beside the model.
    """
    path = Path(path)
    if path.suffix.lower() not in (".mps", ".lp"):
        raise ModelFileError(f"cannot write {path}: the output file must end in .mps or .lp")
    warn_dropped_entries(milp, path.name)
    columns, rows = milp.column_names(), milp.row_names()
    # HiGHS writes every name only when all are valid for the format, else it renames all c0, c1, ... / r0, ...
    # (the names map then describes names the file does not have): no white space in either format, and
    # the LP format reserves [ ] for quadratic terms, so there x[0] is written x(0)
    table = {ord(c): "_" for c in " \t\n\r"}
    if path.suffix.lower() == ".lp":
        table.update({ord("["): "(", ord("]"): ")"})
    columns = [name.translate(table) for name in columns]
    rows = [name.translate(table) for name in rows]
    h = to_highs(milp, names=(columns, rows))
    with atomic_path(path) as tmp:
        if h.writeModel(str(tmp)) == highspy.HighsStatus.kError:
            raise ModelFileError(f"HiGHS could not write {path}")
        # a comment line first, by which a later run knows the file is ours to replace
        comment = "* " if path.suffix.lower() == ".mps" else "\\ "
        body = Path(tmp).read_bytes()
        Path(tmp).write_bytes(f"{comment}{TEXT_MARK}\n".encode() + body)
    if names_path is not None:
        names = {"columns": columns, "rows": rows,
                 "inputs": milp.input_columns.tolist(), "outputs": milp.output_columns.tolist()}
        atomic_write_text(names_path, json.dumps(marked_json(names)))
    return path


def warn_dropped_entries(milp: MILP, what: str, stacklevel: int = 3) -> None:
    """Warn when HiGHS, reading the file (or the model) ``what``, would drop matrix entries (``|a| <= 1e-9``, its small_matrix_value)
    that matter: an entry whose largest contribution ``|a| max(|l|, |u|)`` over its column's bounds exceeds
    1e-6 of its row's largest one (at least 1). relumilp's own solves equilibrate the model first
    (:mod:`relumilp.formulation.numerics`); a written file or :meth:`CompiledNetwork.to_highs` goes to
    the solver as it is."""
    A = sp.csr_array(milp.A)
    if not A.nnz:
        return
    reach = np.maximum(np.abs(milp.col_lower), np.abs(milp.col_upper))
    with np.errstate(invalid="ignore"):
        contribution = np.abs(A.data) * reach[A.indices]
    rows = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
    row_largest = np.zeros(A.shape[0])
    np.maximum.at(row_largest, rows, np.nan_to_num(contribution, nan=0.0, posinf=np.inf))
    small = dropped_by_highs(A.data)
    lost = small & ~(contribution <= 1e-6 * np.maximum(1.0, row_largest[rows]))
    if lost.any():
        warnings.warn(f"{what}: {int(lost.sum())} matrix coefficient(s) of magnitude <= {SMALL:g} that matter; "
                      "HiGHS drops such entries when it reads the model and then solves another one (possibly "
                      "with another optimum): rescale the network's inputs, or solve with relumilp, which "
                      "equilibrates the model", stacklevel=stacklevel)
