"""The encoder benchmark runs end to end (tiny sizes) and checks its own outputs agree."""

from __future__ import annotations

import json

import pytest

from encoders_helpers import SCIFACT, SPLADE_TINY
from benchmarks import encoder_speed as bench


@pytest.mark.slow
def test_bench_prints_table_and_outputs_agree(tmp_path, capsys):
    out = tmp_path / "rows.json"
    rc = bench.main(["--models", "splade-tiny", "--splade-tiny", str(SPLADE_TINY),
                     "--corpus", str(SCIFACT / "corpus.jsonl"), "--queries", str(SCIFACT / "queries.jsonl"),
                     "--docs", "6", "--n-queries", "5", "--repeat", "1", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "hf-reference" in text and "| lsr " in text and "docs/s" in text
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert [r["impl"] for r in rows] == ["hf-reference", "lsr"]
    assert all(r["max_abs_diff"] < 1e-5 for r in rows)
    assert rows[1]["docs_per_s"] > 0 and rows[1]["query_ms_p50"] > 0 and "speedup_docs" in rows[1]


def test_reference_and_format_helpers():
    a = [{"x": 1.0, "y": 0.5}]
    b = [{"x": 1.0000001, "z": 0.25}]
    assert abs(bench.max_abs_diff(a, b) - 0.5) < 1e-9
    table = bench.format_table([{"model": "m", "impl": "lsr", "docs_per_s": 10.0, "queries_per_s": 20.0,
                                 "query_ms_p50": 1.0, "query_ms_p95": 2.0, "max_abs_diff": 0.0,
                                 "speedup_docs": 2.5}])
    assert "2.50x" in table and table.splitlines()[1].startswith("-")
