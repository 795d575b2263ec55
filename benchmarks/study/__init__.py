"""Trade-off study: training and post-processing choices vs the cost of optimising over a ReLU network.

    python -m benchmarks.study [--quick] [--problems peaks,rosenbrock,reformer] [--time-limit S] [--out DIR]
    python -m benchmarks.study --preset full          # the full grid (longer; run it in the background)
    python -m benchmarks.study --preset training      # the training benchmark (training.csv / training.md)

Reproduces the kind of study of Plate et al. 2025 ("An analysis of optimization problems involving ReLU
neural networks"): for each problem, architecture and training choice a surrogate is trained, its linear
regions are counted, and the optimisation problem is solved with HiGHS for each post-processing choice
(bound tightening, a-posteriori scaling), with OMLT as a peer.

Modules, one job each: :mod:`benchmarks.study.runner` (problems and recipes, training, solving, the
measurement loop, the CSV, the command line), :mod:`benchmarks.study.report` (tables and summaries from
the rows), :mod:`benchmarks.study.figures` (matplotlib figures).

Outputs: ``<out>/study_<name>.csv`` and ``.md`` (``training.csv`` / ``.md`` for the training preset) and
figures ``<figures>/study_<name>_*.png``. Timeouts are rows with status ``time_limit`` (incumbent and
bound kept), never dropped; methods that are not available are rows with status ``n/a`` and the reason.
"""

from benchmarks.study.report import _fmt, _md_table, markdown, summaries, training_markdown
from benchmarks.study.runner import (
    COLUMNS,
    DEFAULT_WEIGHTS,
    Config,
    Training,
    _loadavg,
    main,
    preset,
    read_rows,
    run,
    write_csv,
)

__all__ = ["COLUMNS", "DEFAULT_WEIGHTS", "Config", "Training", "main", "markdown", "preset", "read_rows", "run",
           "summaries", "training_markdown", "write_csv"]
