"""Running the study: problems and training recipes, training (cached), solving, the measurement loop,
the CSV and the command line (``python -m benchmarks.study``, see the package docstring).

For each problem (:mod:`benchmarks.problems`), architecture and training choice (plain, clipped ReLU,
L1 / group-L1 + lossless pruning, ReLU-stability loss, dropout, combinations) a surrogate is trained with
:func:`relumilp.train.fit_surrogate` (cached under ``benchmarks/results/cache/``), its linear regions on
the domain are counted (:func:`relumilp.analysis.count_regions`), and the optimisation problem is solved
with HiGHS for each post-processing choice (bound tightening interval / symbolic / lp / milp, a-posteriori
scaling off / on). Every row records test error, regions, % stable neurons, binaries, big-M sizes,
bound/build/solve times, status, optimum, dual bound and a forward-pass check ``|objective - c . f(x*)|``
of the returned point through the trained network. OMLT (``ReluBigMFormulation`` with its own interval
bounds, solved by the same HiGHS through Pyomo appsi with the same options) is run once per trained ReLU
network as a peer.

Outputs: ``<out>/study_<name>.csv`` (``training_rows.csv`` for the training preset), rewritten as
``.partial.csv`` after every network so an interrupted run can ``--resume``; the Markdown and summary
come from :mod:`benchmarks.study.report`, the figures from :mod:`benchmarks.study.figures`. Timeouts are
rows with status ``time_limit`` (incumbent and bound kept), never dropped; methods that are not available
are rows with status ``n/a`` and the reason.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import platform
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import benchmarks.study
from benchmarks.problems import PROBLEMS, Problem, available, get_problem
from benchmarks.study.figures import make_figures
from benchmarks.study.report import _fmt, markdown, summaries, training_markdown
from benchmarks.tables import save_rows

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
FIGURES = REPO / "docs" / "figures"
CACHE_VERSION = 1
#: HiGHS options shared by relumilp and OMLT solves (relumilp.solve sets the two tolerances itself)
HIGHS_TOLERANCES = {"mip_feasibility_tolerance": 1e-9, "primal_feasibility_tolerance": 1e-9}

# -- training specifications ---------------------------------------------------------------------------

#: weights of the recipes named without one (the training preset tries a small grid around them)
DEFAULT_WEIGHTS = {"l1": 1e-4, "group_l1": 1e-3, "stability": 1e-2, "big_m": 1e-3, "dropout": 0.1, "clipped": 1.0}


@dataclass(frozen=True)
class Training:
    """A training recipe, written as ``token+token+...``: ``plain``, ``clipped[=c]``, ``l1[=w]``,
    ``group_l1[=w]``, ``stability[=w]``, ``big_m[=w]``, ``dropout[=p]``, ``prune``.

    ``l1`` and ``group_l1`` imply ``prune`` (lossless pruning of stable and dead neurons with interval
    bounds after training).
    """

    spec: str
    options: tuple = ()
    prune: bool = False

    @classmethod
    def parse(cls, spec: str) -> "Training":
        spec = spec.strip()
        options: dict = {}
        prune = False
        for token in spec.split("+"):
            key, _, value = token.strip().partition("=")
            if key == "plain":
                continue
            if key == "prune":
                prune = True
                continue
            if key not in DEFAULT_WEIGHTS:
                raise ValueError(f"unknown training token {token!r} in {spec!r}")
            weight = float(value) if value else DEFAULT_WEIGHTS[key]
            if key == "clipped":
                options.update(activation="clipped", clip=weight)
            else:
                options[key] = weight
            if key in ("l1", "group_l1"):
                prune = True
        return cls(spec, tuple(sorted(options.items())), prune)

    @property
    def kwargs(self) -> dict:
        return dict(self.options)

    @property
    def is_relu(self) -> bool:
        return self.kwargs.get("activation", "relu") == "relu"


# -- configuration ---------------------------------------------------------------------------------------


@dataclass
class Config:
    name: str
    problems: list[str]
    #: hidden widths per problem
    archs: dict[str, list[tuple[int, ...]]]
    trainings: list[str]
    tightenings: list[str]
    scalings: list[bool]
    time_limit: float = 30.0
    epochs: int = 150
    batch_size: int = 256
    lr: float = 3e-3
    n_train: dict[str, int] = field(default_factory=dict)
    seed: int = 0
    milp_time_limit: float = 1.0
    region_time_limit: float = 30.0
    omlt: bool = True
    #: the training preset: write the one-row-per-network training table (training.md / training.csv)
    training_table: bool = False
    #: per-training time limits (e.g. longer for the plain baseline); default time_limit
    time_limits: dict[str, float] = field(default_factory=dict)
    #: linear regions: "auto" (exact for <= 2 inputs, else MIP enumeration + sampling), "sample" or "none"
    region_method: str = "auto"
    #: wall-clock budget (s): networks not started within it are listed as skipped, not run
    budget_s: float | None = None
    #: reuse the rows of a previous run's CSV for networks (same cached network, same time limit) found there
    resume: bool = False
    #: wall-clock limit (s) of LP/MILP bound computations, run in a child process that is killed at the limit
    bounds_time_limit: float | None = None
    #: tightenings whose MILP is solved (default: all); the others only report bounds statistics
    solve_tightenings: list[str] | None = None


ARCHS_QUICK = {"peaks": [(16, 16), (8, 8, 8)], "rosenbrock": [(16, 16), (8, 8, 8)], "reformer": [(16, 16), (8, 8, 8)]}
#: two depths with about the same number of neurons (32 / 30) per problem; larger nets (24x24 on Peaks)
#: hit the 20 s limit in most post-processing variants on the shared 2-core machine, see docs/benchmarks.md
ARCHS_FULL = {"peaks": [(16, 16), (10, 10, 10)], "rosenbrock": [(16, 16), (10, 10, 10)],
              "reformer": [(16, 16), (10, 10, 10)]}


def preset(name: str) -> Config:
    if name == "quick":
        return Config("quick", list(PROBLEMS), ARCHS_QUICK, ["plain", "clipped", "group_l1", "stability"],
                      ["interval", "lp"], [False, True], time_limit=10.0, epochs=60, region_time_limit=10.0,
                      n_train={"peaks": 2000, "rosenbrock": 2000})
    if name == "full":
        return Config("full", list(PROBLEMS), ARCHS_FULL,
                      ["plain", "clipped", "l1", "group_l1", "stability", "dropout"],
                      ["interval", "symbolic", "lp", "milp"], [False, True], time_limit=20.0, epochs=150,
                      milp_time_limit=0.5, region_time_limit=20.0, budget_s=2400.0)
    if name == "training":
        # a small grid of regularizer weights (the second round -- 3e-4 / 3e-3 -- was added after the first
        # showed where the accuracy / speed knee lies; see docs/benchmarks.md)
        trainings = ["plain", "clipped", "dropout", "l1=1e-4", "l1=3e-4", "l1=1e-3", "group_l1=1e-3", "group_l1=1e-2",
                     "stability=1e-3", "stability=3e-3", "stability=1e-2", "l1=1e-4+stability=1e-3",
                     "group_l1=1e-3+stability=1e-3", "clipped+stability=3e-4", "clipped+stability=1e-3",
                     "clipped+stability=3e-3"]
        return Config("training", ["peaks", "rosenbrock"], {"peaks": [(64, 64, 64)], "rosenbrock": [(64, 64, 64)]},
                      trainings, ["interval", "lp"], [False], time_limit=60.0, epochs=200, region_time_limit=60.0,
                      omlt=False, training_table=True, time_limits={"plain": 300.0},
                      n_train={"peaks": 2000, "rosenbrock": 2000}, bounds_time_limit=300.0, solve_tightenings=["lp"])
    raise ValueError(f"unknown preset {name!r}")


# -- utilities --------------------------------------------------------------------------------------------


def arch_label(problem: Problem, hidden) -> str:
    return "-".join(str(n) for n in (problem.n_in, *hidden, problem.n_out))


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _cache_key(problem: Problem, hidden, training: Training, config: Config) -> str:
    payload = {
        "v": CACHE_VERSION, "problem": problem.name, "n_train": config.n_train.get(problem.name),
        "seed": config.seed, "hidden": list(hidden), "options": [list(kv) for kv in training.options],
        "epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _stem(problem: Problem, hidden, training: Training, config: Config) -> str:
    """File name (without suffix) of a cached network."""
    return f"{problem.name}-{'x'.join(map(str, hidden))}-{slug(training.spec)}-{_cache_key(problem, hidden, training, config)}"


def load_problem(name: str, config: Config) -> Problem:
    problem = get_problem(name)
    n = config.n_train.get(name)
    if n is not None and name in ("peaks", "rosenbrock"):
        from benchmarks import problems as P

        problem = P.peaks(n_train=n) if name == "peaks" else P.rosenbrock_problem(n_train=n)
    return problem


def held_out_errors(net, X_test, Y_test) -> tuple[float, float]:
    """MSE in original units (mean over outputs) and MSE / variance (mean over outputs)."""
    pred = net.forward(X_test).reshape(Y_test.shape)
    mse = np.mean((pred - Y_test) ** 2, axis=0)
    return float(np.mean(mse)), float(np.mean(mse / np.maximum(Y_test.var(axis=0), 1e-300)))


@dataclass
class Trained:
    problem: Problem
    hidden: tuple
    training: Training
    net: object  # relumilp.Network (as trained)
    used: object  # the network given to the compiler (pruned when the recipe says so)
    info: dict


def train_network(problem: Problem, hidden, training: Training, config: Config, cache_dir: Path, data) -> Trained:
    """Train (or load from the cache) one network; test errors and linear regions are cached alongside."""
    from relumilp import Network, load_network

    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = _stem(problem, hidden, training, config)
    net_path, info_path = cache_dir / f"{stem}.npz", cache_dir / f"{stem}.json"
    X, Y, X_test, Y_test = data
    if net_path.is_file() and info_path.is_file():
        net = Network.load(net_path)
        info = json.loads(info_path.read_text())
        info["cached"] = True
    else:
        import torch

        from relumilp.train import fit_surrogate

        torch.set_num_threads(1)
        model, history = fit_surrogate(
            X, Y, hidden=hidden, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed,
            bounds=(problem.lower, problem.upper), device="cpu", progress=False, **training.kwargs,
        )
        net = load_network(model)
        net.save(net_path)
        info = {"train_s": history["seconds"], "val_loss": history["val_loss"][-1],
                "train_loss": history["train_loss"][-1], "cached": False}
        info["test_mse"], info["test_rel_mse"] = held_out_errors(net, X_test, Y_test)
        info_path.write_text(json.dumps(info, indent=1))
    used = net
    if training.prune:
        used = prune_interval(net, problem.domain)
    return Trained(problem, tuple(hidden), training, net, used, info)


def prune_interval(net, domain):
    """Lossless pruning with interval bounds, repeated until nothing changes."""
    from relumilp.bounds.interval import interval_bounds
    from relumilp.pruning import prune

    pruned = prune(net, interval_bounds(net, domain))
    while sum(pruned.hidden_sizes) < sum(net.hidden_sizes):
        net, pruned = pruned, prune(pruned, interval_bounds(pruned, domain))
    return pruned


def count_linear_regions(trained: Trained, config: Config, cache_dir: Path) -> dict:
    """Linear regions of the trained network on the domain: exact for 2 inputs, else MIP enumeration with a
    time limit (and sampling, the larger lower bound wins). Cached next to the network."""
    if config.region_method == "none":
        return {"count": None, "method": "n/a", "exact": False, "time": 0.0, "note": "not requested"}
    key = f"regions_{config.region_time_limit:g}_{config.region_method}"
    info_path = cache_dir / f"{_stem(trained.problem, trained.hidden, trained.training, config)}.json"
    if key in trained.info:
        return trained.info[key]
    try:
        from relumilp.analysis import count_regions
    except ImportError as exc:
        return {"count": None, "method": "n/a", "exact": False, "time": 0.0, "note": f"not available: {exc}"}
    net, domain = trained.net, trained.problem.domain
    start = time.perf_counter()
    try:
        if config.region_method == "sample":
            result = count_regions(net, domain, "sample", samples=20000)
        elif net.input_size <= 2:
            result = count_regions(net, domain, "exact")
        else:
            result = count_regions(net, domain, "mip", time_limit=config.region_time_limit)
            if not result.exact:
                sampled = count_regions(net, domain, "sample", samples=20000)
                if sampled.count > result.count:
                    result = sampled
        out = {"count": int(result.count), "method": result.method, "exact": bool(result.exact),
               "time": time.perf_counter() - start, "note": result.note}
    except Exception as exc:  # the counter is a colleague's module: record, do not fail the study
        out = {"count": None, "method": "n/a", "exact": False, "time": time.perf_counter() - start,
               "note": f"{type(exc).__name__}: {exc}"}
    trained.info[key] = out
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        info[key] = out
        info_path.write_text(json.dumps(info, indent=1))
    return out


# -- the optimisation problem -------------------------------------------------------------------------------


def _objective_and_constraints(model, outputs, problem: Problem):
    import pyomo.environ as pyo

    c = problem.objective_vector()
    model.objective = pyo.Objective(expr=sum(float(c[i]) * outputs[i] for i in range(problem.n_out) if c[i] != 0),
                                    sense=pyo.maximize if problem.sense == "max" else pyo.minimize)
    model.output_limits = pyo.ConstraintList()
    for con in problem.constraints:
        model.output_limits.add(outputs[con.index] <= con.limit if con.sense == "<=" else outputs[con.index] >= con.limit)


def forward_check(net, problem: Problem, x, objective) -> float:
    """``|objective - c . f(x)|`` with ``f`` the trained network's own forward pass."""
    y = np.asarray(net.forward(np.asarray(x, dtype=np.float64)), dtype=np.float64).ravel()
    return float(abs(objective - problem.objective_vector() @ y))


