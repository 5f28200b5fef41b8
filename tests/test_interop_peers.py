"""lsr's exports read by the engines they are for, and their files imported by lsr (``peers`` tier).

All on the real splade-tiny SciFact index (WordPiece terms, 8-bit impacts) with
the first 40 SciFact queries encoded by its recorded encoder and prepared as
lsr scores them (integer weights), so every engine must return lsr's exact
top k (the same scores; the same documents above the k-th score):

* Anserini: ``lsr anserini export`` → ``IndexCollection -impact -pretokenized``
  → ``SimpleImpactSearcher``;
* PISA reading lsr's CIFF: ``lsr.ciff.export_index`` → PISA's binary collection
  (:mod:`benchmarks.pisa_ciff`, standing in for pyciff, which has no wheel
  for this Python) → ``PisaIndex.quantized()``;
* lsr reading PISA's CIFF: PISA's own ``toks_indexer`` over the documents →
  CIFF (:mod:`benchmarks.pisa_ciff`) → ``lsr.ciff.import_index`` → lsr's
  searcher, against PISA's answers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import lsr
import lsr.ciff
from lsr.index import Index

pytestmark = pytest.mark.peers
K = 10


@pytest.fixture(scope="module")
def setup(scifact_splade_index, scifact_dir):
    from benchmarks import peers as P

    ix = Index.open(scifact_splade_index)
    queries = []
    with open(scifact_dir / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            queries.append((rec["_id"], rec["text"]))
            if len(queries) == 40:
                break
    qs = P.QuerySet.from_queries(ix, queries)   # the integer weights lsr scores with
    vectors = [(qid, {ix.terms[t]: int(w) for t, w in zip(ts.tolist(), ws.tolist())})
               for qid, ts, ws in zip(qs.ids, qs.terms, qs.weights)]
    truth = lsr.Searcher(ix, algorithm="exhaustive").search_batch(vectors, k=K)
    want = {qid: [(h.doc_id, float(h.score)) for h in truth if h.query_id == qid] for qid, _ in vectors}
    return ix, vectors, want


def _same_top_k(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for qid, w in want.items():
        g = got[qid]
        assert [s for _, s in g] == pytest.approx([s for _, s in w], rel=1e-6), qid
        if w:
            kth = w[-1][1]
            assert {d for d, s in g if s > kth} == {d for d, s in w if s > kth}, qid


def _pisa_search(index_dir, vectors) -> dict:
    import pandas as pd
    from pyterrier_pisa import PisaIndex

    retr = PisaIndex(str(index_dir), stemmer="none", threads=1).quantized(num_results=K, toks_scale=1.0,
                                                                          query_weighted=True)
    res = retr(pd.DataFrame({"qid": [q for q, _ in vectors], "query_toks": [v for _, v in vectors]}))
    got = {q: [] for q, _ in vectors}
    for row in res.sort_values(["qid", "rank"]).itertuples():
        got[row.qid].append((row.docno, float(row.score)))
    return got


def test_anserini_indexes_the_export_and_returns_lsrs_top_k(tmp_path, setup):
    from benchmarks import peers as P

    ix, vectors, want = setup
    lsr.anserini.export_index(ix, tmp_path / "json")
    P.anserini_index(P.anserini_index_args(str(tmp_path / "json"), str(tmp_path / "lucene"), 2),
                     str(tmp_path / "anserini.log"))
    P.setup_pyserini_jvm()
    from jnius import autoclass

    searcher = autoclass("io.anserini.search.SimpleImpactSearcher")(str(tmp_path / "lucene"))
    JHashMap, JInt = autoclass("java.util.HashMap"), autoclass("java.lang.Integer")
    got = {}
    try:
        for qid, vec in vectors:
            m = JHashMap()
            for term, w in vec.items():
                m.put(term, JInt(w))
            got[qid] = [(h.docid, float(h.score)) for h in searcher.search(m, K)]
    finally:
        searcher.close()
    _same_top_k(got, want)


def test_pisa_searches_lsrs_ciff_export_with_lsrs_top_k(tmp_path, setup):
    from benchmarks.pisa_ciff import ciff_to_pisa

    ix, vectors, want = setup
    lsr.ciff.export_index(ix, tmp_path / "scifact.ciff")
    ciff_to_pisa(tmp_path / "scifact.ciff", tmp_path / "pisa")
    _same_top_k(_pisa_search(tmp_path / "pisa", vectors), want)


def test_lsr_imports_a_ciff_of_a_pisa_index_with_pisas_top_k(tmp_path, setup):
    from pyterrier_pisa import PisaIndex

    from benchmarks.peers import PeerData
    from benchmarks.pisa_ciff import pisa_to_ciff

    ix, vectors, want = setup
    data = PeerData(ix)

    def docs():
        for first, last, ip, terms, imp in data.doc_batches(2000):
            ids = ix.doc_ids(np.arange(first, last))
            tl, il, ipl = terms.tolist(), imp.tolist(), ip.tolist()
            for i in range(last - first):
                a, b = ipl[i], ipl[i + 1]
                yield {"docno": ids[i], "toks": {ix.terms[t]: float(w) for t, w in zip(tl[a:b], il[a:b])}}

    # PISA's own indexer (pyterrier-pisa's toks indexer, impacts kept as they are)
    PisaIndex(str(tmp_path / "pisa"), stemmer="none", threads=1).toks_indexer(scale=1.0).index(docs())
    pisa = _pisa_search(tmp_path / "pisa", vectors)
    _same_top_k(pisa, want)   # PISA agrees with lsr on the original index
    pisa_to_ciff(tmp_path / "pisa", tmp_path / "pisa.ciff")
    imported = lsr.ciff.import_index(tmp_path / "pisa.ciff", tmp_path / "lsr-from-pisa")
    assert imported.num_documents == ix.num_documents and imported.num_postings == ix.num_postings
    res = lsr.Searcher(imported, algorithm="exhaustive").search_batch(vectors, k=K)
    got = {qid: [(h.doc_id, float(h.score)) for h in res if h.query_id == qid] for qid, _ in vectors}
    _same_top_k(got, pisa)
