r"""VNN-LIB properties: a small SMT-LIB subset describing an input region and an unsafe output set.

A property file declares the network inputs ``X_0 .. X_{n-1}`` and outputs ``Y_0 .. Y_{m-1}`` as
``Real`` constants and asserts linear constraints over them. The property *holds* when no input in the
region maps to an output in the unsafe set; a point satisfying every assertion is a counterexample.

Supported (everything VNN-COMP's ACAS Xu, MNIST/CIFAR and similar linear properties use)::

    ; comment to the end of the line
    (declare-const X_0 Real)
    (assert (<= X_0 0.5))                          ; also >=, and < / > (read as <= / >=, see below)
    (assert (>= (+ Y_0 (* -2 Y_1) 1e-3) Y_2))      ; linear terms: + - * (constant factor), / (constant)
    (assert (or (and (<= X_0 1) (>= Y_0 Y_1)) (and ...)))   ; any nesting of and / or

* Numbers: integers, decimals, exponents, with optional sign (``-1.5e-3``); ``(- c)`` also negates.
* Terms: variables, numbers, ``(+ t ...)``, ``(- t)`` (negation) and ``(- t u ...)``, ``(* t ...)`` with
  at most one non-constant factor, ``(/ t c)`` with a non-zero constant ``c``.
* Atoms: ``(<= a b ...)``, ``(>= a b ...)`` (chains are conjunctions of neighbouring pairs), ``(= a b)``
  (both inequalities). **Strict** ``<`` and ``>`` are read as ``<=`` and ``>=``: over the reals the
  closure of the unsafe set differs from it only on its boundary, and a verifier working in floating
  point cannot tell the two apart (VNN-COMP treats them the same way).
* Formulas: ``and`` and ``or``, nested arbitrarily, plus ``true`` / ``false``; several ``assert``\ s are
  a conjunction. The whole property is normalised into disjunctive normal form.
* ``set-logic``, ``set-info``, ``set-option``, ``check-sat``, ``get-model`` and ``exit`` are ignored.

Every atom must constrain only inputs or only outputs; an atom mixing ``X`` and ``Y`` variables is
rejected with its position. (Conjunctions may mix input and output *atoms* freely.)

The result is a :class:`Property`: a list of input regions (each an :class:`~relumilp.domain.InputDomain`:
a box from the single-variable bounds plus rows ``A x <= b`` for multi-variable atoms) and a list of
output conjunctions ``C y <= d`` (:class:`OutputConstraint`); :attr:`Property.cases` pairs each input
region with the output conjunctions that apply to it (all of them when the property is a product
``(or of input regions) and (or of output sets)``, as in every ACAS Xu property). Every input variable
must be bounded above and below by single-variable atoms in every input region.

Properties that are legal but probably not what was meant are accepted with a note in
:attr:`Property.notes` (shown as warnings by ``relumilp verify``): an empty input region (contradictory
bounds or linear constraints) is dropped, and when every region is empty the property holds vacuously;
a property without output constraints makes every output unsafe, so any input is a counterexample.

Malformed input raises :class:`VNNLibError` (a :class:`~relumilp.errors.RelumilpError`) with
``file:line:column`` of the offending form.
"""

from __future__ import annotations

import itertools
import math
import re
from bisect import bisect_right
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..domain import InputDomain
from ..errors import InvalidDomainError, ModelFileError, RelumilpError

#: a property whose DNF would have more conjunctions than this is rejected (an exponential blow-up)
MAX_DISJUNCTS = 100_000

_IGNORED = ("set-logic", "set-info", "set-option", "check-sat", "get-model", "exit")
_COMPARISONS = ("<=", ">=", "<", ">", "=")
_TERM_OPERATORS = ("+", "-", "*", "/")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
_VARIABLE = re.compile(r"([XY])_(\d+)\Z")
_TOKEN = re.compile(r"\s+|;[^\n]*|\(|\)|[^\s();]+")


class VNNLibError(RelumilpError):
    """A VNN-LIB file that cannot be read: the message gives ``file:line:column`` and the problem."""


# -- tokens and s-expressions -----------------------------------------------------------------------


@dataclass(frozen=True)
class Atom:
    """A symbol or number, with its offset in the source text."""

    text: str
    offset: int


@dataclass(frozen=True)
class SExpr:
    """A parenthesised list, with the offset of its opening parenthesis."""

    items: tuple
    offset: int

    @property
    def head(self) -> str | None:
        return self.items[0].text if self.items and isinstance(self.items[0], Atom) else None


