"""The two disputed VNN-COMP 2021 verivital avgpool instances (published `violated` on one entrant's word):
relumilp's `holds` checked against an exact MILP written without any relumilp code
(``benchmarks/verivital_disputed.py``; see docs/benchmarks.md). Slow: minutes of MILP."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def disputed(shared_data):
    folder = shared_data / "vnncomp2021" / "verivital"
    if not folder.is_dir():
        pytest.skip("vnncomp2021 verivital benchmark not present")
    from benchmarks import verivital_disputed as vd

    return vd, folder


def test_prop_7_holds_by_relumilp_and_by_the_independent_milp(disputed):
    vd, folder = disputed
    from relumilp.frontends import load_network
    from relumilp.frontends.vnnlib import read_vnnlib
    from relumilp.verify import verify

    path = folder / "specs" / "avgpool_specs" / "prop_7_0.04.vnnlib"
    lo, hi, label, others = vd.parse_vnnlib(path)
    weights = vd.load_weights()
    net = load_network(folder / "Convnet_avgpool.onnx")
    x = lo + (hi - lo) * np.random.default_rng(0).random((50, 784))
    np.testing.assert_allclose(net.forward(x), vd.forward64(x, weights), atol=1e-9)  # same network, two readers
    prop = read_vnnlib(path, net.input_size, net.output_size)
    assert verify(net, prop, time_limit=300, tighten="interval", input_split=False).result == "holds"
    worst = vd.exact_milp(lo, hi, label, [7], weights, seconds=60)[7]  # the closest label (docs)
    assert worst[1] < -0.1  # HiGHS's upper bound on max Y_7 - Y_1 over the box