def constraint_violation(net, problem: Problem, x) -> float:
    y = np.asarray(net.forward(np.asarray(x, dtype=np.float64))).ravel()
    worst = 0.0
    for con in problem.constraints:
        excess = y[con.index] - con.limit if con.sense == "<=" else con.limit - y[con.index]
        worst = max(worst, float(excess))
    return worst


def _bounds_sound(compiled, samples) -> bool:
    try:
        compiled.bounds.check_sound(compiled.network, samples, tol=1e-7)
        return True
    except AssertionError:
        return False


def big_m_by_layer(compiled) -> list[float]:
    from relumilp.bounds import phases

    values = []
    for node in compiled.network.activations:
        lower, upper = compiled.bounds.pre_activation(compiled.network, node)
        unstable = phases(node, lower, upper).unstable
        m = np.maximum(-lower, upper)[unstable]
        values.append(float(m.max()) if m.size else 0.0)
    return values


def _bounds_child(net, domain, tighten: str, options: dict, conn) -> None:
    """Child process of :func:`tighten_bounds`: compute, send ``(bounds, seconds, error)`` back."""
    import threading

    from tqdm import tqdm

    import relumilp

    tqdm.set_lock(threading.RLock())  # no multiprocessing lock (its semaphores outlive a killed child)
    import relumilp.bounds.obbt  # noqa: F401  imports (torch via symbolic bounds) stay outside the clock
    import relumilp.bounds.symbolic  # noqa: F401

    relumilp.compute_bounds(net, domain, "symbolic")  # warm-up (first torch calls), not timed
    start = time.perf_counter()
    try:
        # one process: a killed child must not leave worker processes behind
        bounds = relumilp.compute_bounds(net, domain, tighten, **{"workers": 1, **options})
        conn.send((bounds, time.perf_counter() - start, None))
    except Exception as exc:  # sent back and re-raised in the parent
        conn.send((None, 0.0, exc))
    finally:
        conn.close()