class _Source:
    """Source text plus offset -> ``line:column`` translation for error messages."""

    def __init__(self, text: str, name: str):
        self.text = text
        self.name = name
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def position(self, offset: int) -> tuple[int, int]:
        line = bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def error(self, node_or_offset, message: str) -> VNNLibError:
        offset = node_or_offset if isinstance(node_or_offset, int) else node_or_offset.offset
        line, column = self.position(offset)
        snippet = ""
        if not isinstance(node_or_offset, int):
            snippet = _render(node_or_offset, 81)
            snippet = f": {snippet if len(snippet) <= 80 else snippet[:77] + '...'}"
        return VNNLibError(f"{self.name}:{line}:{column}: {message}{snippet}")


def _render(node, limit: int | None = None) -> str:
    """``node`` as text on one line, cut after ``limit`` characters (iterative: nesting has no limit)."""
    parts: list[str] = []
    size = 0
    stack: list = [node]
    while stack and (limit is None or size < limit):
        item = stack.pop()
        if isinstance(item, str):  # a closing parenthesis or a separator
            text = item
        elif isinstance(item, Atom):
            text = item.text
        else:
            text = "("
            follow: list = [")"]
            for k, child in enumerate(reversed(item.items)):
                follow.append(child)
                if k < len(item.items) - 1:
                    follow.append(" ")
            stack.extend(follow)
        parts.append(text)
        size += len(text)
    return "".join(parts)


def parse_sexprs(text: str, name: str = "<string>") -> list[SExpr | Atom]:
    """The top-level s-expressions of ``text`` (comments dropped); raises on unbalanced parentheses."""
    source = _Source(text, name)
    return _parse_sexprs(source)


def _parse_sexprs(source: _Source) -> list:
    stack: list[tuple[int, list]] = []
    top: list = []
    for match in _TOKEN.finditer(source.text):
        token = match.group()
        if token[0].isspace() or token[0] == ";":
            continue
        if token == "(":
            stack.append((match.start(), []))
        elif token == ")":
            if not stack:
                raise source.error(match.start(), "unbalanced parentheses: ')' without a matching '('")
            offset, items = stack.pop()
            node = SExpr(tuple(items), offset)
            (stack[-1][1] if stack else top).append(node)
        else:
            (stack[-1][1] if stack else top).append(Atom(token, match.start()))
    if stack:
        raise source.error(stack[-1][0], "unbalanced parentheses: '(' is never closed")
    return top


# -- the parsed property ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class OutputConstraint:
    """A conjunction ``C @ y <= d`` over the network outputs (``C`` may have zero rows: every ``y``)."""

    C: np.ndarray
    d: np.ndarray

    def __post_init__(self):
        C = np.asarray(self.C, dtype=np.float64)
        d = np.asarray(self.d, dtype=np.float64).ravel()
        object.__setattr__(self, "C", C.reshape(d.size, -1) if C.size or d.size else C.reshape(0, C.shape[-1]))
        object.__setattr__(self, "d", d)

    @property
    def num_rows(self) -> int:
        return self.d.size

    def violation(self, y) -> np.ndarray:
        """``max_i (C_i y - d_i)`` per row of ``y`` (<= 0: ``y`` is in this unsafe set; -inf with no rows)."""
        y = np.atleast_2d(np.asarray(y, dtype=np.float64))
        if self.num_rows == 0:
            return np.full(y.shape[0], -np.inf)
        return np.max(y @ self.C.T - self.d, axis=1)

    def contains(self, y) -> np.ndarray:
        """Which rows of ``y`` satisfy ``C y <= d`` exactly (no tolerance)."""
        return self.violation(y) <= 0.0


