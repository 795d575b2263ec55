"""ACAS Xu end to end: maximise output 0 over the input box of property 1 (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from relumilp.cli import main

# Property 1's input box, in the networks' normalised units (prop_1.vnnlib of VNN-COMP 2021).
PROP1_BOX = ["0.6:0.679857769", "-0.5:0.5", "-0.5:0.5", "0.45:0.5", "-0.5:-0.45"]


@pytest.mark.slow
def test_acasxu_1_1_maximise_output_0(acasxu_dir, capsys):
    from relumilp.frontends import load_network

    model = acasxu_dir / "ACASXU_run2a_1_1_batch_2000.onnx"
    args = ["solve", str(model), *[f"--box={b}" for b in PROP1_BOX], "--maximize", "0", "--time-limit", "300",
            "--tighten", "lp", "--json"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    print(json.dumps({k: data[k] for k in ("status", "objective", "bound", "gap", "times", "stats")}))
    assert data["status"] in ("optimal", "time_limit")
    assert data["x"] is not None
    net = load_network(model)
    y = net.forward(np.array(data["x"]))
    assert y[0] == pytest.approx(data["objective"], abs=1e-6)
    assert data["bound"] >= data["objective"] - 1e-6
    # Property 1 (VNN-COMP 2021) holds on this network: no input reaches output 0 >= 3.9911256...
    assert data["objective"] < 3.991125645861615
