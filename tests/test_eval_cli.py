"""``lsr eval`` on small run files with a local qrels file (in-process CLI).

(The CLI against an ir_datasets id runs in a subprocess in test_eval_irds.py.)
"""

from __future__ import annotations

import io
import json
import math

import pytest
from scipy import stats

from lsr.cli import main

QRELS = "q1 0 d1 2\nq1 0 d2 1\nq2 0 d3 1\nq3 0 d4 1\n"
# run a: q1 d1@1, q2 d3@2, q3 d4@1 -> RR 1, 1/2, 1
RUN_A = ("q1 Q0 d1 1 3.5 a\nq1 Q0 d2 2 2 a\n"
         "q2 Q0 x 1 4 a\nq2 Q0 d3 2 3 a\n"
         "q3 Q0 d4 1 1 a\n")
# run b: q1 d2@1 d1@2, q2 d3@3, q3 nothing relevant -> RR 1, 1/3, 0
RUN_B = ("q1 Q0 d2 1 9 b\nq1 Q0 d1 2 8 b\n"
         "q2 Q0 x 1 3 b\nq2 Q0 y 2 2 b\nq2 Q0 d3 3 1 b\n"
         "q3 Q0 z 1 1 b\n")


@pytest.fixture
def files(tmp_path):
    paths = {}
    for name, text in (("qrels.txt", QRELS), ("a.trec", RUN_A), ("b.trec", RUN_B)):
        p = tmp_path / name
        p.write_text(text)
        paths[name] = str(p)
    return paths


def test_table(files, capsys):
    rc = main(["eval", files["a.trec"], files["b.trec"], "--qrels", files["qrels.txt"],
               "-m", "RR@10", "--metrics", "R@1"])
    out, err = capsys.readouterr()
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"dataset: {files['qrels.txt']}"
    assert lines[1].split() == ["run", "queries", "RR@10", "R@1"]
    assert lines[2].split() == [files["a.trec"], "3", f"{(1 + 0.5 + 1) / 3:.4f}", f"{(0.5 + 0 + 1) / 3:.4f}"]
    assert lines[3].split() == [files["b.trec"], "3", f"{(1 + 1 / 3 + 0) / 3:.4f}", f"{(0.5 + 0 + 0) / 3:.4f}"]


def test_per_query_and_json(files, capsys):
    assert main(["eval", files["a.trec"], "--qrels", files["qrels.txt"], "-m", "RR@10", "--per-query"]) == 0
    out = capsys.readouterr().out
    block = out.split(f"# {files['a.trec']}\n", 1)[1].splitlines()
    assert [row.split() for row in block] == [["query", "RR@10"], ["q1", "1.0000"], ["q2", "0.5000"],
                                              ["q3", "1.0000"], ["all", "0.8333"]]
    assert main(["eval", files["a.trec"], "--qrels", files["qrels.txt"], "-m", "nDCG@10",
                 "--per-query", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (ev,) = doc["runs"]
    # q1: d1 (2) at 1, d2 (1) at 2: ideal order, nDCG 1; q2: d3 at 2 -> 1/log2(3)
    assert ev["per_query"] == {"q1": {"nDCG@10": pytest.approx(1.0)},
                               "q2": {"nDCG@10": pytest.approx(1 / math.log2(3))},
                               "q3": {"nDCG@10": pytest.approx(1.0)}}
    assert ev["aggregate"]["nDCG@10"] == pytest.approx((2 + 1 / math.log2(3)) / 3)
    assert doc["options"]["ties"] == "rank" and ev["missing_queries"] == []


def test_compare(files, capsys):
    assert main(["eval", files["a.trec"], "--compare", files["b.trec"], "--qrels", files["qrels.txt"],
                 "-m", "RR@10", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (c,) = doc["comparisons"]
    (row,) = c["metrics"]
    a, b = [1, 0.5, 1], [1, 1 / 3, 0]
    assert c["baseline"] == files["b.trec"] and c["run"] == files["a.trec"]
    assert row["metric"] == "RR@10" and row["delta"] == pytest.approx(sum(a) / 3 - sum(b) / 3)
    assert (row["wins"], row["losses"], row["n"]) == (2, 0, 3)
    assert row["t_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert row["wilcoxon_p"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert main(["eval", files["a.trec"], "-c", files["b.trec"], "--qrels", files["qrels.txt"],
                 "-m", "RR@10", "--test", "t"]) == 0
    out = capsys.readouterr().out
    assert f"{files['a.trec']} vs baseline {files['b.trec']} (3 queries, paired, two-sided)" in out
    header = next(line for line in out.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "baseline", "run", "delta", "win/loss", "p(t-test)"]
    row_line = next(line for line in out.splitlines() if line.startswith("RR@10"))
    assert row_line.split()[3:5] == [f"+{(sum(a) - sum(b)) / 3:.4f}", "2/0"]


def test_stdin_run(files, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(RUN_A))
    assert main(["eval", "-", "--qrels", files["qrels.txt"], "-m", "RR@10"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[2].split() == ["-", "3", "0.8333"]


def test_errors_are_one_line(files, tmp_path, capsys):
    def err_of(*argv):
        rc = main(["eval", *argv])
        e = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in e
        return e

    assert "give --dataset" in err_of(files["a.trec"])
    assert "not both" in err_of(files["a.trec"], "--qrels", files["qrels.txt"], "-d", files["qrels.txt"])
    empty = tmp_path / "empty.trec"
    empty.write_text("")
    assert err_of(str(empty), "--qrels", files["qrels.txt"]) == (
        f"lsr: error: run {empty} is empty: it has no hits to evaluate\n")
    other = tmp_path / "other.trec"
    other.write_text("7 Q0 d1 1 1 x\n")
    assert "none of the 1 query ids of run" in err_of(str(other), "--qrels", files["qrels.txt"])
    assert "unknown metric 'Bogus@3'" in err_of(files["a.trec"], "--qrels", files["qrels.txt"], "-m", "Bogus@3")
    assert "no such file or directory" in err_of(files["a.trec"], "-d", str(tmp_path / "nodir"))
    extra = tmp_path / "extra.trec"
    extra.write_text(RUN_A + "q9 Q0 d1 1 1 a\n")
    assert "1 of 4 query ids of run" in err_of(str(extra), "--qrels", files["qrels.txt"], "--strict")
    assert main(["eval", str(extra), "--qrels", files["qrels.txt"]]) == 0
    assert "lsr: warning: 1 of 4 query ids of run" in capsys.readouterr().err