def _bounds_with_deadline(net, domain, tighten: str, options: dict, seconds: float):
    """``compute_bounds`` in a spawned process, killed after ``seconds`` (HiGHS cannot be interrupted
    from Python). Returns ``(bounds or None, seconds, error or None)``; ``None, seconds, None`` on timeout."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_bounds_child, args=(net, domain, tighten, options, child), daemon=True)
    start = time.perf_counter()
    process.start()
    child.close()
    try:
        if parent.poll(seconds):
            return parent.recv()
        return None, time.perf_counter() - start, None
    except EOFError:
        return None, time.perf_counter() - start, RuntimeError("the bound process died without an answer")
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
        parent.close()


def tighten_bounds(trained: Trained, tighten: str, config: Config):
    """Bounds of the (pruned) network by ``tighten`` (computed once, shared by the scaling variants).

    Returns ``(bounds, seconds, None)``, or ``(None, seconds, reason)`` when the method is not available or
    (``config.bounds_time_limit``, LP/MILP only) did not finish in time.
    """
    import relumilp

    options = {"milp_time_limit": config.milp_time_limit} if tighten == "milp" else {}
    net, domain = trained.used, trained.problem.domain
    start = time.perf_counter()
    try:
        if config.bounds_time_limit and tighten in ("lp", "milp"):
            bounds, seconds, error = _bounds_with_deadline(net, domain, tighten, options, config.bounds_time_limit)
            if error is not None:
                raise error
            if bounds is None:
                return None, seconds, (f"{tighten} bounds did not finish within {config.bounds_time_limit:g} s "
                                       "(process killed)")
            return bounds, seconds, None
        bounds = relumilp.compute_bounds(net, domain, tighten, **options)
    except (ImportError, NotImplementedError) as exc:
        return None, 0.0, f"{tighten} bounds not available: {type(exc).__name__}: {exc}"
    except relumilp.RelumilpError as exc:
        if "unknown" in str(exc) or "not available" in str(exc) or "not implemented" in str(exc):
            return None, 0.0, f"{tighten} bounds not available: {exc}"
        raise
    return bounds, time.perf_counter() - start, None


def solve_relumilp(trained: Trained, tighten: str, scale: bool, time_limit: float, config: Config, samples,
                   bounds=None, bounds_s: float = 0.0, solve: bool = True) -> dict:
    """Compile the (pruned) network with the given post-processing, add the problem, solve; one row's fields.

    ``bounds`` (from :func:`tighten_bounds`, which took ``bounds_s`` seconds) are computed here when None.
    """
    import pyomo.environ as pyo

    import relumilp

    problem = trained.problem
    row: dict = {}
    if bounds is None:
        bounds, bounds_s, reason = tighten_bounds(trained, tighten, config)
        if bounds is None:
            return {"status": "n/a", "note": reason}
    model = pyo.ConcreteModel()
    start = time.perf_counter()
    try:
        block = relumilp.add_network(model, trained.used, input_bounds=problem.domain, tighten=tighten, scale=scale,
                                     bounds=bounds, name="net")
    except (ImportError, NotImplementedError) as exc:
        return {"status": "n/a", "note": f"{'scaling' if scale else tighten} not available: {type(exc).__name__}: {exc}"}
    compiled = block.compiled
    _objective_and_constraints(model, block.outputs, problem)
    built = time.perf_counter()
    stats = compiled.stats()
    prep_s = compiled.times.get("bounds", 0.0) + compiled.times.get("scaling", 0.0)
    bounds_s = bounds_s + prep_s
    big_m = compiled.big_m()
    neurons = sum(trained.net.hidden_sizes)
    row.update(
        binaries=stats["binaries"], unstable=stats["unstable"], neurons_compiled=stats["neurons"],
        stable_pct=100.0 * (1.0 - stats["unstable"] / neurons) if neurons else 100.0,
        max_M=float(big_m.max()) if big_m.size else 0.0, median_M=float(np.median(big_m)) if big_m.size else 0.0,
        max_M_by_layer="/".join(f"{m:.3g}" for m in big_m_by_layer(compiled)),
        bounds_s=bounds_s, build_s=built - start - prep_s, bounds_sound=_bounds_sound(compiled, samples),
    )
    if not solve:
        row.update(status="not_solved", note="bounds statistics only (this tightening is not solved in this preset)")
        return row
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = relumilp.solve(model, time_limit=time_limit, threads=1, check="off")
    row.update(solve_s=result.times["solve"], status=result.status, objective=result.objective, bound=result.bound,
               gap=result.gap)
    row["total_s"] = row["bounds_s"] + row["build_s"] + row["solve_s"]
    if result.x is not None and result.objective is not None:
        row["fwd_check"] = forward_check(trained.net, problem, result.x, result.objective)
        row["x_opt"] = " ".join(f"{v:.6g}" for v in result.x)
        if problem.constraints:
            row["constraint_violation"] = constraint_violation(trained.net, problem, result.x)
    return row


def solve_omlt(trained: Trained, time_limit: float) -> dict:
    """OMLT's ReluBigMFormulation (its own interval bounds) of the trained network, same HiGHS and options."""
    from benchmarks.omlt_peer import omlt_available, omlt_block

    if not omlt_available():
        return {"omlt_status": "n/a", "omlt_note": "OMLT is not installed"}
    net = trained.net
    if not net.is_sequential or any(node.kind != "relu" for node in net.activations):
        return {"omlt_status": "n/a", "omlt_note": "OMLT cannot read this network (ReluBigMFormulation: sequential ReLU only)"}
    import pyomo.environ as pyo
    from pyomo.contrib.appsi.base import TerminationCondition
    from pyomo.contrib.appsi.solvers import Highs

    problem = trained.problem
    model = pyo.ConcreteModel()
    start = time.perf_counter()
    quiet = logging.getLogger("pyomo.core")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # OMLT initialises its scaled inputs to 0, outside their bounds (W1002)
    try:
        block = omlt_block(model, net, problem.domain)
    finally:
        quiet.setLevel(level)
    _objective_and_constraints(model, block.outputs, problem)
    built = time.perf_counter()
    solver = Highs()
    solver.config.load_solution = False
    solver.config.time_limit = float(time_limit)
    solver.highs_options = {**HIGHS_TOLERANCES, "threads": 1}
    start_solve = time.perf_counter()
    results = solver.solve(model)
    solve_s = time.perf_counter() - start_solve
    status = {TerminationCondition.optimal: "optimal", TerminationCondition.maxTimeLimit: "time_limit",
              TerminationCondition.infeasible: "infeasible"}.get(results.termination_condition,
                                                                 str(results.termination_condition).split(".")[-1])
    row = {"omlt_status": status, "omlt_build_s": built - start, "omlt_solve_s": solve_s,
           "omlt_binaries": sum(1 for v in block.component_data_objects(pyo.Var) if v.is_binary())}
    if results.best_feasible_objective is not None:
        results.solution_loader.load_vars()
        row["omlt_objective"] = results.best_feasible_objective
        x = np.array([pyo.value(block.inputs[i]) for i in range(net.input_size)])
        row["omlt_fwd_check"] = forward_check(net, problem, x, results.best_feasible_objective)
    row["omlt_bound"] = results.best_objective_bound
    return row


