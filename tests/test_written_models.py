"""MPS / LP files and highspy models handed out as they are (not equilibrated): HiGHS would drop tiny
coefficients on reading (warned), and the names map describes the names the file really has."""

import highspy
import json
import numpy as np
import pytest
import relumilp


# -- Writing a model whose coefficients HiGHS would drop on reading must not be silent.


def test_write_warns_about_coefficients_highs_drops(tmp_path):
    W1 = np.array([[5e-10, -3e-10], [-4e-10, 6e-10], [2e-10, 2e-10]])
    net = relumilp.Network.sequential([(W1, np.array([0.1, -0.2, -0.3])), (np.array([[1.0, -2.0, 1.5]]), np.array([0.05]))],
                                      "relu")
    compiled = relumilp.compile_network(net, (-1e9 * np.ones(2), 1e9 * np.ones(2)))
    with pytest.warns(UserWarning, match="HiGHS drops"):
        compiled.write(tmp_path / "small.mps", np.ones(1), "max")


def test_write_is_quiet_for_ordinary_models(tmp_path, recwarn):
    compiled = relumilp.compile_network(relumilp.examples.peaks(), ([-3, -3], [3, 3]))
    compiled.write(tmp_path / "peaks.mps", np.ones(1), "max")
    assert not [w for w in recwarn if "HiGHS drops" in str(w.message)]


def test_to_highs_warns_too():
    W1 = np.array([[5e-10, -3e-10], [-4e-10, 6e-10], [2e-10, 2e-10]])
    net = relumilp.Network.sequential([(W1, np.array([0.1, -0.2, -0.3])), (np.array([[1.0, -2.0, 1.5]]), np.array([0.05]))],
                                      "relu")
    compiled = relumilp.compile_network(net, (-1e9 * np.ones(2), 1e9 * np.ones(2)))
    with pytest.warns(UserWarning, match="HiGHS drops"):
        compiled.to_highs(np.ones(1), "max")


# -- The names map written beside an MPS or LP file names the columns and rows the file really has.


@pytest.mark.parametrize("suffix", [".mps", ".lp"])
def test_names_map_matches_the_file(tmp_path, suffix):
    compiled = relumilp.compile_network(relumilp.examples.peaks(), ([-3, -3], [3, 3]))
    model, names = tmp_path / f"model{suffix}", tmp_path / "names.json"
    compiled.write(model, np.ones(1), "max", names)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.readModel(str(model))
    mapping = json.loads(names.read_text())
    assert set(h.getLp().col_names_) == set(mapping["columns"])
    assert set(h.getLp().row_names_) == set(mapping["rows"])
    h.run()
    values = dict(zip(h.getLp().col_names_, h.getSolution().col_value))
    x = np.array([values[mapping["columns"][i]] for i in mapping["inputs"]])
    y = np.array([values[mapping["columns"][j]] for j in mapping["outputs"]])
    assert relumilp.examples.peaks().forward(x) == pytest.approx(y, abs=1e-5)


def test_entries_of_exactly_the_drop_threshold_are_relaxed_not_lost():
    """HiGHS drops |a| <= 1e-9 (not only below): twenty entries of -1e-9 in one row, max v20 subject to
    v20 <= 1e-9 sum v_k, has optimum 2e-8; the bound must not cut it off (it was 1e-8)."""
    import scipy.sparse as sp

    from relumilp.backends.highs import solve_milp
    from relumilp.formulation.milp import MILP

    n = 20
    milp = MILP(np.zeros(n + 1), np.ones(n + 1), np.zeros(n + 1, bool), sp.csr_array(np.r_[np.full(n, -1e-9), 1.0][None, :]),
                np.array([-np.inf]), np.zeros(1), {}, {}, {}, "", "", objective=np.r_[np.zeros(n), 1.0], sense="max")
    result = solve_milp(milp)
    assert result.bound is not None and result.bound >= n * 1e-9
