"""The VNN-LIB frontend: every construct, DNF normalisation, and clear errors on malformed input."""

from __future__ import annotations

import numpy as np
import pytest

from relumilp.errors import RelumilpError
from relumilp.frontends.vnnlib import MAX_DISJUNCTS, VNNLibError, parse_sexprs, parse_vnnlib, read_vnnlib


def declare(n_in: int, n_out: int) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(n_in)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    return "\n".join(lines) + "\n"


BOX2 = "(assert (>= X_0 -1))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= X_1 2))\n"


def test_box_and_single_output_constraint():
    prop = parse_vnnlib(declare(2, 2) + BOX2 + "(assert (>= Y_0 3.5))")
    assert (prop.num_inputs, prop.num_outputs) == (2, 2)
    (domain,) = prop.input_disjuncts
    np.testing.assert_array_equal(domain.lower, [-1, 0])
    np.testing.assert_array_equal(domain.upper, [1, 2])
    assert domain.A is None
    (out,) = prop.output_disjuncts
    np.testing.assert_array_equal(out.C, [[-1.0, 0.0]])  # Y_0 >= 3.5  <=>  -Y_0 <= -3.5
    np.testing.assert_array_equal(out.d, [-3.5])
    assert out.contains([3.5, 0])[0] and not out.contains([3.4999, 0])[0]


def test_comments_numbers_and_ignored_commands():
    text = """; a comment (with parentheses that do not count
    (set-logic QF_LRA)  ; trailing comment
    (declare-const X_0 Real) (declare-const Y_0 Real)
    (assert (<= X_0 1e-1))
    (assert (>= X_0 -2.5E+0))
    (assert (<= Y_0 (- 3)))
    (assert (<= Y_0 -.5))
    (assert (<= Y_0 +7))
    (assert (<= Y_0 10.))
    (check-sat) (get-model) (exit)
    """
    prop = parse_vnnlib(text)
    (domain,) = prop.input_disjuncts
    assert domain.lower[0] == -2.5 and domain.upper[0] == 0.1
    out = prop.output_disjuncts[0]
    np.testing.assert_array_equal(out.C.ravel(), [1, 1, 1, 1])
    assert sorted(out.d) == [-3.0, -0.5, 7.0, 10.0]


def test_linear_terms():
    text = declare(3, 3) + "".join(f"(assert (>= X_{i} 0)) (assert (<= X_{i} 1))" for i in range(3)) + """
    (assert (<= (+ X_0 (* 2 X_1) (- X_2)) 1.5))
    (assert (>= (- Y_0 Y_1 (* -3 Y_2)) (/ 1 4)))
    (assert (<= (* 0.5 2 Y_0) (+ 1 (- 2 1))))
    (assert (<= (/ Y_1 -2) 1))
    """
    prop = parse_vnnlib(text)
    (domain,) = prop.input_disjuncts
    np.testing.assert_array_equal(domain.A, [[1.0, 2.0, -1.0]])
    np.testing.assert_array_equal(domain.b, [1.5])
    out = prop.output_disjuncts[0]
    rows = {tuple(c) + (d,) for c, d in zip(out.C, out.d)}
    assert rows == {(-1.0, 1.0, -3.0, -0.25), (1.0, 0.0, 0.0, 2.0), (0.0, -0.5, 0.0, 1.0)}


def test_strict_and_equality_and_chains():
    text = declare(1, 2) + """
    (assert (< -1 X_0))  (assert (> 1 X_0))
    (assert (= Y_0 Y_1))
    (assert (<= 0 Y_0 5))
    """
    prop = parse_vnnlib(text)
    d = prop.input_disjuncts[0]
    assert d.lower[0] == -1 and d.upper[0] == 1  # strict read as non-strict
    out = prop.output_disjuncts[0]
    rows = {tuple(c) + (v,) for c, v in zip(out.C, out.d)}
    assert rows == {(1.0, -1.0, 0.0), (-1.0, 1.0, 0.0), (-1.0, 0.0, 0.0), (1.0, 0.0, 5.0)}