@dataclass(frozen=True, eq=False)
class Property:
    """A VNN-LIB property: unsafe iff some ``x`` in an input region has ``net(x)`` in a paired output set.

    ``cases`` lists ``(input region index, output conjunction indices)``; by default every region is
    paired with every output conjunction (the product form of ACAS Xu and MNIST properties).
    An empty ``input_disjuncts`` means the input constraints are unsatisfiable (the property holds).
    """

    num_inputs: int
    num_outputs: int
    input_disjuncts: tuple[InputDomain, ...]
    output_disjuncts: tuple[OutputConstraint, ...]
    cases: tuple[tuple[int, tuple[int, ...]], ...] | None = None
    name: str = "property"
    #: notes from normalisation (e.g. empty input regions that were dropped)
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        object.__setattr__(self, "input_disjuncts", tuple(self.input_disjuncts))
        object.__setattr__(self, "output_disjuncts", tuple(self.output_disjuncts))
        if self.cases is None:
            everything = tuple(range(len(self.output_disjuncts)))
            object.__setattr__(self, "cases", tuple((i, everything) for i in range(len(self.input_disjuncts))))

    def regions(self) -> list[tuple[InputDomain, list[OutputConstraint]]]:
        """``[(input domain, [output conjunctions])]``: the property is violated iff some pair is reachable."""
        return [(self.input_disjuncts[i], [self.output_disjuncts[j] for j in outs]) for i, outs in self.cases]

    def is_counterexample(self, x, y, tol: float = 0.0) -> bool:
        """True when ``x`` is in an input region and ``y`` in one of that region's unsafe sets.

        ``tol`` loosens the input-region test only; the output test is exact.
        """
        x = np.asarray(x, dtype=np.float64).ravel()
        y = np.asarray(y, dtype=np.float64).ravel()
        for domain, outputs in self.regions():
            if domain.contains(x, tol=tol)[0] and any(out.contains(y)[0] for out in outputs):
                return True
        return False


# -- linear expressions -----------------------------------------------------------------------------


class _Linear:
    """``sum coef[var] * var + const`` with ``var`` = ``("X", i)`` or ``("Y", j)``."""

    __slots__ = ("coef", "const")

    def __init__(self, coef=None, const: float = 0.0):
        self.coef: dict[tuple[str, int], float] = coef or {}
        self.const = float(const)

    def scaled(self, factor: float) -> "_Linear":
        return _Linear({k: v * factor for k, v in self.coef.items()}, self.const * factor)

    def plus(self, other: "_Linear", sign: float = 1.0) -> "_Linear":
        coef = dict(self.coef)
        for k, v in other.coef.items():
            coef[k] = coef.get(k, 0.0) + sign * v
        return _Linear(coef, self.const + sign * other.const)

    @property
    def is_constant(self) -> bool:
        return not any(self.coef.values())


@dataclass(frozen=True)
class _Ineq:
    """``coef . v <= rhs`` over one kind of variable (``kind`` = "X", "Y" or "" for a constant atom)."""

    kind: str
    coef: tuple[tuple[int, float], ...]
    rhs: float
    offset: int


