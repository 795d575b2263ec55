"""Fuzzing relumilp's certificates: random (often badly scaled) tiny networks, and checks of every answer.

A :class:`Case` is a small sequential network, an input domain and a list of calls to relumilp's public API
(``optimize``, ``verify``, ``compute_bounds``). :func:`check_case` runs the calls and compares each answer
with *reachable points*: uniform samples, box corners, and the optimisers of one LP per activation pattern
(:func:`oracles.enumerate_patterns`, bare HiGHS LPs, no relumilp formulation or bound code), pulled into the
domain. Every reachable value is the float64 forward pass at a point of the domain, so a certificate is
proved wrong by such a value beyond the claimed bound; the pattern LPs need not be trusted (on badly scaled
networks they are not exact), they only supply good candidate points.

Honest answers (``unknown``, ``time_limit``, a clean :class:`relumilp.RelumilpError`) are counted, not failed.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from oracles import enumerate_patterns, linprog
from relumilp.bounds import METHODS, compute_bounds
from relumilp.domain import InputDomain
from relumilp.errors import RelumilpError
from relumilp.frontends.vnnlib import parse_vnnlib
from relumilp.ir import Network
from relumilp.optimization import optimize
from relumilp.verify import verify

TIME_LIMIT = 10.0
#: families of generated networks; all but "plain" are badly scaled
FAMILIES = ("plain", "plain", "plain", "plain", "wide", "wide", "wide", "tiny_over_huge", "huge_then_tiny", "huge_box")
#: statuses and answers that are honest (no claim to check)
HONEST = ("unknown", "time_limit", "interrupted", "iteration_limit", "refused")


@dataclass
class Case:
    """A network (``layers``, ``activations``), a domain and the API ``calls`` to check on it."""

    name: str
    layers: list
    activations: list
    lower: np.ndarray
    upper: np.ndarray
    A: np.ndarray | None = None
    b: np.ndarray | None = None
    calls: list = field(default_factory=list)
    samples: int = 10_000
    family: str = "plain"
    max_patterns: int = 1500

    @property
    def badly_scaled(self) -> bool:
        return self.family != "plain"

    def network(self) -> Network:
        return Network.sequential(self.layers, self.activations)

    def domain(self) -> InputDomain:
        return InputDomain(self.lower, self.upper, self.A, self.b)


@dataclass
class Outcome:
    """Per call: ``(category, answer)`` counted in :attr:`counts`; ``failures`` lists the wrong certificates."""

    case: str
    family: str
    records: list = field(default_factory=list)
    failures: list = field(default_factory=list)

    def add(self, call: dict, answer: str, problem: str | None = None):
        category = describe(call)
        self.records.append((self.family, call["kind"], answer, problem is not None))
        if problem is not None:
            self.failures.append(f"{self.case} [{self.family}] {category}: {problem}")


def describe(call: dict) -> str:
    options = ",".join(f"{k}={v}" for k, v in sorted(call.items()) if k not in ("kind", "output"))
    return f"{call['kind']}({options})"


# -- generators ---------------------------------------------------------------------------------------


def _activation(rng):
    kind = rng.choice(["relu", "leaky_relu", "clipped_relu"], p=[0.5, 0.25, 0.25])
    if kind == "leaky_relu":
        return {"kind": "leaky_relu", "alpha": float(rng.uniform(-0.99, 0.99))}
    if kind == "clipped_relu":
        return {"kind": "clipped_relu", "cap": float(10 ** rng.uniform(-2, 2))}
    return "relu"


def _layers(rng, sizes, scales, in_magnitude):
    """Gaussian layers with per-layer weight ``scales``; biases on the scale of each layer's pre-activations
    (so that many neurons are unstable)."""
    layers, magnitude = [], in_magnitude
    for (n_in, n_out), s in zip(zip(sizes[:-1], sizes[1:]), scales):
        W = rng.normal(size=(n_out, n_in)) * s
        magnitude = s * magnitude * np.sqrt(n_in)
        layers.append((W, rng.normal(size=n_out) * 0.5 * magnitude))
    return layers


def make_case(seed: int, samples: int = 10_000, calls_per_case: int = 2) -> Case:
    """A random case, reproducible from ``seed``; its family cycles with ``seed % 10`` (see FAMILIES)."""
    rng = np.random.default_rng(seed)
    family = FAMILIES[seed % len(FAMILIES)]
    n_in = int(rng.integers(1, 4))
    hidden = [int(rng.integers(1, 7)) for _ in range(int(rng.integers(1, 3)))]
    n_out = int(rng.integers(1, 3))
    sizes = [n_in, *hidden, n_out]
    n_layers = len(sizes) - 1
    centre, radius = rng.normal(size=n_in), np.full(n_in, 1.0)
    if family == "plain":
        scales = 10 ** rng.uniform(-1, 1, n_layers)
        radius = 10 ** rng.uniform(-1, 1, n_in)
    elif family == "wide":  # per-layer log-uniform scale factors over 1e-9 .. 1e6
        scales = 10 ** rng.uniform(-9, 6, n_layers)
        radius = 10 ** rng.uniform(-3, 3, n_in)
    elif family == "tiny_over_huge":  # (a) weights ~5e-10 over inputs of +-1e9
        scales = np.ones(n_layers)
        scales[0] = 5e-10
        centre, radius = np.zeros(n_in), np.full(n_in, 1e9)
    elif family == "huge_then_tiny":  # (b) one layer ~5e6 followed by one ~3e-6
        scales = np.ones(n_layers)
        k = int(rng.integers(0, n_layers - 1)) if n_layers > 1 else 0
        scales[k] = 5e6
        if n_layers > 1:
            scales[k + 1] = 3e-6
        centre = np.zeros(n_in)
    else:  # (c) boxes of +-1e9 or +-1e12 on well-scaled nets
        scales = 10 ** rng.uniform(-0.5, 0.5, n_layers)
        centre, radius = np.zeros(n_in), np.full(n_in, float(rng.choice([1e9, 1e12])))
    centre = centre * radius
    layers = _layers(rng, sizes, scales, float(np.max(np.abs(centre) + radius)))
    activations = [_activation(rng) for _ in hidden]
    lower, upper = centre - radius, centre + radius
    if rng.random() < 0.15:  # degenerate box: some or all dimensions fixed
        fixed = rng.random(n_in) < 0.5 if rng.random() < 0.6 else np.ones(n_in, bool)
        point = rng.uniform(lower, upper)
        lower, upper = np.where(fixed, point, lower), np.where(fixed, point, upper)
    A = b = None
    if rng.random() < 0.25:  # a few rows a x <= b that keep the box centre strictly feasible
        A = rng.normal(size=(int(rng.integers(1, 4)), n_in))
        mid, half = (lower + upper) / 2, (upper - lower) / 2
        b = A @ mid + np.abs(A) @ half * rng.uniform(0.05, 0.8, A.shape[0]) + 1e-12 * (1 + np.abs(A @ mid))
    calls = []
    for k in range(calls_per_case):
        # alternate the big-M MILP and the default (input-box branch and bound on box domains), without
        # drawing from rng, so that a seed still makes the same network and domain
        calls.append({"kind": "optimize", "sense": str(rng.choice(["max", "min"])), "output": int(rng.integers(n_out)),
                      "tighten": str(rng.choice(METHODS)), "scale": [False, "unit"][int(rng.integers(2))],
                      "method": ("milp", "auto")[k % 2]})
    calls.append({"kind": "verify", "sense": str(rng.choice(["max", "min"])), "output": int(rng.integers(n_out)),
                  "margin": int(rng.choice([-1, 0, 1])), "tighten": [None, *METHODS][int(rng.integers(len(METHODS) + 1))],
                  "input_split": [None, False][int(rng.integers(2))], "attack": [0, 1000][int(rng.random() < 0.3)]})
    calls.append({"kind": "bounds", "method": str(rng.choice(METHODS))})
    shape = "-".join(map(str, sizes))
    return Case(f"seed={seed} {shape}", layers, activations, lower, upper, A, b, calls, samples, family)


# -- reachable points ---------------------------------------------------------------------------------


def into_domain(domain: InputDomain, X: np.ndarray) -> np.ndarray:
    """The rows of ``X`` clipped into the box and, for rows ``A x <= b``, pulled towards the box centre
    (which the generated rows keep feasible); only rows that then lie in the domain exactly are kept."""
    X = np.clip(np.atleast_2d(X), domain.lower, domain.upper)
    if domain.A is not None:
        c = (domain.lower + domain.upper) / 2
        step = (X - c) @ domain.A.T  # how far each row moves along each constraint
        room = domain.b - domain.A @ c
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(step > room, room / step, 1.0).min(axis=1, initial=1.0)
        X = c + (X - c) * np.clip(t, 0.0, 1.0)[:, None] * (1 - 1e-12)
        X = np.clip(X, domain.lower, domain.upper)
    return X[domain.contains(X, tol=0.0)]


def corners(domain: InputDomain) -> np.ndarray:
    n = domain.size
    bits = np.array(np.meshgrid(*[[0.0, 1.0]] * n, indexing="ij")).reshape(n, -1).T
    return domain.lower + bits * (domain.upper - domain.lower)


def pattern_points(net: Network, domain: InputDomain, max_patterns: int, budget: float = 20.0) -> np.ndarray:
    """The LP optimisers of every output, up and down, on every feasible activation pattern (up to
    ``max_patterns`` patterns or ``budget`` seconds: fewer points only weaken the search, never its claims)."""
    points, start = [], time.perf_counter()
    bounds = list(zip(domain.lower, domain.upper))
    for count, (G, h, M, m) in enumerate(enumerate_patterns(net, domain.lower, domain.upper, domain.A, domain.b)):
        if count >= max_patterns or time.perf_counter() - start > budget:
            break
        for row in M:
            for sign in (1.0, -1.0):
                res = linprog(sign * row, A_ub=np.array(G) if G else None, b_ub=np.array(h) if G else None,
                              bounds=bounds)
                if res.status == 0:
                    points.append(res.x)
    return np.array(points).reshape(-1, domain.size)


def reachable_points(case: Case, net: Network, domain: InputDomain, rng) -> np.ndarray:
    centre = (domain.lower + domain.upper) / 2
    X = np.vstack([centre, corners(domain), domain.sample(case.samples, rng),
                   pattern_points(net, domain, case.max_patterns)])
    return into_domain(domain, X)


# -- checks -------------------------------------------------------------------------------------------


def _objective_sign(call) -> float:
    return 1.0 if call["sense"] == "max" else -1.0


def _best(net, X, output, s):
    """``(s * value, x)`` of the best reachable point for ``s * y[output]``, by the single-point forward pass
    (batched products may round differently)."""
    values = s * net.forward(X)[:, output]
    top = np.argsort(-values)[:16]
    exact = [s * float(net.forward(X[i])[output]) for i in top]
    i = int(np.argmax(exact))
    return exact[i], X[top[i]]


def _inside(domain: InputDomain, x) -> bool:
    """``x`` in the domain up to 1e-9 relative to the size of the numbers involved (solver tolerance)."""
    x = np.asarray(x, dtype=np.float64)
    scale = 1.0 + np.maximum(np.abs(domain.lower), np.abs(domain.upper))
    if np.any(x < domain.lower - 1e-9 * scale) or np.any(x > domain.upper + 1e-9 * scale):
        return False
    if domain.A is not None:
        slack = 1e-9 * (1.0 + np.abs(domain.b) + np.abs(domain.A) @ np.abs(x))
        return bool(np.all(domain.A @ x <= domain.b + slack))
    return True


def _refused(call, exc, X, outcome):
    """A clean refusal is honest, unless it claims an empty domain while ``X`` holds points of it."""
    if "empty" in str(exc) and len(X):
        return outcome.add(call, "empty", f"{type(exc).__name__}: {exc}; but x={_vec(X[0])} is in the domain")
    outcome.add(call, "refused")


def check_optimize(case, net, domain, X, call, outcome):
    s, j = _objective_sign(call), call["output"]
    options = {"workers": 1} if call["tighten"] in ("lp", "milp") else {}
    sense = {"maximize": j} if s > 0 else {"minimize": j}
    try:
        r = optimize(net, domain, **sense, tighten=call["tighten"], scale=call["scale"], time_limit=TIME_LIMIT,
                     method=call.get("method", "auto"), **options)
    except RelumilpError as exc:
        return _refused(call, exc, X, outcome)
    if r.status in ("infeasible", "unbounded", "infeasible_or_unbounded"):
        return outcome.add(call, r.status, f"{r.status} on a non-empty bounded domain")
    if r.status != "optimal":
        return outcome.add(call, r.status)
    best, x_best = _best(net, X, j, s)
    if r.x is None or not _inside(domain, r.x):
        return outcome.add(call, "optimal", f"x={r.x} is not in the domain")
    at_x = s * float(net.forward(r.x)[j])
    if abs(s * r.objective - at_x) > 1e-6 * max(1.0, abs(at_x)):
        return outcome.add(call, "optimal", f"objective {r.objective!r} != forward pass {s * at_x!r} at x={_vec(r.x)}")
    if at_x > best:
        best, x_best = at_x, r.x
    if s * r.bound < best - 1e-9 * (1 + abs(best)):
        return outcome.add(call, "optimal", f"bound {r.bound!r} but forward({_vec(x_best)}) = {s * best!r}")
    if best > s * r.objective + 1e-6 * max(1.0, abs(best)):
        return outcome.add(call, "optimal", f"objective {r.objective!r} but forward({_vec(x_best)}) = {s * best!r}")
    outcome.add(call, "optimal")


def _vec(x) -> str:
    return repr([float(v) for v in np.ravel(x)])


def _number(v) -> str:
    return np.format_float_positional(float(v), unique=True, trim="0")  # VNN-LIB has no exponent syntax


def vnnlib_text(domain: InputDomain, n_out: int, output: int, sense: str, threshold: float) -> str:
    """A VNN-LIB property: the domain, and the unsafe set ``Y_output >= threshold`` (max) / ``<=`` (min)."""
    lines = []
    for i, (lo, hi) in enumerate(zip(domain.lower, domain.upper)):
        lines += [f"(declare-const X_{i} Real)", f"(assert (>= X_{i} {_number(lo)}))", f"(assert (<= X_{i} {_number(hi)}))"]
    lines += [f"(declare-const Y_{k} Real)" for k in range(n_out)]
    for row, rhs in zip(*(() if domain.A is None else (domain.A, domain.b))):
        terms = " ".join(f"(* {_number(a)} X_{i})" for i, a in enumerate(row))
        lines.append(f"(assert (<= (+ {terms}) {_number(rhs)}))")
    lines.append(f"(assert ({'>=' if sense == 'max' else '<='} Y_{output} {_number(threshold)}))")
    return "\n".join(lines) + "\n"


def check_verify(case, net, domain, X, call, outcome):
    s, j = _objective_sign(call), call["output"]
    best, _ = _best(net, X, j, s)
    threshold = s * (best + call["margin"] * 1e-9 * max(1.0, abs(best)))
    prop = parse_vnnlib(vnnlib_text(domain, net.output_size, j, call["sense"], threshold),
                        num_inputs=net.input_size, num_outputs=net.output_size)
    region = prop.input_disjuncts[0]  # the parsed domain is the one verify sees
    X = X[region.contains(X, tol=0.0)]
    try:
        r = verify(net, prop, time_limit=TIME_LIMIT, tighten=call["tighten"], input_split=call["input_split"],
                   attack_samples=call["attack"])
    except RelumilpError as exc:
        return _refused(call, exc, X, outcome)
    if r.result == "violated":
        x = np.asarray(r.counterexample["x"], dtype=np.float64)
        if not prop.is_counterexample(x, net.forward(x)):
            return outcome.add(call, "violated", f"counterexample x={_vec(x)} gives y={_vec(net.forward(x))}, "
                                                 f"not Y_{j} {'>=' if s > 0 else '<='} {threshold!r}")
        # above the best reachable value: a valid counterexample means the search fell short, not relumilp
        return outcome.add(call, "violated" if call["margin"] <= 0 else "violated(beat oracle)")
    if r.result == "holds":
        values = s * net.forward(X)[:, j]
        for i in np.argsort(-values)[:64]:
            if prop.is_counterexample(X[i], net.forward(X[i])):
                return outcome.add(call, "holds", f"holds, but x={_vec(X[i])} gives Y_{j}={net.forward(X[i])[j]!r} "
                                                  f"{'>=' if s > 0 else '<='} {threshold!r}")
    outcome.add(call, r.result)


def check_bounds(case, net, domain, X, call, outcome):
    options = {"workers": 1, "milp_time_limit": 2.0} if call["method"] in ("lp", "milp") else {}
    try:
        bounds = compute_bounds(net, domain, call["method"], **options)
    except RelumilpError as exc:
        return _refused(call, exc, X, outcome)
    for name, values in net.forward_all(X).items():
        if name not in bounds.lower:
            continue
        lo, hi = bounds.lower[name], bounds.upper[name]
        bad = ~((lo <= values) & (values <= hi))  # exact: no tolerance, NaN bounds fail too
        if bad.any():
            row, unit = map(int, np.argwhere(bad)[0])
            return outcome.add(call, "bounds", f"node {name}[{unit}] = {values[row, unit]!r} at x={_vec(X[row])} "
                                               f"outside [{lo[unit]!r}, {hi[unit]!r}]")
    outcome.add(call, "bounds")


CHECKS = {"optimize": check_optimize, "verify": check_verify, "bounds": check_bounds}


def check_case(case: Case) -> Outcome:
    """Run every call of ``case`` and check each answer against the case's reachable points."""
    net, domain = case.network(), case.domain()
    outcome = Outcome(case.name, case.family)
    X = reachable_points(case, net, domain, np.random.default_rng(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # forward-pass discrepancy warnings: the checks below judge the answer
        for call in case.calls:
            try:
                CHECKS[call["kind"]](case, net, domain, X, call, outcome)
            except Exception as exc:  # anything but a clean RelumilpError is a crash, not an honest answer
                outcome.add(call, "crash", f"{type(exc).__name__}: {exc}")
    return outcome


def summary(outcomes: list[Outcome]) -> str:
    """A table of answers per call kind and family, and the number of failures."""
    counts = Counter()
    for o in outcomes:
        for family, kind, answer, wrong in o.records:
            scaled = "plain" if family == "plain" else "badly-scaled"
            counts[(kind, scaled, answer + (" WRONG" if wrong else ""))] += 1
    lines = [f"{'call':10} {'nets':13} {'answer':28} count"]
    lines += [f"{k:10} {f:13} {a:28} {n}" for (k, f, a), n in sorted(counts.items())]
    failures = sum(len(o.failures) for o in outcomes)
    lines.append(f"{len(outcomes)} cases, {sum(c for c in counts.values())} calls, {failures} wrong certificates")
    return "\n".join(lines)
