"""The names a user chooses between, in one light module.

The command line lists them in ``--help`` without importing numerical code (numpy, scipy, torch), so
that ``relumilp --help`` starts in a fraction of a second; the modules that implement the choices take
their names from here.
"""

#: bound methods, cheapest first: each runs every cheaper one before it (``relumilp.bounds.compute_bounds``)
BOUND_METHODS = ("interval", "symbolic", "alpha", "cones", "lp", "milp")
#: the bound methods that solve LPs / MILPs: they take worker processes, progress bars and solver time limits
SOLVER_BOUND_METHODS = ("cones", "lp", "milp")
#: how ``relumilp.optimize`` answers: branch and bound over input boxes, one big-M MILP, or the faster one
SOLVE_METHODS = ("auto", "bab", "milp")
#: ``auto`` uses input-box branch and bound up to this many inputs (over a box domain) ...
BAB_MAX_INPUTS = 8
#: ... for networks with more activation neurons than this; below it HiGHS solves the big-M MILP as fast
#: (Peaks 2-16-16-1: 0.6-0.8 s CPU either way) and the MILP path needs no torch (benchmarks/startup.py)
MILP_MAX_NEURONS = 32
#: MILP formulations of ``relumilp.optimize``
FORMULATIONS = ("bigm", "ideal_cuts")
