"""Doc id reordering by recursive graph bisection: kernels against references, validity, determinism, quality."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from lsr.index.kernels.reorder import (apply_order, apply_order_ref, bp_order, forward_from_inverted,
                                       forward_from_inverted_ref, log_gap_cost, log_gap_cost_ref, move_gains,
                                       move_gains_ref, n_bp_levels, range_pairs, range_pairs_ref)


# --------------------------------------------------------------------------- helpers
def _forward(rng, n_docs, n_terms, max_len=20, empty_every=5):
    """Random forward index (distinct ascending terms per doc; some documents empty)."""
    lens = rng.integers(0, max_len + 1, n_docs) if n_docs else np.zeros(0, np.int64)
    lens = np.minimum(lens, n_terms)
    if empty_every:
        lens[::empty_every] = 0
    offs = np.zeros(n_docs + 1, np.int64)
    np.cumsum(lens, out=offs[1:])
    parts = [np.sort(rng.choice(n_terms, int(k), replace=False)) for k in lens]
    terms = np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, np.int32)
    return offs, terms


def _inverted(rng, n_docs, n_terms, dtype=np.uint8):
    """Random inverted index with empty documents and terms without postings."""
    # only every other term id is used, so half the terms have no postings
    offs, terms = _forward(rng, n_docs, max(n_terms // 2, 1))
    terms = terms * 2
    term_offsets, docs = forward_from_inverted_ref(offs, terms, n_terms)  # the transpose of a CSR is a CSR
    if dtype == np.float32:
        impacts = rng.random(len(docs)).astype(np.float32)
    else:
        impacts = rng.integers(1, 256, len(docs)).astype(dtype)
    return term_offsets, docs, impacts


def _is_perm(order, n):
    return order.dtype == np.int32 and order.shape == (n,) and np.array_equal(np.sort(order), np.arange(n))


# --------------------------------------------------------------------------- transposes and measures
@pytest.mark.parametrize("n_docs,n_terms", [(0, 5), (1, 3), (37, 11), (500, 120)])
def test_forward_from_inverted_matches_reference(n_docs, n_terms):
    rng = np.random.default_rng(n_docs)
    term_offsets, docs, _ = _inverted(rng, n_docs, n_terms)
    got = forward_from_inverted(term_offsets, docs, n_docs)
    want = forward_from_inverted_ref(term_offsets, docs, n_docs)
    assert got[0].dtype == np.int64 and got[1].dtype == np.int32
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    if n_docs > 5:
        assert np.any(np.diff(got[0]) == 0)   # empty documents present
        assert np.any(np.diff(term_offsets) == 0)   # terms without postings present
    # transposing twice gives the inverted index back
    back = forward_from_inverted(got[0], got[1], n_terms)
    np.testing.assert_array_equal(back[0], term_offsets)
    np.testing.assert_array_equal(back[1], docs)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("n_docs,n_terms", [(0, 4), (1, 3), (53, 17), (700, 150)])
def test_apply_order_matches_reference(n_docs, n_terms, dtype):
    rng = np.random.default_rng(n_docs + 1)
    term_offsets, docs, impacts = _inverted(rng, n_docs, n_terms, dtype)
    order = rng.permutation(n_docs).astype(np.int32)
    nd, ni = apply_order(term_offsets, docs, impacts, order)
    rd, ri = apply_order_ref(term_offsets, docs, impacts, order)
    assert nd.dtype == np.int32 and ni.dtype == impacts.dtype
    np.testing.assert_array_equal(nd, rd)
    np.testing.assert_array_equal(ni, ri)
    # ascending within each term, and the (old doc, impact) pairs are kept
    for t in range(n_terms):
        s, e = term_offsets[t], term_offsets[t + 1]
        assert np.all(np.diff(nd[s:e]) > 0)
        assert sorted(zip(order[nd[s:e]].tolist(), ni[s:e].tolist())) == list(zip(docs[s:e].tolist(),
                                                                                   impacts[s:e].tolist()))
    # identity order leaves the index unchanged
    idd, idi = apply_order(term_offsets, docs, impacts, np.arange(n_docs, dtype=np.int32))
    np.testing.assert_array_equal(idd, docs)
    np.testing.assert_array_equal(idi, impacts)


def test_apply_order_rejects_non_permutation():
    rng = np.random.default_rng(3)
    term_offsets, docs, impacts = _inverted(rng, 20, 10)
    with pytest.raises(ValueError):
        apply_order(term_offsets, docs, impacts, np.zeros(20, np.int32))


@pytest.mark.parametrize("n_docs", [0, 1, 40, 600])
def test_measures_match_reference(n_docs):
    rng = np.random.default_rng(n_docs + 7)
    term_offsets, docs, _ = _inverted(rng, n_docs, 60)
    assert log_gap_cost(term_offsets, docs) == pytest.approx(log_gap_cost_ref(term_offsets, docs), rel=1e-12)
    for shift in (0, 2, 4):
        assert range_pairs(term_offsets, docs, shift) == range_pairs_ref(term_offsets, docs, shift)
    assert range_pairs(term_offsets, docs, 0) == len(docs)


def test_log_gap_cost_by_hand():
    # term 0: docs 0, 1, 5 -> gaps 1, 1, 4 -> log2(2) + log2(2) + log2(5); term 1: none; term 2: doc 2 -> gap 3
    term_offsets = np.array([0, 3, 3, 4], np.int64)
    docs = np.array([0, 1, 5, 2], np.int32)
    assert log_gap_cost(term_offsets, docs) == pytest.approx((1 + 1 + np.log2(5) + 2) / 4)
    assert range_pairs(term_offsets, docs, 2) == 3   # (0, 0), (0, 1), (2, 0)


# --------------------------------------------------------------------------- gains
@pytest.mark.parametrize("lo,mid,hi", [(0, 30, 61), (13, 40, 67), (5, 6, 7)])
def test_move_gains_match_reference(lo, mid, hi):
    rng = np.random.default_rng(hi)
    n_docs, n_terms = 80, 25
    offs, terms = _forward(rng, n_docs, n_terms, max_len=12)
    perm = rng.permutation(n_docs).astype(np.int32)
    got = move_gains(offs, terms, n_terms, perm, lo, mid, hi)
    want = move_gains_ref(offs, terms, n_terms, perm, lo, mid, hi)
    assert got.shape == (hi - lo,)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-9)
    if hi - lo > 10:
        assert np.any(got != 0)


# --------------------------------------------------------------------------- bp_order
@pytest.mark.parametrize("n_docs", [0, 1, 2, 17, 1000])
def test_bp_order_is_permutation(n_docs):
    rng = np.random.default_rng(n_docs + 11)
    offs, terms = _forward(rng, n_docs, 90, max_len=25, empty_every=4)
    calls = []
    order = bp_order(offs, terms, 90, min_partition=4, progress=lambda a, b: calls.append((a, b)))
    assert _is_perm(order, n_docs)
    n_levels = n_bp_levels(n_docs, None, 4)
    assert calls == [(i, n_levels) for i in range(n_levels + 1)]
    if n_docs == 1000:
        assert n_levels == 8
        assert not np.array_equal(order, np.arange(n_docs))
    # default parameters and a depth limit give permutations too
    assert _is_perm(bp_order(offs, terms, 90), n_docs)
    assert _is_perm(bp_order(offs, terms, 90, depth=2, iterations=3), n_docs)


def test_bp_order_depth_zero_and_no_terms():
    offs = np.zeros(51, np.int64)
    order = bp_order(offs, np.zeros(0, np.int32), 0, min_partition=2)
    np.testing.assert_array_equal(order, np.arange(50))   # nothing to gain: leaves keep the input order
    rng = np.random.default_rng(5)
    offs, terms = _forward(rng, 100, 30)
    np.testing.assert_array_equal(bp_order(offs, terms, 30, depth=0), np.arange(100))


def test_bp_order_rejects_bad_input():
    offs = np.array([0, 2, 3], np.int64)
    with pytest.raises(ValueError):
        bp_order(offs, np.array([0, 1, 7], np.int32), 5)      # term id >= n_terms
    with pytest.raises(ValueError):
        bp_order(offs, np.array([0, 1], np.int32), 5)         # offsets do not end at nnz


def test_bp_order_deterministic_across_thread_counts():
    rng = np.random.default_rng(42)
    offs, terms = _forward(rng, 3000, 400, max_len=30)
    before = numba.get_num_threads()
    many = min(2, numba.config.NUMBA_NUM_THREADS)
    try:
        numba.set_num_threads(many)
        a = bp_order(offs, terms, 400, min_partition=8)
        b = bp_order(offs, terms, 400, min_partition=8)
        numba.set_num_threads(1)
        c = bp_order(offs, terms, 400, min_partition=8)
    finally:
        numba.set_num_threads(before)
    assert _is_perm(a, 3000)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_parallel_and_per_worker_node_paths_agree():
    """The big-node path (parallel gains) and the per-worker path give the same node."""
    from lsr.index.kernels import reorder as r
    rng = np.random.default_rng(9)
    n_docs, n_terms = 900, 200
    offs, terms = _forward(rng, n_docs, n_terms, max_len=30)
    D = r.gain_table(n_docs)
    lo, hi = np.array([0, 450], np.int64), np.array([450, 900], np.int64)
    start = rng.permutation(n_docs).astype(np.int32)
    out = []
    for parallel in (True, False):
        perm = start.copy()
        sc = [np.zeros((2, n_terms), np.int32), np.zeros((2, n_terms), np.int32), np.zeros((2, n_terms)),
              np.zeros((2, n_terms)), np.empty((2, n_terms), np.int32)]
        gains = np.empty(n_docs)
        if parallel:
            for k in range(2):
                r._bisect_node_parallel((offs, terms), perm, lo[k], hi[k], 10, D, tuple(a[0] for a in sc), gains)
        else:
            r._bisect_nodes((offs, terms), perm, lo, hi, 10, D, tuple(sc), gains)
        assert all(not a.any() for a in sc[:2])   # degree scratch is left cleared
        out.append(perm)
    np.testing.assert_array_equal(out[0], out[1])
    assert _is_perm(out[0], n_docs) and not np.array_equal(out[0], np.sort(start))


# --------------------------------------------------------------------------- quality
def _topic_collection(seed=0, n_docs=4000, n_topics=40, vocab=3000, n_shared=100):
    """Docs of n_topics topics: each topic has its own Zipf distribution over a random slice of the
    vocabulary (slices overlap), and every doc also draws shared frequent terms."""
    rng = np.random.default_rng(seed)
    n_terms = vocab + n_shared
    topic_vocab = [rng.choice(vocab, 150, replace=False) for _ in range(n_topics)]
    zipf = 1.0 / np.arange(1, 151) ** 0.8
    zipf /= zipf.sum()
    shared_p = 1.0 / np.arange(1, n_shared + 1)
    shared_p /= shared_p.sum()
    topics = rng.integers(0, n_topics, n_docs)
    docs = []
    for k in topics:
        own = rng.choice(topic_vocab[k], int(rng.integers(10, 30)), replace=False, p=zipf)
        shared = vocab + rng.choice(n_shared, int(rng.integers(3, 10)), replace=False, p=shared_p)
        docs.append(np.unique(np.concatenate([own, shared])).astype(np.int32))
    return docs, topics, n_terms


def _index_of(docs_in_order, n_terms):
    offs = np.zeros(len(docs_in_order) + 1, np.int64)
    np.cumsum([len(d) for d in docs_in_order], out=offs[1:])
    terms = np.concatenate(docs_in_order).astype(np.int32)
    term_offsets, postings = forward_from_inverted(offs, terms, n_terms)
    return offs, terms, term_offsets, postings


def _measures(term_offsets, postings):
    return log_gap_cost(term_offsets, postings), range_pairs(term_offsets, postings, 4)


def test_bp_clusters_a_shuffled_topic_collection():
    docs, topics, n_terms = _topic_collection()
    shuffled = np.random.default_rng(1).permutation(len(docs))
    offs, terms, term_offsets, postings = _index_of([docs[i] for i in shuffled], n_terms)
    cost0, pairs0 = _measures(term_offsets, postings)
    order = bp_order(offs, terms, n_terms)
    assert _is_perm(order, len(docs))
    new_docs, _ = apply_order(term_offsets, postings, np.ones(len(postings), np.uint8), order)
    cost1, pairs1 = _measures(term_offsets, new_docs)
    assert cost1 < 0.85 * cost0, (cost0, cost1)
    assert pairs1 < 0.9 * pairs0, (pairs0, pairs1)
    # neighbours in the new order mostly share a topic
    t = topics[shuffled][order]
    assert np.mean(t[1:] == t[:-1]) > 0.5


def test_bp_keeps_a_clustered_order_good():
    docs, topics, n_terms = _topic_collection(seed=2)
    clustered = np.argsort(topics, kind="stable")
    offs, terms, term_offsets, postings = _index_of([docs[i] for i in clustered], n_terms)
    cost0, pairs0 = _measures(term_offsets, postings)
    order = bp_order(offs, terms, n_terms)
    new_docs, _ = apply_order(term_offsets, postings, np.ones(len(postings), np.uint8), order)
    cost1, pairs1 = _measures(term_offsets, new_docs)
    assert cost1 < 1.05 * cost0, (cost0, cost1)
    assert pairs1 < 1.05 * pairs0, (pairs0, pairs1)