def compare_with_omlt(row: dict, omlt: dict) -> dict:
    out = dict(omlt)
    if omlt.get("omlt_status") == "n/a" or row.get("status") == "n/a":
        return out
    a, b = row.get("objective"), omlt.get("omlt_objective")
    if a is not None and b is not None:
        out["omlt_diff"] = abs(a - b)
        if row.get("status") == "optimal" and omlt.get("omlt_status") == "optimal":
            out["omlt_agree"] = bool(abs(a - b) <= 1e-6 * max(1.0, abs(a)))
    if row.get("total_s") and "omlt_solve_s" in omlt:
        out["omlt_time_ratio"] = (omlt["omlt_build_s"] + omlt["omlt_solve_s"]) / row["total_s"]
        out["omlt_solve_ratio"] = omlt["omlt_solve_s"] / max(row["solve_s"], 1e-9)
    return out


# -- the run ------------------------------------------------------------------------------------------------

COLUMNS = [
    "problem", "architecture", "depth", "training", "pruned", "hidden_after_prune", "tightening", "scaling",
    "test_mse", "test_rel_mse", "train_s", "regions", "regions_method", "regions_exact", "stable_pct", "unstable",
    "binaries", "max_M", "median_M", "max_M_by_layer", "bounds_s", "build_s", "solve_s", "total_s", "time_limit",
    "status", "objective", "bound", "gap", "fwd_check", "constraint_violation", "bounds_sound", "x_opt",
    "omlt_status", "omlt_build_s", "omlt_solve_s", "omlt_objective", "omlt_bound", "omlt_fwd_check", "omlt_diff",
    "omlt_agree", "omlt_time_ratio", "omlt_solve_ratio", "omlt_binaries", "omlt_note", "note",
]


