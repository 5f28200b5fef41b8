"""Search returns exactly the brute-force top-k (same docs, same scores, ties by doc id)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lsr
from lsr.config import IndexConfig, QuantizationConfig
from lsr.errors import InputError

from brute import SEARCHERS, doc_matrix, query_vector, topk

# few distinct weights -> many ties; 0 weights -> dropped postings
WEIGHTS = st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.0, 1.5, 2.0, 2.75, 3.3])
TERMS = [f"t{i}" for i in range(12)]


@st.composite
def collections(draw):
    n_docs = draw(st.integers(1, 30))
    docs = []
    for _ in range(n_docs):
        terms = draw(st.lists(st.sampled_from(TERMS), max_size=8, unique=True))
        docs.append({t: draw(WEIGHTS) for t in terms})
    if not any(w > 0 for d in docs for w in d.values()):
        docs[0] = {"t0": 1.0}
    queries = draw(st.lists(
        st.dictionaries(st.sampled_from(TERMS + ["unknown"]), st.sampled_from([0.3, 1.0, 2.0, 0.05, 1.7]),
                        min_size=1, max_size=6), min_size=1, max_size=5))
    method = draw(st.sampled_from(["auto", "max", "fixed", "float"]))
    bits = draw(st.sampled_from([8, 16]))
    range_docs = draw(st.sampled_from([1, 8, 16, 64, 256]))
    return docs, queries, method, bits, range_docs


def _build(tmp_path, docs, method, bits, name="ix", **kw):
    q = QuantizationConfig(method=method, bits=bits, scale=10.0 if method == "fixed" else None)
    out = tmp_path / name
    recs = [{"id": f"d{i}", "vector": v} for i, v in enumerate(docs)]
    return lsr.build_index(recs, out, IndexConfig(quantization=q, **kw), overwrite=True)


def _check(ix, docs, queries, method, bits, ks):
    vocab = sorted({t for d in docs for t in d} | {"unknown"})
    m = doc_matrix(docs, vocab, method, bits, 10.0 if method == "fixed" else None)
    for kw in SEARCHERS:
        _check_algorithm(lsr.Searcher(ix, **kw), ix, m, vocab, docs, queries, ks)


def _check_algorithm(s, ix, m, vocab, docs, queries, ks):
    for k in ks:
        batch = s.search_batch({f"q{j}": q for j, q in enumerate(queries)}, k=k).by_query()
        for j, q in enumerate(queries):
            exp_docs, exp_scores = topk(m, query_vector(q, vocab, ix.is_float), min(k, len(docs)))
            single = s.search(q, k=k, query_id=f"q{j}")
            for got in (list(single), batch.get(f"q{j}", [])):
                if ix.is_float:
                    # float32 sums in another order may differ in the last bit: near-ties may swap
                    assert len(got) == len(exp_docs)
                    np.testing.assert_allclose([h.score for h in got], exp_scores, rtol=1e-5)
                    exp_score_of = dict(zip((f"d{i}" for i in exp_docs), exp_scores))
                    for h, e in zip(got, exp_scores):
                        assert h.doc_id in exp_score_of or abs(h.score - exp_scores[-1]) <= 1e-5 * e
                        assert abs(exp_score_of.get(h.doc_id, h.score) - h.score) <= 1e-5 * max(e, 1e-30)
                else:
                    assert [h.doc_id for h in got] == [f"d{i}" for i in exp_docs]
                    assert [h.score for h in got] == exp_scores.tolist()
                assert [h.rank for h in got] == list(range(1, len(got) + 1))


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(collections())
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_random_collections_match_brute_force(tmp_path, data):
    docs, queries, method, bits, range_docs = data
    ix = _build(tmp_path, docs, method, bits, range_block_docs=range_docs)
    _check(ix, docs, queries, method, bits, ks=[1, 3, len(docs), len(docs) + 5])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_seeded_larger_collections_with_spilled_runs(tmp_path):
    rng = np.random.default_rng(7)
    vocab = [f"w{i}" for i in range(300)]
    p = 1.0 / np.arange(1, 301) ** 0.9
    p /= p.sum()
    docs = []
    for _ in range(1500):
        n = rng.integers(0, 40)
        terms = rng.choice(300, size=n, replace=False, p=p)
        docs.append({vocab[t]: float(np.round(rng.gamma(1.0, 0.6), 2)) for t in terms})
    queries = [{vocab[t]: float(rng.uniform(0.1, 2.0)) for t in rng.choice(300, size=rng.integers(1, 20),
                                                                             replace=False, p=p)}
               for _ in range(25)]
    queries.append({"w0": 1.0, "w0 ": 1.0})  # unknown variant of a known term
    # run_postings=1000 forces ~20 spilled runs and a real merge
    ix = _build(tmp_path, docs, "auto", 8, run_postings=1000, block_size=8, range_block_docs=16)
    assert ix.num_documents == 1500
    _check(ix, docs, queries, "auto", 8, ks=[1, 10, 100, 1000, 1500])
    ix16 = _build(tmp_path, docs, "max", 16, name="ix16")
    _check(ix16, docs, queries, "max", 16, ks=[10, 1000])


def test_single_document_and_k_larger_than_matches(tmp_path):
    ix = _build(tmp_path, [{"a": 1.0, "b": 2.0}], "auto", 8)
    s = lsr.Searcher(ix)
    r = s.search({"a": 1.0}, k=1000)
    assert [(h.doc_id, h.score, h.rank) for h in r] == [("d0", 1, 1)]
    with pytest.warns(UserWarning):
        assert len(s.search({"c": 1.0}, k=5)) == 0


def test_unknown_terms_are_ignored_with_a_warning(tmp_path):
    ix = _build(tmp_path, [{"a": 1.0}, {"b": 2.0}], "auto", 8)
    s = lsr.Searcher(ix)
    with pytest.warns(UserWarning, match="1 query term\\(s\\) unknown"):
        r = s.search({"a": 1.0, "zzz": 3.0}, k=10)
    assert [h.doc_id for h in r] == ["d0"]
    with pytest.warns(UserWarning, match="unknown"):
        assert len(s.search({"zzz": 1.0})) == 0


def test_ties_are_broken_by_collection_order(tmp_path):
    docs = [{"a": 1.0} for _ in range(50)]
    ix = _build(tmp_path, docs, "auto", 8)
    r = lsr.Searcher(ix).search({"a": 1}, k=7)
    assert [h.doc_id for h in r] == [f"d{i}" for i in range(7)]
    assert set(r.scores.tolist()) == {1}


def test_integer_input_is_kept_as_is(tmp_path):
    ix = _build(tmp_path, [{"a": 3, "b": 255}, {"a": 7}], "auto", 8)
    assert ix.quantization["method"] == "identity"
    assert ix.quantization["scale"] == 1.0
    docs, imps = ix.postings("a")
    assert docs.tolist() == [0, 1] and imps.tolist() == [3, 7]


def test_huge_query_weights_switch_to_64_bit_scores(tmp_path):
    ix = _build(tmp_path, [{f"t{i}": 255 for i in range(40)}, {"t0": 1}], "auto", 8)
    q = {f"t{i}": 2_000_000_000 for i in range(40)}
    p = lsr.Searcher(ix).prepare([("q", q)])
    assert p.score_dtype == np.int64
    r = lsr.Searcher(ix).search(q, k=2)
    assert r.scores.tolist() == [40 * 255 * 2_000_000_000, 2_000_000_000]


def test_locality_is_measured_and_blockmax_runs_without_it(tmp_path):
    rng = np.random.default_rng(1)
    vocab = [f"w{i}" for i in range(200)]
    random_docs = [{vocab[t]: 1.0 for t in rng.choice(200, 20, replace=False)} for _ in range(2000)]
    # the same kind of documents, but neighbours share their terms (topics in runs of 64 documents)
    local_docs = []
    for topic in range(2000 // 64 + 1):
        pool = rng.choice(200, 30, replace=False)
        local_docs += [{vocab[t]: 1.0 for t in rng.choice(pool, 20, replace=False)} for _ in range(64)]
    local_docs = local_docs[:2000]
    ix_random = _build(tmp_path, random_docs, "auto", 8, name="r")
    ix_local = _build(tmp_path, local_docs, "auto", 8, name="l")
    info_r, info_l = ix_random.manifest["range_blocks"], ix_local.manifest["range_blocks"]
    assert info_r["locality"] > 0.95 and info_l["locality"] < 0.5
    # pair coding pays where neighbouring documents share terms
    assert ix_local.manifest["counts"]["range_pairs"] < ix_random.manifest["counts"]["range_pairs"] / 2
    assert ix_local.size_bytes() < ix_random.size_bytes()
    q = {"w1": 1.0, "w2": 2.0}
    for ix in (ix_random, ix_local):
        want = list(lsr.Searcher(ix, algorithm="exhaustive").search(q, k=20))
        for algo in ("auto", "blockmax"):
            assert list(lsr.Searcher(ix, algorithm=algo).search(q, k=20)) == want


def test_bp_reordering_keeps_every_answer_and_renumbers_ids(tmp_path):
    # topics in shuffled order: BP must gather them (fewer range pairs), and every
    # processor must still return the brute-force top k under the external ids
    rng = np.random.default_rng(4)
    vocab = [f"w{i}" for i in range(300)]
    docs = []
    for topic in range(40):
        pool = rng.choice(300, 25, replace=False)
        docs += [{vocab[t]: float(rng.integers(1, 9)) for t in rng.choice(pool, 12, replace=False)}
                 for _ in range(50)]
    docs = [docs[i] for i in rng.permutation(len(docs))]
    plain = _build(tmp_path, docs, "auto", 8, name="plain")
    bp = _build(tmp_path, docs, "auto", 8, name="bp", reorder="bp")
    info = bp.manifest["reorder"]
    assert info["method"] == "bp" and info["log_gap_after"] < 0.85 * info["log_gap_before"]
    assert bp.manifest["counts"]["range_pairs"] < 0.8 * plain.manifest["counts"]["range_pairs"]
    assert sorted(bp.doc_ids(np.arange(len(docs)))) == sorted(f"d{i}" for i in range(len(docs)))
    assert bp.doc_ids(np.arange(len(docs))) != plain.doc_ids(np.arange(len(docs)))
    # the postings of a term name the same external documents
    for term in vocab[:20]:
        a, b = plain.postings(term), bp.postings(term)
        assert sorted(zip(plain.doc_ids(a[0]), a[1].tolist())) == sorted(zip(bp.doc_ids(b[0]), b[1].tolist()))
    queries = [{vocab[t]: float(rng.integers(1, 5)) for t in rng.choice(300, 6, replace=False)} for _ in range(8)]
    qvocab = sorted({t for d in docs for t in d})
    m = doc_matrix(docs, qvocab, "auto", 8, None)
    internal = {d: i for i, d in enumerate(bp.doc_ids(np.arange(len(docs))))}
    for kw in SEARCHERS:
        s = lsr.Searcher(bp, **kw)
        for k in (1, 10, 100):
            for q in queries:
                qv = query_vector(q, qvocab, False)
                exact = m @ qv
                _, exp_scores = topk(m, qv, k)
                got = list(s.search(q, k=k))
                # the brute-force scores; each hit's own exact score; ties in the new doc id order
                assert [h.score for h in got] == exp_scores.tolist()
                assert all(exact[int(h.doc_id[1:])] == h.score for h in got)
                keys = [(-h.score, internal[h.doc_id]) for h in got]
                assert keys == sorted(keys)


def test_huge_queries_take_the_exhaustive_path_with_the_same_answer(tmp_path):
    # more query terms than the block-max traversal's pair entries can name (MAX_TERMS)
    from lsr.index.kernels.blockmax import MAX_TERMS

    rng = np.random.default_rng(8)
    n_terms = MAX_TERMS + 100
    vocab = [f"t{i}" for i in range(n_terms)]
    docs = [{vocab[t]: float(rng.integers(1, 9)) for t in rng.choice(n_terms, 80, replace=False)}
            for _ in range(300)]
    ix = _build(tmp_path, docs, "auto", 8)
    q = {t: float(rng.integers(1, 5)) for t in vocab}
    want = list(lsr.Searcher(ix, algorithm="exhaustive").search(q, k=50, query_id="a"))
    assert len(want) == 50
    for algo in ("blockmax", "auto"):
        s = lsr.Searcher(ix, algorithm=algo, max_k=10**6, max_k_power=0.0, locality_ratio=1e9, pair_ratio=1e9,
                         max_common=10**6)
        assert list(s.search(q, k=50, query_id="a")) == want
        batch = s.search_batch([("a", q), ("b", {"t1": 1.0})], k=50).by_query()
        assert batch["a"] == want


def test_planner_max_k_shrinks_on_small_collections(tmp_path):
    """``max_k`` holds from ``max_k_docs`` documents on and shrinks as ``(N / max_k_docs) ** max_k_power``
    below (never grows above); on a small collection the default planner scores every k exhaustively,
    with the same hits."""
    from lsr.index.search import scaled_max_k

    assert scaled_max_k(20, 300_000, 300_000, 1.5) == 20
    assert scaled_max_k(20, 8_800_000, 300_000, 1.5) == 20          # not extrapolated upwards
    assert scaled_max_k(20, 150_000, 300_000, 1.5) == 7             # 20 * 0.5 ** 1.5 = 7.07
    assert scaled_max_k(20, 150_000, 300_000, 1.0) == 10
    assert scaled_max_k(20, 37_500, 300_000, 1.5) == 0              # 0.88
    assert scaled_max_k(20, 1_000, 300_000, 0.0) == 20
    rng = np.random.default_rng(6)
    docs = [{f"t{j}": float(rng.integers(1, 30)) / 10 for j in rng.choice(20, 6, replace=False)} for _ in range(400)]
    ix = _build(tmp_path, docs, "max", 8)
    auto = lsr.Searcher(ix)
    assert auto.max_k == 0 and auto.planner_settings().max_k == 0
    assert [auto.processor(k).name for k in (1, 10)] == ["exhaustive", "exhaustive"]
    assert lsr.Searcher(ix, max_k_docs=400).max_k == 20
    assert lsr.Searcher(ix, max_k_docs=800, max_k_power=1.0).max_k == 10
    assert lsr.Searcher(ix, max_k_docs=800, max_k_power=1.0).planner_settings().max_k == 10
    assert lsr.Searcher(ix, max_k_docs=800, max_k_power=1.0).processor(11).name == "exhaustive"
    assert lsr.Searcher(ix, max_k_docs=800, max_k_power=1.0).processor(10).name == "auto"
    exh = lsr.Searcher(ix, algorithm="exhaustive")
    forced = lsr.Searcher(ix, max_k_power=0.0, locality_ratio=1e9, pair_ratio=1e9)
    for q in ({"t1": 2.0, "t3": 1.0}, {"t0": 1.0, "t5": 3.0, "t9": 0.5}):
        for k in (1, 10):
            assert list(auto.search(q, k=k)) == list(exh.search(q, k=k)) == list(forced.search(q, k=k))
    for bad in (dict(max_k_docs=0), dict(max_k_docs=1.5), dict(max_k_docs=True), dict(max_k_power=-1.0),
                dict(max_k_power=float("nan")), dict(max_k_power=float("inf"))):
        with pytest.raises(InputError, match="max_k_"):
            lsr.SearchConfig.from_dict(bad)
        with pytest.raises(InputError, match="max_k_"):
            lsr.Searcher(ix, **bad)


def test_dense_rows_hold_the_postings_of_the_frequent_terms(tmp_path):
    """Index.dense_rows: the terms in at least the given share of the documents, each row its postings
    by doc id and row_max their range-block maxima; made once per setting; none for float impacts."""
    rng = np.random.default_rng(7)
    docs = [{f"t{j}": float(rng.integers(1, 40)) / 10 for j in range(40) if rng.random() < 0.6 ** (j / 3 + 1)}
            or {"t0": 1.0} for _ in range(500)]
    ix = _build(tmp_path, docs, "max", 8, range_block_docs=16)
    df = np.diff(ix.term_offsets)
    slot, rows, row_max = ix.dense_rows(0.1, 1 << 30)
    want = np.flatnonzero(df >= 0.1 * ix.num_documents)
    assert 0 < len(want) < ix.num_terms
    np.testing.assert_array_equal(np.flatnonzero(slot >= 0), want)
    for t in want:
        d, imp = ix.postings(ix.terms[t])
        row = np.zeros(ix.num_documents, imp.dtype)
        row[d] = imp
        np.testing.assert_array_equal(rows[slot[t]], row)
        pad = np.zeros(-(-ix.num_documents // 16) * 16, imp.dtype)
        pad[:ix.num_documents] = row
        np.testing.assert_array_equal(row_max[slot[t]], pad.reshape(-1, 16).max(1))
    assert ix.dense_rows(0.1, 1 << 30)[1] is rows                              # kept with the index
    assert len(ix.dense_rows(0.0, 1 << 30)[1]) == 0 and len(ix.dense_rows(0.1, 0)[1]) == 0
    assert (ix.dense_rows(0.0, 1 << 30)[0] == -1).all()
    fx = _build(tmp_path, docs, "float", 8, name="fx")
    assert len(fx.dense_rows(0.1, 1 << 30)[1]) == 0 and (fx.dense_rows(0.1, 1 << 30)[0] == -1).all()
    # the same hits with and without the rows, through every term-at-a-time processor
    queries = [{ix.terms[j]: 1.0 + j % 3 for j in rng.choice(ix.num_terms, 6, replace=False)} for _ in range(20)]
    for algo in ("exhaustive", "blockmax", "filtered", "auto"):
        on, off = lsr.Searcher(ix, algorithm=algo, dense_df=0.1), lsr.Searcher(ix, algorithm=algo, dense_df=0.0)
        for k in (1, 10, 100):
            for q in queries:
                assert list(on.search(q, k=k)) == list(off.search(q, k=k))


def test_planner_above_max_k_runs_the_exhaustive_scorer(tmp_path):
    """``auto`` above ``max_k`` is exhaustive scoring, decided by k before the planner runs (unless
    ``large_k`` is "filtered"); the hits are the same at every k."""
    rng = np.random.default_rng(5)
    docs = [{f"t{j}": float(rng.integers(1, 30)) / 10 for j in rng.choice(20, 6, replace=False)} for _ in range(400)]
    ix = _build(tmp_path, docs, "max", 8)
    auto = lsr.Searcher(ix, max_k=20, max_k_power=0.0)   # max_k at every collection size
    assert [auto.processor(k).name for k in (1, 20, 21, 1000)] == ["auto", "auto", "exhaustive", "exhaustive"]
    assert lsr.Searcher(ix, max_k=20, max_k_power=0.0, large_k="filtered").processor(1000).name == "auto"
    assert lsr.Searcher(ix, algorithm="blockmax", max_k=20).processor(1000).name == "blockmax"
    exh = lsr.Searcher(ix, algorithm="exhaustive")
    # the searchers of one index share their single-query work buffers, one set a thread
    assert auto._buffer("acc", 400, np.int32) is exh._buffer("acc", 400, np.int32)
    assert auto._buffer("acc", 400, np.int64) is not exh._buffer("acc", 400, np.int32)
    q = {"t1": 2.0, "t3": 1.0, "t7": 0.5}
    for k in (5, 21, 300):
        assert list(auto.search(q, k=k)) == list(exh.search(q, k=k))
        assert auto.search_batch([("a", q)], k=k).by_query() == exh.search_batch([("a", q)], k=k).by_query()
    # the common-term rule's document frequency: common_df of the 400 documents, rounded up, at least 1
    assert auto.planner_settings()[3:5] == (25, 9)   # 0.0625 * 400
    assert lsr.Searcher(ix, common_df=0.3, max_common=2).planner_settings()[3:5] == (120, 2)
    assert lsr.Searcher(ix, common_df=0.3001).planner_settings()[3] == 121
    assert lsr.Searcher(ix, common_df=1e-9).planner_settings()[3] == 1
    for mc in (0, 1, 10):
        s = lsr.Searcher(ix, common_df=0.1, max_common=mc, max_k_power=0.0)   # the traversal tried at k <= 20
        for k in (5, 20):
            assert list(s.search(q, k=k)) == list(exh.search(q, k=k))
