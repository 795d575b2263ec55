"""Smoke tests of the example scripts: each runs as a subprocess, exits 0 and prints its key result.

The default suite runs every example in its ``--quick`` mode (small networks, few epochs, smaller
boxes); the full runs are marked ``slow`` (``python -m pytest -m slow tests/test_examples.py``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from relumilp.ir import Network

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
TIMEOUT = 900  # seconds per script: generous, the machine may be shared


def run(script: str, *args: str, cwd: Path, env: dict | None = None) -> str:
    """Run ``examples/<script>`` with the current interpreter from ``cwd``; return stdout (asserts rc 0)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), **(env or {}))
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 0, (
        f"{script} exited with {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )
    assert "CHECK FAILED" not in done.stdout and "VIOLATES" not in done.stdout, done.stdout
    return done.stdout


# -- default suite: quick modes -----------------------------------------------------------------------


def test_peaks_global_optimum_quick(tmp_path):
    out = run("peaks_global_optimum.py", "--quick", cwd=tmp_path)
    assert "Certified global optimum of the network: yes" in out
    assert out.count("status      optimal") == 2
    assert "within the proven bound" in out


@pytest.mark.slow  # ~6 s of training; the full, deterministic run is slow too
def test_train_peaks_quick(tmp_path):
    target = tmp_path / "peaks.npz"
    out = run("train_peaks.py", "--quick", "--out", str(target), cwd=tmp_path)
    assert f"Wrote {target}" in out
    net = Network.load(target)
    assert (net.input_size, net.hidden_sizes, net.output_size) == (2, [16, 16], 1)


@pytest.mark.slow  # ~10 s; the full run is slow too
def test_reformer_design_quick_with_bundled_sample(tmp_path):
    """As in a fresh clone: no shared data folder, so the script falls back to the bundled sample."""
    out = run("reformer_design.py", "--quick", cwd=tmp_path, env={"RELUMILP_SHARED_DATA": str(tmp_path / "none")})
    assert "reformer_sample.csv (600 rows)  [bundled sample]" in out
    assert "Optimal design found and certified: yes" in out
    assert re.search(r"max \|MILP - forward\| = \S+", out)


@pytest.mark.slow  # ~8 s; the default suite keeps the cheaper examples (the full run is slow too)
def test_digits_robustness_quick(tmp_path):
    out = run("digits_robustness.py", "--quick", cwd=tmp_path)
    assert "test accuracy" in out
    verdicts = re.findall(r"^\s+0\.\d+\s+\d+\s+optimal .*(ROBUST|NOT robust)", out, flags=re.M)
    assert len(verdicts) == 2, out


@pytest.mark.slow  # ~8 s; ACAS Xu soundness stays in the default suite (test_bounds_symbolic)
def test_acasxu_verification_quick(tmp_path):
    out = run("acasxu_verification.py", "--quick", cwd=tmp_path)
    if "ACAS Xu data not found" in out:
        pytest.skip("shared ACAS Xu data absent (the script exited 0 with a message)")
    assert re.search(r"network 1_1\s+property 1:\s+holds", out), out
    assert re.search(r"network 2_1\s+property 2:\s+violated", out), out


def test_acasxu_verification_without_data(tmp_path, capsys):
    """Without the shared data the script explains and exits 0 (run in-process: it stops before any work)."""
    spec = importlib.util.spec_from_file_location("acasxu_verification", EXAMPLES / "acasxu_verification.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--data-dir", str(tmp_path / "missing")]) == 0
    assert "ACAS Xu data not found" in capsys.readouterr().out


@pytest.mark.slow  # ~8 s of training
def test_train_milp_friendly_quick(tmp_path):
    out = run("train_milp_friendly.py", "--quick", cwd=tmp_path)
    for variant in ("plain", "stability", "group-L1", "clipped"):
        assert re.search(rf"^{re.escape(variant)}\s+\d+\.\d+\s+\S+\s+\S+%\s+\d+\s+\S+\s+optimal", out, flags=re.M), out
    assert "Fastest regularised variant" in out


def test_every_example_is_smoke_tested():
    tested = {"peaks_global_optimum.py", "train_peaks.py", "reformer_design.py", "digits_robustness.py",
              "acasxu_verification.py", "train_milp_friendly.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested
    readme = (EXAMPLES / "README.md").read_text()
    assert all(name in readme for name in tested)


# -- full runs (slow) ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("script,args,expected", [
    ("peaks_global_optimum.py", (), ("Certified global optimum of the network: yes",)),
    ("reformer_design.py", (), ("Optimal design found and certified: yes",)),
    ("digits_robustness.py", ("--png", "adv.png"), ("Exact robustness radius", "eps* = ")),
])
def test_full_run(tmp_path, script, args, expected):
    out = run(script, *args, cwd=tmp_path)
    assert all(line in out for line in expected), out


@pytest.mark.slow
def test_train_peaks_full_is_deterministic(tmp_path):
    hashes, outs = [], []
    for k in range(2):
        outs.append(run("train_peaks.py", "--out", str(tmp_path / f"peaks{k}.npz"), cwd=tmp_path))
        hashes.append(re.search(r"content hash\s+(\w+)", outs[-1]).group(1))
    assert hashes[0] == hashes[1]
    # the recipe reproduces the shipped network: bit for bit, or to within a float64 rounding
    close = re.search(r"shipped network's weights to within (\S+)\)", outs[0])
    assert "bit-for-bit the shipped" in outs[0] or (close and float(close.group(1)) <= 1e-12)


@pytest.mark.slow
def test_acasxu_verification_full(tmp_path):
    out = run("acasxu_verification.py", cwd=tmp_path)
    if "ACAS Xu data not found" in out:
        pytest.skip("shared ACAS Xu data absent")
    assert re.search(r"network 1_1\s+property 3:\s+holds", out), out


@pytest.mark.slow
def test_train_milp_friendly_full(tmp_path):
    out = run("train_milp_friendly.py", cwd=tmp_path)
    assert out.count(" optimal ") >= 4


@pytest.mark.slow
def test_api_reference_builds_with_pdoc(tmp_path):
    pytest.importorskip("pdoc")
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "docs" / "build_api.py"),
                           str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "relumilp.html").is_file() and "Warn" not in proc.stderr