def run(config: Config, out_dir: Path, figures_dir: Path | None, cache_dir: Path | None = None,
        log=print) -> list[dict]:
    cache_dir = Path(cache_dir) if cache_dir else RESULTS / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    gitignore = cache_dir / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("# trained networks of benchmarks/study.py: regenerated on demand, kept out of git\n*\n!.gitignore\n")
    started = time.perf_counter()
    env = environment()
    warm_up(config.omlt)
    rows: list[dict] = []
    skipped: list[str] = []
    previous = read_rows(rows_path(config, out_dir)) + read_rows(partial_path(config, out_dir)) if config.resume else []
    previous_by_key = {(r["problem"], r["architecture"], r["training"], r["tightening"], r["scaling"]): r
                       for r in previous}  # the partial file (read last) wins
    reused = 0
    problems: dict[str, tuple] = {}
    for name in config.problems:
        reason = available(name)
        if reason:
            log(f"skipping problem {name}: {reason}")
            skipped.append(f"{name}: {reason}")
            continue
        problem = load_problem(name, config)
        data = problem.data(config.seed)
        samples = np.vstack([problem.domain.sample(2048, rng=1), data[2][:512]])
        problems[name] = (problem, data, samples)
    # architecture index outermost, so a budget cut drops the last architecture of every problem alike
    depth = max((len(config.archs[name]) for name in problems), default=0)
    jobs = [(name, config.archs[name][i], spec) for i in range(depth) for name in problems
            if i < len(config.archs[name]) for spec in config.trainings]
    for name, hidden, spec in jobs:
        problem, data, samples = problems[name]
        if config.budget_s is not None and time.perf_counter() - started > config.budget_s:
            skipped.append(f"{name} {arch_label(problem, hidden)} {spec}: not started within the "
                           f"{config.budget_s:.0f} s budget")
            log(f"skipping {skipped[-1]}")
            continue
        training = Training.parse(spec)
        trained = train_network(problem, hidden, training, config, cache_dir, data)
        regions = count_linear_regions(trained, config, cache_dir)
        base = {
            "problem": name, "architecture": arch_label(problem, hidden), "depth": len(hidden),
            "training": spec, "pruned": training.prune,
            "hidden_after_prune": "-".join(map(str, trained.used.hidden_sizes)) if training.prune else "",
            "test_mse": trained.info["test_mse"], "test_rel_mse": trained.info["test_rel_mse"],
            "train_s": trained.info["train_s"], "regions": regions["count"], "regions_method": regions["method"],
            "regions_exact": regions["exact"],
        }
        train_note = "cached" if trained.info.get("cached") else f"{trained.info['train_s']:.1f}s"
        log(f"[{time.perf_counter() - started:7.1f}s] {name} {base['architecture']} {spec}: test rel MSE "
            f"{base['test_rel_mse']:.4f}, regions {regions['count']} ({regions['method']}), "
            f"train {train_note}")
        time_limit = config.time_limits.get(spec, config.time_limit)
        wanted = [(name, base["architecture"], spec, t, "on" if sc else "off")
                  for t in config.tightenings for sc in config.scalings]
        old = [previous_by_key.get(k) for k in wanted]
        if all(r is not None and r.get("time_limit") == time_limit and r.get("test_mse") == base["test_mse"]
               for r in old):
            for r in old:
                r = dict(r, **base)
                r["reused"] = True
                rows.append(r)
            reused += len(old)
            log("    rows reused from the previous run's CSV (--resume)")
            continue
        omlt = None
        if config.omlt:
            try:
                omlt = solve_omlt(trained, time_limit)
            except Exception as exc:
                omlt = {"omlt_status": "error", "omlt_note": f"{type(exc).__name__}: {exc}"}
        for tighten in config.tightenings:
            try:
                bounds, bounds_s, reason = tighten_bounds(trained, tighten, config)
            except Exception as exc:
                bounds, bounds_s, reason = None, 0.0, f"{tighten} bounds failed: {type(exc).__name__}: {exc}"
                traceback.print_exc()
            for scale in config.scalings:
                row = dict(base, tightening=tighten, scaling="on" if scale else "off", time_limit=time_limit)
                try:
                    if bounds is None:
                        status = ("n/a" if "not available" in reason else
                                  "bounds_timeout" if "did not finish" in reason else "error")
                        row.update(status=status, note=reason, bounds_s=bounds_s)
                    else:
                        solve = config.solve_tightenings is None or tighten in config.solve_tightenings
                        row.update(solve_relumilp(trained, tighten, scale, time_limit, config, samples,
                                                  bounds=bounds, bounds_s=bounds_s, solve=solve))
                except Exception as exc:
                    row.update(status="error", note=f"{type(exc).__name__}: {exc}")
                    traceback.print_exc()
                if omlt is not None:
                    row.update(compare_with_omlt(row, omlt))
                if row.get("bounds_sound") is False:
                    row["note"] = (row.get("note", "") + " UNSOUND BOUNDS on sampled points").strip()
                rows.append(row)
                log(f"    {tighten:8s} scale {row['scaling']:3s}: {row.get('status')} obj {_fmt(row.get('objective'))}"
                    f" solve {_fmt(row.get('solve_s'))}s bin {row.get('binaries', '')} stable "
                    f"{_fmt(row.get('stable_pct'))}% |M|max {_fmt(row.get('max_M'))}"
                    + (f" | OMLT {row.get('omlt_status')} {_fmt(row.get('omlt_solve_s'))}s agree "
                       f"{row.get('omlt_agree', '')}" if omlt else "")
                    + (f" [{row['note']}]" if row.get("note") else ""))
        # partial results survive an interrupted run (and feed --resume)
        write_csv(partial_path(config, out_dir), rows, COLUMNS)
    env["reused_rows"] = reused
    env["wall_s"] = time.perf_counter() - started
    env["load_end"] = _loadavg()
    env["skipped"] = skipped
    write_outputs(config, rows, env, out_dir, figures_dir)
    log(f"done in {env['wall_s']:.0f}s")
    return rows


