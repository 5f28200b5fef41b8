"""The brute-force reference (benchmarks.bruteforce) on hand-computed cases, and against the engine."""

from __future__ import annotations

import json

import numpy as np

import lsr
from lsr.config import IndexConfig, QuantizationConfig
from benchmarks.bruteforce import brute_force_run, main


def test_hand_computed_scores_and_tie_order(tmp_path):
    docs = [("a", {"x": 1.0, "y": 2.0}), ("b", {"y": 1.5}), ("c", {"x": 3.0}), ("d", {"z": 1.0}),
            ("e", {"x": 1.0, "y": 2.0})]
    run = brute_force_run(docs, [("q1", {"x": 1.0, "y": 1.0}), ("q2", {"z": 2.0, "w": 5.0}),
                                 ("q3", {"w": 1.0})], k=3)
    hits = [(h.query_id, h.doc_id, h.score, h.rank) for h in run]
    # q1: a = 3, e = 3 (tie: collection order), c = 3 too -> a, c, e; b = 1.5 cut by k
    assert hits[:3] == [("q1", "a", 3.0, 1), ("q1", "c", 3.0, 2), ("q1", "e", 3.0, 3)]
    assert hits[3:] == [("q2", "d", 2.0, 1)]   # unknown term ignored; q3 matches nothing


def test_float_index_equals_brute_force_and_cli(tmp_path):
    rng = np.random.default_rng(3)
    vocab = [f"t{i}" for i in range(50)]
    docs = [(f"d{i}", {vocab[j]: float(rng.uniform(0.01, 3.0)) for j in rng.choice(50, 8, replace=False)})
            for i in range(400)]
    queries = [(f"q{i}", {vocab[j]: float(rng.uniform(0.1, 2.0)) for j in rng.choice(50, 5, replace=False)})
               for i in range(20)]
    ref = brute_force_run(docs, queries, k=20).by_query()
    ix = lsr.build_index(docs, tmp_path / "ix", IndexConfig(quantization=QuantizationConfig(method="float")))
    got = lsr.Searcher(ix, algorithm="exhaustive").search_batch(queries, k=20).by_query()
    for qid, _ in queries:
        assert [h.doc_id for h in got[qid]] == [h.doc_id for h in ref[qid]]
        np.testing.assert_allclose([h.score for h in got[qid]], [h.score for h in ref[qid]], rtol=1e-6)
    vec_path = tmp_path / "docs.jsonl"
    vec_path.write_text("".join(json.dumps({"id": d, "vector": v}) + "\n" for d, v in docs))
    q_path = tmp_path / "q.jsonl"
    q_path.write_text("".join(json.dumps({"id": q, "vector": v}) + "\n" for q, v in queries))
    assert main([str(vec_path), str(q_path), "-k", "20", "-o", str(tmp_path / "run.trec")]) == 0
    back = lsr.Results.read_trec(tmp_path / "run.trec").by_query()
    assert [h.doc_id for h in back["q3"]] == [h.doc_id for h in ref["q3"]]
    assert main([str(tmp_path / "missing.jsonl"), str(q_path), "-o", str(tmp_path / "x.trec")]) == 2
