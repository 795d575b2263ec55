"""Write a matrix-form :class:`~relumilp.formulation.milp.MILP` as an MPS or LP file (through HiGHS)."""

from __future__ import annotations

from pathlib import Path

import highspy

from .._io import atomic_path
from ..backends.highs import to_highs
from ..errors import ModelFileError
from .milp import MILP


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