def test_output_disjunction_of_conjunctions():
    text = declare(2, 3) + BOX2 + """
    (assert (or
        (and (<= Y_1 Y_0) (<= Y_2 Y_0))
        (and (>= Y_2 1))
        (<= Y_1 -4)))
    """
    prop = parse_vnnlib(text)
    assert len(prop.input_disjuncts) == 1
    assert [o.num_rows for o in prop.output_disjuncts] == [2, 1, 1]
    ((region, outs),) = prop.regions()
    assert len(outs) == 3
    assert prop.is_counterexample([0, 1], [5, 0, 0])
    assert prop.is_counterexample([0, 1], [0, 0, 1])
    assert not prop.is_counterexample([0, 1], [0, 1, 0])
    assert not prop.is_counterexample([3, 1], [5, 0, 0])  # input outside the box


def test_input_disjunction_gives_one_domain_per_region():
    text = declare(2, 1) + """
    (assert (or (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1))
                (and (>= X_0 2) (<= X_0 3) (>= X_1 -1) (<= X_1 0))))
    (assert (>= Y_0 0))
    """
    prop = parse_vnnlib(text)
    assert len(prop.input_disjuncts) == 2
    assert [tuple(d.lower) for d in prop.input_disjuncts] == [(0, 0), (2, -1)]
    assert all(outs == (0,) for _, outs in prop.cases)


def test_nested_and_or_is_normalised_to_dnf():
    text = declare(1, 2) + "(assert (and (>= X_0 0) (<= X_0 1)))" + """
    (assert (and (or (>= Y_0 1) (>= Y_1 1)) (or (<= Y_0 5) (and (<= Y_1 5) (or (<= Y_0 9))))))
    """
    prop = parse_vnnlib(text)
    # (a or b) and (c or (d and e))  ->  ac, ade, bc, bde
    assert sorted(o.num_rows for o in prop.output_disjuncts) == [2, 2, 3, 3]


def test_mixed_assertions_pair_regions_with_their_own_outputs():
    text = declare(1, 1) + """
    (assert (or (and (>= X_0 0) (<= X_0 1) (>= Y_0 10))
                (and (>= X_0 1) (<= X_0 2) (<= Y_0 -10))))
    """
    prop = parse_vnnlib(text)
    assert len(prop.input_disjuncts) == 2
    regions = prop.regions()
    assert [(tuple(d.lower), [tuple(o.d) for o in outs]) for d, outs in regions] == [
        ((0.0,), [(-10.0,)]), ((1.0,), [(-10.0,)])]
    assert regions[0][1][0].C[0, 0] == -1.0 and regions[1][1][0].C[0, 0] == 1.0
    assert prop.is_counterexample([0.5], [11]) and not prop.is_counterexample([1.5], [11])


def test_true_false_and_constant_atoms():
    text = declare(1, 1) + """
    (assert (and true (>= X_0 0) (<= X_0 1) (<= 1 2)))
    (assert (or false (>= Y_0 1) (and (<= 3 2) (>= Y_0 -100))))
    """
    prop = parse_vnnlib(text)
    assert len(prop.output_disjuncts) == 1 and prop.output_disjuncts[0].d[0] == -1.0


def test_a_false_constant_constraint_makes_the_property_vacuous_without_contradicting_notes():
    prop = parse_vnnlib(declare(2, 1) + BOX2 + "(assert (>= (* 0 Y_0) 1))")
    assert not prop.input_disjuncts
    assert any("involves no variable and is false" in note for note in prop.notes)
    assert not any("every output is unsafe" in note for note in prop.notes)


def test_empty_input_region_is_dropped_with_a_note():
    text = declare(1, 1) + """
    (assert (or (and (>= X_0 0) (<= X_0 1)) (and (>= X_0 5) (<= X_0 4))))
    (assert (>= Y_0 1))
    """
    prop = parse_vnnlib(text)
    assert len(prop.input_disjuncts) == 1
    assert any("empty" in note for note in prop.notes)


def test_no_output_constraint_means_every_output_is_unsafe():
    prop = parse_vnnlib(declare(2, 1) + BOX2)
    (out,) = prop.output_disjuncts
    assert out.num_rows == 0 and out.contains([123.0])[0]


def test_parse_sexprs_tracks_offsets():
    nodes = parse_sexprs("(a (b c))\n(d)")
    assert [n.offset for n in nodes] == [0, 10]
    assert nodes[0].items[1].items[1].text == "c"


