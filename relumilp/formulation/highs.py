"""The highspy backend: load a matrix-form :class:`~relumilp.formulation.milp.MILP` into HiGHS directly.

Used where Pyomo would only add overhead: bound tightening (thousands of small solves), the
verification runner, and writing MPS/LP files.
"""

from __future__ import annotations

from pathlib import Path

import highspy
import numpy as np

from .._io import atomic_path
from ..backends.highs import new_highs
from ..errors import ModelFileError
from .milp import MILP

INF = highspy.kHighsInf


def _finite(values: np.ndarray) -> np.ndarray:
    return np.clip(values, -INF, INF)


def to_highs(milp: MILP, log: bool = False, threads: int | None = None) -> highspy.Highs:
    """A ``highspy.Highs`` instance holding ``milp`` (objective included when set)."""
    h = new_highs(log, threads)
    lp = highspy.HighsLp()
    lp.num_col_ = milp.num_columns
    lp.num_row_ = milp.num_rows
    lp.col_cost_ = milp.objective if milp.objective is not None else np.zeros(milp.num_columns)
    lp.col_lower_ = _finite(milp.col_lower)
    lp.col_upper_ = _finite(milp.col_upper)
    lp.row_lower_ = _finite(milp.row_lower)
    lp.row_upper_ = _finite(milp.row_upper)
    csc = milp.A.tocsc()
    csc.sort_indices()
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = csc.indptr.astype(np.int32)
    lp.a_matrix_.index_ = csc.indices.astype(np.int32)
    lp.a_matrix_.value_ = csc.data
    lp.a_matrix_.num_col_ = milp.num_columns
    lp.a_matrix_.num_row_ = milp.num_rows
    if milp.sense == "max":
        lp.sense_ = highspy.ObjSense.kMaximize
    if milp.integrality.any():
        lp.integrality_ = [
            highspy.HighsVarType.kInteger if flag else highspy.HighsVarType.kContinuous for flag in milp.integrality
        ]
    status = h.passModel(lp)
    if status == highspy.HighsStatus.kError:
        raise RuntimeError("HiGHS rejected the model")
    return h


def write_model(milp: MILP, path) -> Path:
    """Write ``milp`` as ``.mps`` or ``.lp`` (chosen by the suffix), whole or not at all."""
    path = Path(path)
    if path.suffix.lower() not in (".mps", ".lp"):
        raise ModelFileError(f"cannot write {path}: the output file must end in .mps or .lp")
    h = to_highs(milp)
    with atomic_path(path) as tmp:
        if h.writeModel(str(tmp)) == highspy.HighsStatus.kError:
            raise ModelFileError(f"HiGHS could not write {path}")
    return path
