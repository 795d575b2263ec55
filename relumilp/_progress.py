"""The one progress display of relumilp: a tqdm line on stderr that disappears when done.

Every long phase (bound tightening, branch and bound, MILP solves, verification, region counting,
figures) draws through :func:`progress_bar`, so they look alike and ``--quiet`` (or a caller's
``progress=False``) turns them all off the same way. The CLI decides whether to show them
(``commands.common.show_progress``: only when stderr is a terminal).
"""

from __future__ import annotations

import sys


def progress_bar(show: bool, desc: str, unit: str = "it", total: int | None = None):
    """A tqdm bar on stderr (``leave=False``), disabled when ``show`` is false; use it as a context manager."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not show, file=sys.stderr, leave=False,
                dynamic_ncols=True)