def _error(text) -> str:
    with pytest.raises(VNNLibError) as info:
        parse_vnnlib(text, name="p.vnnlib")
    assert isinstance(info.value, RelumilpError)
    return str(info.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("(declare-const X_0 Real)\n(assert (<= X_0 1)", "p.vnnlib:2:1: unbalanced parentheses: '(' is never closed"),
        ("(declare-const X_0 Real))", "p.vnnlib:1:25: unbalanced parentheses: ')' without a matching '('"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (foo X_0 1))",
         "p.vnnlib:3:10: unknown operator 'foo' in a formula"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= (max X_0 Y_0) 1))",
         "p.vnnlib:3:13: unknown operator 'max' in a term"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_1 1))",
         "p.vnnlib:3:13: undeclared variable (add a declare-const before its first use): X_1"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= (* X_0 X_0) 1))",
         "p.vnnlib:3:13: non-linear term: a product of two variables: (* X_0 X_0)"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= (/ 1 X_0) 1))",
         "p.vnnlib:3:13: non-linear term: division by a variable"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 Y_0))",
         "p.vnnlib:3:9: a constraint mixing input and output variables (X_0, Y_0)"),
        ("(declare-const X_0 Int)", "p.vnnlib:1:20: variable X_0 must be declared Real, got sort: Int"),
        ("(declare-const Z_0 Real)", "p.vnnlib:1:16: variables must be named X_<i> (inputs) or Y_<j> (outputs)"),
        ("(declare-const X_0 Real)(declare-const X_0 Real)", "p.vnnlib:1:25: variable X_0 is declared twice"),
        ("(declare-const X_0 Real)(declare-const X_2 Real)(declare-const Y_0 Real)(assert (<= X_0 1))",
         "input variable X_1 is not declared"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1))\n(assert (>= Y_0 0))",
         "input X_0 has no lower bound"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1) (>= X_0 0))",
         "p.vnnlib:3:1: assert takes exactly one formula"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(push 1)", "p.vnnlib:3:2: unknown command 'push'"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1 ))\nX_0",
         "p.vnnlib:4:1: expected a command"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0))", "'<=' needs at least two arguments"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= (/ X_0 0) 1))", "division by zero"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1e))",
         "p.vnnlib:3:17: expected a number or a declared variable, got: 1e"),
        ("(declare-const X_0 Real)", "no output variables declared"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= Y_0 1e999))",
         "p.vnnlib:3:9: a constant or coefficient of this constraint is infinite or NaN"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= (/ Y_0 1e-320) 1))", "infinite or NaN"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert " + "(and " * 3000 + "(>= Y_0 1)" + ")" * 3001,
         "p.vnnlib:3:1: this assertion is nested too deeply to read"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= " + "(+ 1 " * 3000 + "Y_0" + ")" * 3000 + " 1))",
         "nested too deeply"),
    ],
)
def test_malformed_input_gives_a_located_error(text, expected):
    assert expected in _error(text)


def test_dnf_blow_up_is_rejected():
    ors = " ".join(f"(or (>= Y_0 {i}) (>= Y_1 {i}))" for i in range(20))  # 2^20 conjunctions
    message = _error(declare(1, 2) + "(assert (>= X_0 0)) (assert (<= X_0 1))" + f"(assert (and {ors}))")
    assert f"more than {MAX_DISJUNCTS}" in message


def test_size_mismatch_with_the_network():
    with pytest.raises(VNNLibError, match="declares 2 inputs but the network has 3"):
        parse_vnnlib(declare(2, 1) + BOX2, num_inputs=3)


def test_missing_file(tmp_path):
    with pytest.raises(RelumilpError, match="property file not found"):
        read_vnnlib(tmp_path / "nope.vnnlib")


def test_acasxu_properties_parse(acasxu_dir):
    sizes = {}
    for k in range(1, 11):
        prop = read_vnnlib(acasxu_dir / f"prop_{k}.vnnlib", 5, 5)
        sizes[k] = (len(prop.input_disjuncts), [o.num_rows for o in prop.output_disjuncts])
        for domain in prop.input_disjuncts:
            assert np.all(domain.lower <= domain.upper)
    assert sizes[1] == (1, [1])
    assert sizes[2] == (1, [4]) and sizes[3] == (1, [4]) and sizes[4] == (1, [4])
    assert sizes[6] == (2, [1, 1, 1, 1])
    assert sizes[7] == (1, [3, 3]) and sizes[8] == (1, [2, 2, 2])
    prop1 = read_vnnlib(acasxu_dir / "prop_1.vnnlib")
    assert prop1.output_disjuncts[0].d[0] == pytest.approx(-3.991125645861615)
