"""The synthetic SPLADE-shaped collection, the benchmark's main function, and the
exhaustive kernel on synthetic data with many ties."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lsr.config import IndexConfig, QuantizationConfig
from lsr.index import IndexBuilder, Searcher, build_index
from lsr.index.kernels.exhaustive import SCAN_BLOCK, exhaustive_one, exhaustive_ref
from benchmarks.synthetic import SpladeLike, term_name


def _build(spec: SpladeLike, out, config: IndexConfig | None = None):
    with IndexBuilder(out, config, vocabulary=spec.vocabulary()) as b:
        for batch in spec.batches():
            b.add_batch(batch.doc_ids, batch.indptr, batch.term_ids, batch.weights)
    return b.index


def test_same_seed_same_collection_and_queries():
    a, b = SpladeLike(n_docs=2500, seed=7, block_docs=1000), SpladeLike(n_docs=2500, seed=7, block_docs=1000)
    for x, y in zip(a.batches(), b.batches()):
        assert x.doc_ids == y.doc_ids and x.first == y.first
        for u, v in zip(x[2:], y[2:]):
            np.testing.assert_array_equal(u, v)
    assert a.queries(20) == b.queries(20)
    assert a.query_sources(20) == b.query_sources(20)
    # a block regenerated on its own equals the one in the stream
    third = list(a.batches())[2]
    np.testing.assert_array_equal(a.block(2).weights, third.weights)
    # another seed, other data
    c = SpladeLike(n_docs=2500, seed=8, block_docs=1000)
    assert not np.array_equal(c.block(0).term_ids[:200], a.block(0).term_ids[:200])
    assert c.queries(20) != a.queries(20)


def test_shape_is_splade_like():
    spec = SpladeLike(n_docs=20_000)
    df = np.zeros(spec.n_terms, np.int64)
    nnz, ws = [], []
    for batch in spec.batches():
        assert batch.term_ids.dtype == np.int32 and batch.weights.dtype == np.float32
        lens = np.diff(batch.indptr)
        nnz.append(lens)
        # term ids strictly increasing within each document (no duplicates)
        inc = np.diff(batch.term_ids) > 0
        inc[batch.indptr[1:-1] - 1] = True
        assert inc.all()
        df += np.bincount(batch.term_ids, minlength=spec.n_terms)
        ws.append(batch.weights)
    nnz, ws = np.concatenate(nnz), np.concatenate(ws)
    assert 115 <= nnz.mean() <= 125 and nnz.std() > 20
    assert ws.min() > 0 and ws.max() <= 3.0 and 0.3 < np.median(ws) < 0.6 and np.percentile(ws, 99) > 1.5
    frac = np.sort(df)[::-1] / spec.n_docs
    assert frac[0] > 0.25 and (frac > 0.1).sum() > 50      # a head of very frequent terms
    assert np.median(frac) < 0.005                         # and a long tail
    assert len(spec.vocabulary()) == 30_522 and spec.vocabulary()[42] == term_name(42) == "t00042"


def test_queries_have_real_matches(tmp_path):
    spec = SpladeLike(n_docs=3000)
    queries = spec.queries(60)
    lens = [len(v) for _, v in queries]
    assert 38 <= np.mean(lens) <= 48
    assert all(0 < w <= 3.0 for _, v in queries for w in v.values())
    index = _build(spec, tmp_path / "ix")
    doc_terms = {}
    for batch in spec.batches():
        for i, did in enumerate(batch.doc_ids):
            doc_terms[did] = {term_name(t) for t in batch.term_ids[batch.indptr[i]:batch.indptr[i + 1]]}
    s = Searcher(index)
    for (qid, vec), src in zip(queries, spec.query_sources(60)):
        assert len(doc_terms[src] & set(vec)) >= 0.4 * len(vec)   # drawn partly from a real document
        assert len(s.search(vec, k=10, query_id=qid)) == 10
        assert src in s.search(vec, k=3000, query_id=qid).doc_ids  # which it matches


def test_jsonl_path_builds_the_same_index(tmp_path):
    spec = SpladeLike(n_docs=400, block_docs=150)
    path = tmp_path / "c.jsonl.gz"
    assert spec.write_jsonl(path) == 400
    a = _build(spec, tmp_path / "a")
    b = build_index(path, tmp_path / "b")
    assert a.num_documents == b.num_documents == 400 and a.num_postings == b.num_postings
    assert a.doc_ids(np.arange(400)) == b.doc_ids(np.arange(400))
    assert a.quantization["scale"] == b.quantization["scale"]
    # b's vocabulary holds only the terms that occur, in first-seen order: compare term by term
    for t in b.terms:
        for x, y in zip(a.postings(t), b.postings(t)):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("method,bits", [("fixed", 8), ("max", 8), ("float", 8)])
def test_exhaustive_kernel_on_synthetic_ties(tmp_path, method, bits):
    # scale 4 gives impacts 1..12: many equal scores, so the tie rule and the
    # block-maximum bound of the scan are both exercised
    spec = SpladeLike(n_docs=6000, seed=3)
    q = QuantizationConfig(method=method, bits=bits, scale=4.0 if method == "fixed" else None)
    index = _build(spec, tmp_path / "ix", IndexConfig(quantization=q))
    s = Searcher(index, query_scale=3.0)
    p = s.prepare(spec.queries(15))
    acc = np.zeros(index.num_documents, p.score_dtype)
    assert index.num_documents // SCAN_BLOCK > 10
    for k in (1, 10, 40, 100, 6000):
        for i in range(len(p.ids)):
            a, b = p.offsets[i], p.offsets[i + 1]
            q = (p.terms[a:b], p.weights[a:b])
            docs, scores = np.empty(k, np.int32), np.empty(k, p.score_dtype)
            n = exhaustive_one(s.index_arrays(), *q, k, (), acc, docs, scores)
            assert not acc.any()
            rd, rs = exhaustive_ref(index.term_offsets, index.postings_docs, index.postings_impacts, *q,
                                    index.num_documents, k, p.score_dtype)
            np.testing.assert_array_equal(docs[:n], rd)
            np.testing.assert_array_equal(scores[:n], rs)


def test_bench_main_small(tmp_path):
    from benchmarks.peer_bench import main

    out = tmp_path / "r.json"
    result = main(["--docs", "2000", "--queries", "20", "--work-dir", str(tmp_path / "w"), "--json", str(out),
                   "--quiet"])
    assert result["check"]["lsr_equals_scipy"] and result["check"]["batch_equals_single"]
    assert result["check"]["mismatches"] == {10: 0, 1000: 0}
    saved = json.loads(out.read_text())
    assert saved["documents"] == 2000 and saved["build"]["build_seconds"] > 0
    assert saved["build"]["peak_rss_bytes"] >= saved["build"]["rss_before_build_bytes"] > 0
    assert {(r["engine"], r["k"], r["threads"]) for r in saved["search"]} >= {("lsr", 10, 2), ("scipy", 1000, 1)}
    # the second run reuses the cached collection
    again = main(["--docs", "2000", "--queries", "5", "--work-dir", str(tmp_path / "w"), "--quiet", "--no-scipy",
                  "--reuse-index", "--k", "10"])
    assert again["build"]["reused"] and again["check"]["batch_equals_single"]
