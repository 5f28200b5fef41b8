"""The embedded demo data (lsr.data): consistent, readable by lsr, and rebuilt byte for byte by build_demo."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import lsr.data
from lsr.data import CORPUS, QRELS, QUERIES
from lsr.data.build_demo import build

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LSR_SHARED_DIR", ROOT.parent / "shared"))


def _lines(name: str) -> list[dict]:
    with gzip.open(str(lsr.data.path(name)), "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_demo_files_are_consistent():
    docs = _lines(CORPUS)
    queries = _lines(QUERIES)
    qrels = [line.split() for line in lsr.data.path(QRELS).read_text(encoding="utf-8").splitlines()]
    ids = [d["_id"] for d in docs]
    assert len(docs) == 1000 == len(set(ids))
    assert all(d["text"].strip() and set(d) == {"_id", "title", "text"} for d in docs)
    assert len(queries) == 300 == len({q["_id"] for q in queries})
    assert all(q["text"].strip() for q in queries)
    assert len(qrels) == 339 and all(len(r) == 4 and r[1] == "0" for r in qrels)
    assert {r[2] for r in qrels} <= set(ids)
    assert {r[0] for r in qrels} == {q["_id"] for q in queries}


def test_lsr_reads_them_as_a_corpus_and_text_queries():
    from lsr.io import read_queries
    from lsr.eval.datasets import read_qrels

    qs = read_queries(str(lsr.data.path(QUERIES)), fmt="text")
    assert len(qs) == 300 and all(q.text and q.vector is None for q in qs)
    assert sum(len(v) for v in read_qrels(str(lsr.data.path(QRELS))).values()) == 339


def test_build_demo_rebuilds_the_same_bytes(tmp_path):
    scifact = SHARED / "data" / "beir" / "scifact"
    assert (scifact / "corpus.jsonl").is_file(), f"missing {scifact} (shared data)"
    assert build(str(scifact), str(tmp_path)) == {"documents": 1000, "queries": 300, "qrels": 339}
    for name in (CORPUS, QUERIES, QRELS):
        assert (tmp_path / name).read_bytes() == lsr.data.path(name).read_bytes(), name
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