def warm_up(omlt: bool) -> None:
    """One tiny solve with each tool, so one-time costs (imports, first HiGHS call) hit no measured row."""
    from relumilp import Network

    net = Network.sequential([(np.array([[1.0, -1.0], [0.5, 1.0]]), np.array([0.1, -0.2])),
                              (np.array([[1.0, -2.0]]), np.array([0.0]))], "relu")
    problem = Problem("warm-up", np.full(2, -1.0), np.full(2, 1.0), ("y",), 0, "max", "", lambda seed: None)
    trained = Trained(problem, (2,), Training.parse("plain"), net, net, {})
    config = Config("warm-up", [], {}, [], [], [])
    samples = problem.domain.sample(16, rng=0)
    for tighten in ("interval", "lp"):
        try:
            solve_relumilp(trained, tighten, False, 10.0, config, samples)
        except Exception:  # pragma: no cover - reported by the real rows
            pass
    if omlt:
        try:
            solve_omlt(trained, 10.0)
        except Exception:  # pragma: no cover
            pass


def _loadavg() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover
        return "n/a"


def environment() -> dict:
    import highspy  # noqa: F401
    import pyomo

    versions = {"python": platform.python_version(), "pyomo": pyomo.version.version}
    for module in ("torch", "omlt", "numpy"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = "not installed"
    try:
        from importlib.metadata import version

        versions["highspy"] = version("highspy")
    except Exception:  # pragma: no cover
        versions["highspy"] = "?"
    command = "python -m benchmarks.study " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith(("study.py", os.path.join("study", "__main__.py"))) \
        else "benchmarks.study.main(...)"
    return {"command": command.strip(), "date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} logical cores",
            "load_start": _loadavg(), "versions": versions}


# -- output -------------------------------------------------------------------------------------------------


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    """``rows`` under ``columns`` (then any other keys they have, sorted), written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = sorted({k for r in rows for k in r} - set(columns))
    save_rows(path, columns + extra, [{k: ("" if v is None else v) for k, v in r.items()} for r in rows])


def rows_path(config: Config, out_dir: Path) -> Path:
    """Where the per-row CSV of ``config`` goes (``training_rows.csv`` for the training preset)."""
    return Path(out_dir) / ("training_rows.csv" if config.training_table else f"study_{config.name}.csv")


def partial_path(config: Config, out_dir: Path) -> Path:
    """The CSV a running study rewrites after every network (removed when the run completes)."""
    path = rows_path(config, out_dir)
    return path.with_name(path.stem + ".partial.csv")


def _from_csv(value: str):
    if value == "":
        return None
    if value in ("True", "False"):
        return value == "True"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def read_rows(path: Path) -> list[dict]:
    """The rows of a study CSV with numbers and flags converted back (empty list when there is none)."""
    if not Path(path).is_file():
        return []
    with Path(path).open(newline="") as handle:
        rows = [{k: _from_csv(v) for k, v in r.items()} for r in csv.DictReader(handle)]
    for r in rows:  # text columns that may look like numbers
        for key in ("training", "architecture", "hidden_after_prune", "max_M_by_layer", "x_opt"):
            if r.get(key) is not None:
                r[key] = str(r[key])
    return rows


def write_outputs(config: Config, rows: list[dict], env: dict, out_dir: Path, figures_dir: Path | None) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "training" if config.training_table else f"study_{config.name}"
    write_csv(rows_path(config, out_dir), rows, COLUMNS)
    partial_path(config, out_dir).unlink(missing_ok=True)
    summary = summaries(rows, config)
    if config.training_table:
        text, table = training_markdown(config, rows, env)
        (out_dir / "training.md").write_text(text)
        write_csv(out_dir / "training.csv", table, list(table[0]) if table else [])
    else:
        (out_dir / f"{stem}.md").write_text(markdown(config, rows, env, summary))
    (out_dir / f"{stem}_summary.json").write_text(json.dumps({"env": env, "summary": summary}, indent=1, default=str))
    if figures_dir is not None and rows:
        make_figures(rows, config, Path(figures_dir), f"study_{config.name}")


# -- command line ---------------------------------------------------------------------------------------------


def parse_archs(text: str, problems: list[str]) -> dict:
    archs = [tuple(int(v) for v in a.split("x")) for a in text.split(",")]
    return {p: archs for p in problems}


def main(argv=None) -> list[dict]:
    doc = benchmarks.study.__doc__
    parser = argparse.ArgumentParser(description=doc.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    parser.add_argument("--quick", action="store_true", help="the quick preset (< 10 min on 2 cores)")
    parser.add_argument("--preset", choices=["quick", "full", "training"], default=None)
    parser.add_argument("--problems", help="comma-separated subset of: " + ", ".join(PROBLEMS))
    parser.add_argument("--time-limit", type=float, help="seconds per HiGHS solve")
    parser.add_argument("--out", default=str(RESULTS), help="directory for the CSV / Markdown (default benchmarks/results)")
    parser.add_argument("--figures", default=None,
                        help="directory for the PNG figures (default docs/figures with the default --out, else --out)")
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--cache", default=None, help="cache directory of trained networks (default benchmarks/results/cache)")
    parser.add_argument("--name", help="name of the output files (study_<name>.*); default: the preset")
    parser.add_argument("--archs", help="hidden widths for every problem, e.g. 16x16,8x8x8")
    parser.add_argument("--trainings", help="comma-separated training specs, e.g. plain,clipped,group_l1=1e-3,stability")
    parser.add_argument("--tightenings", help="comma-separated subset of interval,symbolic,lp,milp")
    parser.add_argument("--scalings", help="off,on / off / on")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--n-train", type=int, help="training samples of the synthetic problems")
    parser.add_argument("--no-omlt", action="store_true")
    parser.add_argument("--bounds-time-limit", type=float,
                        help="wall-clock seconds for LP/MILP bounds (computed in a child process killed at the limit)")
    parser.add_argument("--report", action="store_true",
                        help="do not run anything: rewrite the Markdown, summary and figures from the existing CSV")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the rows of the previous run's CSV for networks already solved there "
                             "(same cached network and time limit); new networks are solved")
    args = parser.parse_args(argv)

    config = preset(args.preset or ("quick" if args.quick else "quick"))
    if args.problems:
        config.problems = [p.strip() for p in args.problems.split(",") if p.strip()]
        unknown = [p for p in config.problems if p not in PROBLEMS]
        if unknown:
            parser.error(f"unknown problem(s) {', '.join(unknown)}; choose from {', '.join(PROBLEMS)}")
        for p in config.problems:
            config.archs.setdefault(p, ARCHS_QUICK[p])
    if args.time_limit is not None:
        config.time_limit = args.time_limit
        config.time_limits = {}
    if args.archs:
        config.archs = parse_archs(args.archs, list(PROBLEMS))
    if args.trainings:
        config.trainings = [t.strip() for t in args.trainings.split(",") if t.strip()]
    if args.tightenings:
        config.tightenings = [t.strip() for t in args.tightenings.split(",") if t.strip()]
    if args.scalings:
        config.scalings = [s.strip() == "on" for s in args.scalings.split(",") if s.strip()]
    if args.epochs is not None:
        config.epochs = args.epochs
    if args.n_train is not None:
        config.n_train = {"peaks": args.n_train, "rosenbrock": args.n_train}
    if args.no_omlt:
        config.omlt = False
    if args.resume:
        config.resume = True
    if args.bounds_time_limit is not None:
        config.bounds_time_limit = args.bounds_time_limit
    if args.name:
        config.name = args.name
    for spec in config.trainings:
        Training.parse(spec)  # fail early on a typo
    out = Path(args.out)
    figures = None if args.no_figures else Path(args.figures) if args.figures else (
        FIGURES if out.resolve() == RESULTS.resolve() else out)
    if args.report:
        return report(config, out, figures)
    sys.stdout.reconfigure(line_buffering=True)
    return run(config, out, figures, args.cache)


def report(config: Config, out_dir: Path, figures_dir: Path | None) -> list[dict]:
    """Rewrite the outputs of a finished run from its CSV (e.g. after changing the report code)."""
    rows = read_rows(rows_path(config, out_dir))
    if not rows:
        raise SystemExit(f"no rows at {rows_path(config, out_dir)}")
    stem = "training" if config.training_table else f"study_{config.name}"
    saved = Path(out_dir) / f"{stem}_summary.json"
    env = json.loads(saved.read_text())["env"] if saved.is_file() else environment()
    write_outputs(config, rows, env, out_dir, figures_dir)
    return rows


if __name__ == "__main__":
    main()
