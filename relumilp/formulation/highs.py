"""Write a matrix-form :class:`~relumilp.formulation.milp.MILP` as an MPS or LP file (through HiGHS)."""

from __future__ import annotations

import json
from pathlib import Path

import highspy

from .._io import TEXT_MARK, atomic_path, atomic_write_text, marked_json
from ..backends.highs import to_highs
from ..errors import ModelFileError
from .milp import MILP


def write_model(milp: MILP, path, names_path=None) -> Path:
    """Write ``milp`` as ``.mps`` or ``.lp`` (chosen by the suffix), whole or not at all.

    Columns are named ``x[i]`` (inputs), ``y[j]`` (outputs), ``node[i]`` and ``node.z[i]`` (binaries),
    rows ``node[k]``. With ``names_path``, a JSON map ``{"columns": [...], "rows": [...], "inputs": [...],
    "outputs": [...]}`` (names in column/row order, and the column indices of inputs and outputs) is
    written beside the model.
    """
    path = Path(path)
    if path.suffix.lower() not in (".mps", ".lp"):
        raise ModelFileError(f"cannot write {path}: the output file must end in .mps or .lp")
    h = to_highs(milp, names=True)
    with atomic_path(path) as tmp:
        if h.writeModel(str(tmp)) == highspy.HighsStatus.kError:
            raise ModelFileError(f"HiGHS could not write {path}")
        # a comment line first, by which a later run knows the file is ours to replace
        comment = "* " if path.suffix.lower() == ".mps" else "\\ "
        body = Path(tmp).read_bytes()
        Path(tmp).write_bytes(f"{comment}{TEXT_MARK}\n".encode() + body)
    if names_path is not None:
        names = {"columns": milp.column_names(), "rows": milp.row_names(),
                 "inputs": milp.input_columns.tolist(), "outputs": milp.output_columns.tolist()}
        atomic_write_text(names_path, json.dumps(marked_json(names)))
    return path