class _Parser:
    def __init__(self, source: _Source):
        self.source = source
        self.declared: dict[str, tuple[str, int]] = {}
        self.atoms: list[_Ineq] = []
        self.atom_ids: dict[tuple, int] = {}

    # formulas are DNF: a list of conjunctions, each a frozenset of atom ids ("false" = [], "true" = [{}])

    def formula(self, node) -> list[frozenset]:
        if isinstance(node, Atom):
            if node.text == "true":
                return [frozenset()]
            if node.text == "false":
                return []
            raise self.source.error(node, "expected a formula (and / or / <= / >= ...), got")
        head = node.head
        if head is None:
            raise self.source.error(node, "expected an operator at the start of a formula")
        args = node.items[1:]
        if head == "and":
            return self.conjoin([self.formula(arg) for arg in args], node)
        if head == "or":
            result: list[frozenset] = []
            for arg in args:
                result.extend(self.formula(arg))
            self.check_size(len(result), node)
            return _dedupe(result)
        if head in _COMPARISONS:
            return [self.comparison(node)]
        raise self.source.error(
            node.items[0], f"unknown operator {head!r} in a formula (supported: and, or, {', '.join(_COMPARISONS)})"
        )

    def conjoin(self, parts: list[list[frozenset]], node) -> list[frozenset]:
        total = math.prod(len(p) for p in parts)
        self.check_size(total, node)
        return _dedupe([frozenset().union(*combo) for combo in itertools.product(*parts)])

    def check_size(self, n: int, node) -> None:
        if n > MAX_DISJUNCTS:
            message = f"the property expands to {n} disjuncts in disjunctive normal form (more than {MAX_DISJUNCTS})"
            if node is None:
                raise VNNLibError(f"{self.source.name}: {message}")
            raise self.source.error(node, message)

    def comparison(self, node: SExpr) -> frozenset:
        head, args = node.head, node.items[1:]
        if len(args) < 2:
            raise self.source.error(node, f"{head!r} needs at least two arguments")
        if head == "=" and len(args) != 2:
            raise self.source.error(node, "'=' takes exactly two arguments")
        terms = [self.term(arg) for arg in args]
        ids = set()
        for a, b in zip(terms, terms[1:]):
            if head in ("<=", "<", "="):
                ids.add(self.atom(a.plus(b, -1.0), node))  # a - b <= 0
            if head in (">=", ">", "="):
                ids.add(self.atom(b.plus(a, -1.0), node))  # b - a <= 0
        return frozenset(ids)

    def atom(self, expr: _Linear, node: SExpr) -> int:
        """Register ``expr <= 0`` as an atom; returns its id."""
        coef = {k: v for k, v in expr.coef.items() if v != 0.0}
        kinds = {k for k, _ in coef}
        if len(kinds) > 1:
            names = sorted(f"{k}_{i}" for k, i in coef)
            raise self.source.error(
                node,
                f"a constraint mixing input and output variables ({', '.join(names[:4])}) is not supported; "
                "each atom must constrain only X or only Y variables",
            )
        kind = kinds.pop() if kinds else ""
        if not (math.isfinite(expr.const) and all(math.isfinite(v) for v in coef.values())):
            raise self.source.error(node, "a constant or coefficient of this constraint is infinite or NaN in "
                                          "float64 (it overflows); rescale it")
        items = tuple(sorted((i, v) for (_, i), v in coef.items()))
        key = (kind, items, 0.0 - expr.const)
        if key not in self.atom_ids:
            self.atom_ids[key] = len(self.atoms)
            self.atoms.append(_Ineq(kind, items, 0.0 - expr.const, node.offset))
        return self.atom_ids[key]

    def term(self, node) -> _Linear:
        if isinstance(node, Atom):
            text = node.text
            if _NUMBER.match(text):
                return _Linear(const=float(text))
            if text in self.declared:
                return _Linear({self.declared[text]: 1.0})
            if _VARIABLE.match(text):
                raise self.source.error(node, "undeclared variable (add a declare-const before its first use)")
            raise self.source.error(node, "expected a number or a declared variable, got")
        head = node.head
        args = node.items[1:]
        if head not in _TERM_OPERATORS:
            what = "an operator" if head is None else f"operator {head!r}"
            raise self.source.error(node, f"unknown {what} in a term (supported: {', '.join(_TERM_OPERATORS)})")
        if not args:
            raise self.source.error(node, f"{head!r} needs at least one argument")
        terms = [self.term(arg) for arg in args]
        if head == "+":
            result = _Linear()
            for t in terms:
                result = result.plus(t)
            return result
        if head == "-":
            if len(terms) == 1:
                return terms[0].scaled(-1.0)
            result = terms[0]
            for t in terms[1:]:
                result = result.plus(t, -1.0)
            return result
        if head == "*":
            variable = [t for t in terms if not t.is_constant]
            if len(variable) > 1:
                raise self.source.error(node, "non-linear term: a product of two variables")
            factor = math.prod(t.const for t in terms if t.is_constant)
            return variable[0].scaled(factor) if variable else _Linear(const=factor)
        # division by constants only
        if len(terms) != 2:
            raise self.source.error(node, "'/' takes exactly two arguments")
        if not terms[1].is_constant:
            raise self.source.error(node, "non-linear term: division by a variable")
        if terms[1].const == 0.0:
            raise self.source.error(node, "division by zero")
        return terms[0].scaled(1.0 / terms[1].const)

    def declare(self, node: SExpr) -> None:
        if len(node.items) != 3 or not all(isinstance(i, Atom) for i in node.items[1:]):
            raise self.source.error(node, "expected (declare-const NAME Real)")
        name, sort = node.items[1].text, node.items[2]
        match = _VARIABLE.match(name)
        if not match:
            raise self.source.error(node.items[1], "variables must be named X_<i> (inputs) or Y_<j> (outputs), got")
        if sort.text != "Real":
            raise self.source.error(sort, f"variable {name} must be declared Real, got sort")
        if name in self.declared:
            raise self.source.error(node, f"variable {name} is declared twice")
        self.declared[name] = (match.group(1), int(match.group(2)))


def _dedupe(conjunctions: list[frozenset]) -> list[frozenset]:
    return list(dict.fromkeys(conjunctions))


# -- public entry points -----------------------------------------------------------------------------


