"""Smoke test of the benchmark study runner (benchmarks/study/): a tiny configuration end to end."""

from __future__ import annotations

import csv
import os
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

import relumilp.train  # noqa: E402,F401  (torch and the trainer imported outside the timed region)
from benchmarks import study  # noqa: E402


def _time_allowance(seconds: float) -> float:
    """``seconds`` on an idle machine, stretched by the oversubscription of the cores (shared CI boxes)."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        return seconds
    return seconds * max(1.0, load / (os.cpu_count() or 1))


def test_tiny_study_writes_csv_with_expected_columns(tmp_path):
    argv = ["--problems", "peaks", "--archs", "4x4", "--trainings", "plain", "--tightenings", "interval,lp",
            "--scalings", "off", "--epochs", "3", "--n-train", "200", "--time-limit", "20", "--no-omlt",
            "--out", str(tmp_path), "--cache", str(tmp_path / "cache"), "--name", "smoke", "--figures",
            str(tmp_path / "figures")]
    start = time.perf_counter()
    rows = study.main(argv)
    elapsed = time.perf_counter() - start
    allowed = _time_allowance(30.0)
    assert elapsed < allowed, f"the tiny study took {elapsed:.1f} s (allowed {allowed:.0f} s at this load)"

    path = tmp_path / "study_smoke.csv"
    assert path.is_file() and (tmp_path / "study_smoke.md").is_file()
    with path.open() as handle:
        reader = csv.DictReader(handle)
        written = list(reader)
        header = reader.fieldnames
    for column in study.COLUMNS:
        assert column in header, column
    assert len(written) == len(rows) == 2
    assert {r["tightening"] for r in written} == {"interval", "lp"}
    for r in written:
        assert r["status"] == "optimal"
        assert r["architecture"] == "2-4-4-1"
        assert float(r["fwd_check"]) < 1e-6
        assert r["bounds_sound"] == "True"
        assert r["regions_method"] in ("exact", "n/a")
    # both bound methods prove the same optimum of the same network
    assert abs(float(written[0]["objective"]) - float(written[1]["objective"])) <= 1e-6 * max(1.0, abs(float(written[0]["objective"])))
    # the trained network is cached: a second run trains nothing
    again = study.main(argv)
    assert again[0]["train_s"] == rows[0]["train_s"]
    assert sorted(p.name for p in (tmp_path / "figures").glob("study_smoke_*.png"))


def test_training_spec_parsing():
    t = study.Training.parse("group_l1=1e-2+stability")
    assert t.prune and t.kwargs == {"group_l1": 1e-2, "stability": study.DEFAULT_WEIGHTS["stability"]}
    assert study.Training.parse("clipped=2").kwargs == {"activation": "clipped", "clip": 2.0}
    assert not study.Training.parse("clipped").is_relu
    with pytest.raises(ValueError):
        study.Training.parse("bogus=1")


def test_missing_shared_data_skips_reformer(tmp_path, monkeypatch):
    monkeypatch.setenv("RELUMILP_SHARED_DATA", str(tmp_path / "nowhere"))
    from benchmarks import problems

    reason = problems.available("reformer")
    assert reason and "reformer data not found" in reason
    config = study.preset("quick")
    config.problems = ["reformer"]
    messages = []
    rows = study.run(config, tmp_path, None, tmp_path / "cache", log=messages.append)
    assert rows == [] and any("skipping problem reformer" in m for m in messages)
