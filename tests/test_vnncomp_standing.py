"""The standing table of a VNN-COMP family (``benchmarks/vnncomp_standing.py``): the latest answer per
instance wins, contradictions with the published answers are flagged (exit 1) unless settled."""

from __future__ import annotations

from benchmarks import vnncomp_standing as standing_script

PUBLISHED = """onnx,vnnlib,timeout,answer,note
nets/a.onnx,specs/p1.vnnlib,60,holds,
nets/a.onnx,specs/p2.vnnlib,60,violated,
nets/b.onnx,specs/p3.vnnlib,60,holds,
nets/b.onnx,specs/p4.vnnlib,60,unknown,no entrant decided it
"""
HEAD = "network,property,result,time,time_limit,decided_by,boxes,milps,cex_forward,cex_ort_margin,counterexample_x\n"


def _files(tmp_path):
    published = tmp_path / "published.csv"
    published.write_text(PUBLISHED)
    old = tmp_path / "old.csv"
    old.write_text(HEAD + "a.onnx,p1.vnnlib,unknown,60.0,60,unknown,,,,,\n"
                          "a.onnx,p2.vnnlib,violated,3.0,60,attack,,,True,-0.1,\n")
    new = tmp_path / "new.csv"
    new.write_text(HEAD + "a.onnx,p1.vnnlib,holds,10.0,60,bab,,,,,\n"
                          "b.onnx,p3.vnnlib,violated,5.0,60,attack,,,True,-0.2,\n")
    return published, old, new


def test_latest_answer_counts_and_a_contradiction_is_flagged(tmp_path, capsys):
    published, old, new = _files(tmp_path)
    rows, summaries = standing_script.standing(published, [old, new])
    by_property = {r["property"]: r for r in rows}
    assert by_property["p1.vnnlib"]["relumilp"] == "holds" and by_property["p1.vnnlib"]["source"] == "new.csv"
    assert by_property["p2.vnnlib"]["agree"] == "yes"
    assert by_property["p3.vnnlib"]["agree"] == "CONTRADICTION"
    assert by_property["p4.vnnlib"]["relumilp"] == "not run" and by_property["p4.vnnlib"]["agree"] == ""
    a, b = summaries
    assert (a["instances"], a["run"], a["solved"], a["holds"], a["violated"], a["agree"]) == (2, 2, 2, 1, 1, 2)
    assert a["median s (decided)"] == "6.5" and a["max s (decided)"] == "10.0"
    assert (b["instances"], b["run"], b["contradictions"]) == (2, 1, 1)
    assert standing_script.main([str(published), str(old), str(new)]) == 1
    # listed the other way round, the old unknown wins for p1
    rows, _ = standing_script.standing(published, [new, old])
    assert {r["property"]: r["relumilp"] for r in rows}["p1.vnnlib"] == "unknown"


def test_a_settled_instance_agrees_and_the_table_is_written(tmp_path, capsys):
    published, old, new = _files(tmp_path)
    out = tmp_path / "standing.csv"
    assert standing_script.main([str(published), str(old), str(new), "--settled", "p3.vnnlib=violated",
                                 "--out", str(out)]) == 0
    text = out.read_text()
    assert "holds, settled violated" in text and "CONTRADICTION" not in text
    assert "| b.onnx | 2 | 1 | 1 | 0 | 1 | 0 | 1 | 0 |" in capsys.readouterr().out