def read_vnnlib(path, num_inputs: int | None = None, num_outputs: int | None = None) -> Property:
    """Read a ``.vnnlib`` file (see the module docstring); sizes, when given, are checked against it."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ModelFileError(f"property file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"cannot read property file {path}: {exc}") from None
    return parse_vnnlib(text, name=str(path), num_inputs=num_inputs, num_outputs=num_outputs)


def parse_vnnlib(text: str, name: str = "<string>", num_inputs: int | None = None,
                 num_outputs: int | None = None) -> Property:
    """Parse VNN-LIB ``text`` into a :class:`Property`."""
    source = _Source(text, name)
    parser = _Parser(source)
    asserts: list[SExpr] = []
    for node in _parse_sexprs(source):
        if not isinstance(node, SExpr) or node.head is None:
            raise source.error(node, "expected a command such as (declare-const ...) or (assert ...), got")
        if node.head == "declare-const":
            parser.declare(node)
        elif node.head == "assert":
            if len(node.items) != 2:
                raise source.error(node, "assert takes exactly one formula")
            asserts.append(node)
        elif node.head in _IGNORED:
            continue
        else:
            raise source.error(node.items[0], f"unknown command {node.head!r} (supported: declare-const, assert)")
    n_in, n_out = _sizes(parser, source)
    for expected, got, what in ((num_inputs, n_in, "inputs"), (num_outputs, n_out, "outputs")):
        if expected is not None and expected != got:
            raise VNNLibError(f"{name}: the property declares {got} {what} but the network has {expected}")
    # Split the assertions by the variables they mention so the common product form
    # (input assertions) x (output assertions) never needs expanding.
    groups: dict[str, list] = {"X": [], "Y": [], "mixed": []}
    for node in asserts:
        try:
            dnf = parser.formula(node.items[1])
        except RecursionError:  # the reader is iterative; formulas and terms are read recursively
            raise source.error(node, "this assertion is nested too deeply to read; flatten its (and ...), "
                                     "(or ...) or (+ ...)") from None
        kinds = {parser.atoms[a].kind for conj in dnf for a in conj} - {""}
        groups["mixed" if len(kinds) > 1 else (kinds.pop() if kinds else "X")].append(dnf)
    if not asserts:
        raise VNNLibError(f"{name}: the property has no assertions")
    input_dnf = parser.conjoin(groups["X"], None) if groups["X"] else [frozenset()]
    output_dnf = parser.conjoin(groups["Y"], None) if groups["Y"] else [frozenset()]
    mixed_dnf = parser.conjoin(groups["mixed"], None) if groups["mixed"] else [frozenset()]
    prop = _build_property(parser, source, n_in, n_out, input_dnf, output_dnf, mixed_dnf)
    notes = list(prop.notes)
    if not groups["Y"] and not groups["mixed"] and prop.input_disjuncts:
        notes.append("the property has no output constraint, so every output is unsafe: any input in the input "
                     "region violates it")
    if not prop.input_disjuncts:
        notes.append("no input satisfies the input constraints, so the property holds vacuously")
    return replace(prop, notes=tuple(notes))


def _sizes(parser: _Parser, source: _Source) -> tuple[int, int]:
    sizes = {}
    for kind, what in (("X", "input"), ("Y", "output")):
        indices = sorted(i for k, i in parser.declared.values() if k == kind)
        if not indices:
            raise VNNLibError(f"{source.name}: no {what} variables declared (declare-const {kind}_0 Real ...)")
        missing = sorted(set(range(indices[-1] + 1)) - set(indices))
        if missing:
            raise VNNLibError(f"{source.name}: {what} variable {kind}_{missing[0]} is not declared "
                              f"(but {kind}_{indices[-1]} is)")
        sizes[kind] = len(indices)
    return sizes["X"], sizes["Y"]


def _build_property(parser, source, n_in, n_out, input_dnf, output_dnf, mixed_dnf) -> Property:
    atoms = parser.atoms
    # Each case: input atom set -> list of output atom sets.
    cases: dict[frozenset, list[frozenset]] = {}
    if len(mixed_dnf) > 1 or mixed_dnf[0]:
        parser.check_size(len(input_dnf) * len(output_dnf) * len(mixed_dnf), None)
    for m in mixed_dnf:
        m_in = frozenset(a for a in m if atoms[a].kind != "Y")
        m_out = frozenset(a for a in m if atoms[a].kind == "Y")
        for conj_in in input_dnf:
            key = conj_in | m_in
            outs = cases.setdefault(key, [])
            outs.extend(conj_out | m_out for conj_out in output_dnf)
    notes: list[str] = []
    domains: list[InputDomain] = []
    outputs: list[OutputConstraint] = []
    output_index: dict[frozenset, int] = {}
    pairs = []
    for conj_in, outs in cases.items():
        domain = _input_domain(atoms, conj_in, n_in, source, notes)
        if domain is None:
            continue
        indices = []
        for conj_out in dict.fromkeys(outs):
            constraint = _output_constraint(atoms, conj_out, n_out)
            if constraint is None:
                continue
            if conj_out not in output_index:
                output_index[conj_out] = len(outputs)
                outputs.append(constraint)
            indices.append(output_index[conj_out])
        if indices:
            domains.append(domain)
            pairs.append((len(domains) - 1, tuple(indices)))
        else:
            notes.append(f"input region {len(domains) + len(notes)} has only unsatisfiable output constraints")
    product = all(p[1] == tuple(range(len(outputs))) for p in pairs)
    return Property(n_in, n_out, tuple(domains), tuple(outputs), None if product else tuple(pairs),
                    name=Path(source.name).name, notes=tuple(notes))


def _constant_holds(atom: _Ineq) -> bool:
    return 0.0 <= atom.rhs


def _input_domain(atoms, conj: frozenset, n_in: int, source: _Source, notes: list) -> InputDomain | None:
    """The input region of one conjunction (None when it is empty); raises when it is unbounded."""
    lower = np.full(n_in, -np.inf)
    upper = np.full(n_in, np.inf)
    rows, rhs = [], []
    for a in sorted(conj):
        atom = atoms[a]
        if atom.kind == "":
            if not _constant_holds(atom):
                notes.append(f"the constraint at {_where(source, atom)} involves no variable and is false")
                return None
            continue
        if len(atom.coef) == 1:
            (i, c), = atom.coef
            bound = atom.rhs / c
            if c > 0:
                upper[i] = min(upper[i], bound)
            else:
                lower[i] = max(lower[i], bound)
        else:
            row = np.zeros(n_in)
            for i, c in atom.coef:
                row[i] = c
            rows.append(row)
            rhs.append(atom.rhs)
    unbounded = np.flatnonzero(~np.isfinite(lower) | ~np.isfinite(upper))
    if unbounded.size:
        i = int(unbounded[0])
        side = "lower" if not np.isfinite(lower[i]) else "upper"
        raise VNNLibError(
            f"{source.name}: input X_{i} has no {side} bound in an input region; relumilp needs a bounded "
            "input box: assert (<= X_i hi) and (>= X_i lo) for every input"
        )
    if np.any(lower > upper):
        i = int(np.flatnonzero(lower > upper)[0])
        notes.append(f"an input region is empty: X_{i} in [{lower[i]}, {upper[i]}]")
        return None
    try:
        domain = InputDomain(lower, upper, np.array(rows) if rows else None, np.array(rhs) if rows else None)
    except InvalidDomainError as exc:
        raise VNNLibError(f"{source.name}: invalid input region: {exc}") from None
    if rows and not _feasible(domain):
        notes.append("an input region is empty: its linear input constraints contradict each other or the bounds")
        return None
    return domain


def _feasible(domain: InputDomain) -> bool:
    """Whether the box meets ``A x <= b`` (one small LP; only regions with multi-variable atoms need it)."""
    from scipy.optimize import linprog

    result = linprog(np.zeros(domain.size), A_ub=domain.A, b_ub=domain.b, bounds=list(zip(domain.lower, domain.upper)),
                     method="highs")
    return result.status != 2  # 2: infeasible; anything else (solved, numerical trouble) keeps the region


def _output_constraint(atoms, conj: frozenset, n_out: int) -> OutputConstraint | None:
    """``C y <= d`` of one conjunction (None when a constant atom makes it unsatisfiable)."""
    rows, rhs = [], []
    for a in sorted(conj):
        atom = atoms[a]
        if atom.kind == "":
            if not _constant_holds(atom):
                return None
            continue
        row = np.zeros(n_out)
        for j, c in atom.coef:
            row[j] = c
        rows.append(row)
        rhs.append(atom.rhs)
    return OutputConstraint(np.array(rows).reshape(len(rows), n_out), np.array(rhs))


def _where(source: _Source, atom: _Ineq) -> str:
    line, column = source.position(atom.offset)
    return f"{line}:{column}"
