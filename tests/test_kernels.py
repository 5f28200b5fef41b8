"""Each Numba kernel against its plain-NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

from lsr.index.kernels.blockmax import N_BUCKETS
from lsr.index.kernels.build import (block_maxima, block_maxima_ref, n_blocks_ref, quantize_ref, sort_run,
                                     sort_run_ref)
from lsr.index.kernels.bundles import (AutoWork, DocArrays, FilterBuffers, IndexArrays, PlannerSettings, QueryBatch,
                                       RangeBuffers)
from lsr.index.kernels.docids import gather_ids, gather_ids_ref
from lsr.index.kernels.exhaustive import exhaustive_batch, exhaustive_one, exhaustive_ref
from lsr.index.kernels.filtered import HIST_BITS
from lsr.index.kernels.postings import decode_docs, decode_ref, encode, encode_ref


def _postings(rng, n_terms=50, n_docs=400, per_doc=12, dtype=np.uint8):
    terms, docs = [], []
    for d in range(n_docs):
        t = rng.choice(n_terms, size=rng.integers(0, per_doc), replace=False)
        terms.extend(t.tolist()); docs.extend([d] * len(t))
    terms = np.asarray(terms, np.int32); docs = np.asarray(docs, np.int32)
    if dtype == np.float32:
        imp = rng.random(len(terms)).astype(np.float32) + 0.01
    else:
        imp = rng.integers(1, np.iinfo(dtype).max + 1, len(terms)).astype(dtype)
    counts, sdocs, simp = sort_run_ref(terms, docs, imp.astype(np.float32), n_terms)
    offs = np.zeros(n_terms + 1, np.int64); np.cumsum(counts, out=offs[1:])
    order = np.argsort(terms, kind="stable")
    return offs, sdocs, imp[order], n_docs


def _term_max(offs, imp):
    return np.array([imp[a:b].max() if b > a else 0 for a, b in zip(offs[:-1], offs[1:])], imp.dtype)


def _arrays(offs, docs, imp, shift, n_docs, every=0):
    """The term-at-a-time kernels' index bundle for pair-coded doc ids, with a dense row for every
    ``every``-th term (:func:`_dense`)."""
    ro, rm, code_offs, codes, low = encode(offs, docs, imp, shift)
    return IndexArrays(offs, ro, rm, code_offs, codes, low, imp, shift, n_docs, _term_max(offs, imp),
                       *_dense(offs, docs, imp, shift, n_docs, every))


def _batch(queries, weights):
    q_offs = np.zeros(len(queries) + 1, np.int64); np.cumsum([len(q) for q in queries], out=q_offs[1:])
    return QueryBatch(q_offs, np.concatenate(queries), np.concatenate(weights))


def _dense(offs, docs, imp, shift, n_docs, every=3):
    """(slot, rows, row_max) with a dense row for every ``every``-th term that has postings (integer
    impacts; float ones get none), checked against the NumPy reference; ``every=0``: none."""
    from lsr.index.kernels.dense import dense_rows_ref, fill_dense_rows, no_dense

    n_terms = len(offs) - 1
    n_blocks = (n_docs + (1 << shift) - 1) >> shift
    slot, rows, row_max = no_dense(n_terms, n_docs, n_blocks, imp.dtype)
    if every == 0 or imp.dtype.kind == "f":
        return slot, rows, row_max
    terms = np.flatnonzero(np.diff(offs) > 0)[::every].astype(np.int32)
    rows = np.zeros((len(terms), n_docs), imp.dtype)
    row_max = np.zeros((len(terms), n_blocks), imp.dtype)
    _, _, code_offs, codes, low = encode(offs, docs, imp, shift)
    fill_dense_rows(offs, code_offs, codes, low, imp, shift, terms, rows, row_max)
    want_rows, want_max = dense_rows_ref(offs, docs, imp, terms, n_docs, shift)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_array_equal(row_max, want_max)
    slot[terms] = np.arange(len(terms), dtype=np.int32)
    return slot, rows, row_max


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shift", [0, 3, 4, 6, 8])
def test_dense_rows_match_reference(dtype, shift):
    """fill_dense_rows against NumPy (inside _dense), including a last block cut short; every term's
    row holds its postings, and row_max their block maxima."""
    from lsr.index.kernels.dense import choose_dense_terms

    rng = np.random.default_rng(21 + shift)
    offs, docs, imp, n_docs = _postings(rng, n_terms=30, n_docs=1003, per_doc=20, dtype=dtype)
    slot, rows, row_max = _dense(offs, docs, imp, shift, n_docs, every=1)
    assert rows.shape == (len(np.flatnonzero(np.diff(offs))), n_docs)
    assert int(np.count_nonzero(rows)) == len(docs)
    # the terms chosen: in at least the share of documents, the most frequent first within the budget
    df = np.diff(offs)
    got = choose_dense_terms(offs, n_docs, 0.1, 10**9, 1)
    np.testing.assert_array_equal(got, np.flatnonzero(df >= 0.1 * n_docs))
    two = choose_dense_terms(offs, n_docs, 0.1, 2 * n_docs + n_docs - 1, 1)
    np.testing.assert_array_equal(two, np.sort(np.argsort(-df, kind="stable")[:2]))
    assert len(choose_dense_terms(offs, n_docs, 0.0, 10**9, 1)) == 0
    assert len(choose_dense_terms(offs, n_docs, 1.0, 10**9, 1)) == 0 or df.max() == n_docs


def test_sort_run_matches_reference():
    rng = np.random.default_rng(0)
    terms = rng.integers(0, 97, 5000).astype(np.int32)
    docs = np.sort(rng.integers(0, 800, 5000)).astype(np.int32)
    w = rng.random(5000).astype(np.float32)
    for a, b in zip(sort_run(terms, docs, w, 100), sort_run_ref(terms, docs, w, 100)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("block", [8, 64])
def test_block_maxima_matches_reference(dtype, block):
    rng = np.random.default_rng(1)
    offs, docs, imp, _ = _postings(rng, dtype=dtype)
    nb = n_blocks_ref(offs, block)
    bo = np.zeros(len(offs), np.int64); bm = np.zeros(nb, dtype); bl = np.zeros(nb, np.int32)
    tm = np.zeros(len(offs) - 1, dtype)
    block_maxima(offs, docs, imp, block, bo, bm, bl, tm)
    for a, b in zip((bo, bm, bl, tm), block_maxima_ref(offs, docs, imp, block)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("score", [np.int32, np.int64])
@pytest.mark.parametrize("shift", [0, 3, 4, 6])
def test_accumulator_selection_helpers_match_reference(score, shift):
    """topk.acc_block_maxima, listed_block_maxima, kth_lower_bound, doc_bound, offer_blocks,
    offer_listed, select_blocks and select_listed against NumPy (select_* by heap below HIST_SELECT_K,
    by histogram bins from it on: bins one score wide, bins of several scores, and crowded bins)."""
    from lsr.index.kernels.topk import (HIST_BITS, HIST_SELECT_K, acc_block_maxima, acc_block_maxima_ref,
                                        doc_bound, doc_bound_ref, kth_lower_bound, kth_lower_bound_ref,
                                        listed_block_maxima, offer_blocks, offer_listed, select_blocks,
                                        select_listed, topk_ref)

    rng = np.random.default_rng(11 + shift)
    nb_hist = 1 << HIST_BITS
    assert HIST_SELECT_K <= 1000
    for n_docs, top_scale, k in ((1, 5, 1), (1000, 50, 10), (4099, 10**6, 100), (5003, 3, 1000), (777, 0, 5),
                                 (20011, 10**6, HIST_SELECT_K), (20011, 10**6, 1000), (3000, 10**6, 5000),
                                 (30000, -1, 1000), (1000, 40, 999)):
        acc = np.zeros(n_docs, score)
        hit = rng.random(n_docs) < 0.3
        if top_scale >= 0:
            acc[hit] = rng.integers(0, top_scale + 1, hit.sum())
        else:   # crowded bins: most scores within a few hundred of each other, one far above them
            acc[hit] = rng.integers(500_000, 500_300, hit.sum())
            acc[n_docs // 2] = 10**7
        R = 1 << shift
        nb = (n_docs + R - 1) // R
        want_bmax, want_top = acc_block_maxima_ref(acc, shift)
        bmax = np.full(nb, -7, score)
        top = acc_block_maxima(acc, shift, bmax)
        np.testing.assert_array_equal(bmax, want_bmax)
        assert top == want_top
        hist = np.zeros(nb_hist, np.int64)
        theta = kth_lower_bound(bmax, k, np.int64(top), hist)
        assert theta == kth_lower_bound_ref(bmax, k, top, nb_hist) and not hist.any()
        # a lower bound of the k-th largest block maximum, and never below 1
        kth = np.sort(bmax)[::-1][k - 1] if nb >= k else 0
        assert 1 <= theta and (theta <= kth or kth < 1)
        # the document bound: between the block bound and the k-th largest score (when k are positive)
        dtheta = doc_bound(acc, shift, bmax, theta, np.int64(top), k, hist)
        assert dtheta == doc_bound_ref(acc, shift, theta, k, nb_hist) and not hist.any()
        kth_doc = np.sort(acc)[::-1][k - 1] if n_docs >= k else 0
        assert theta <= dtheta and (dtheta <= kth_doc or kth_doc < theta)
        if 0 < n_docs >= k and kth_doc >= theta and top - theta < nb_hist:   # bins one wide: exact
            assert dtheta == kth_doc
        # the selection over every block: the exact top k of the positive scores (ties by doc id)
        docs, scores = np.empty(k, np.int32), np.empty(k, score)
        size = offer_blocks(acc, shift, bmax, theta, k, docs, scores)
        want = topk_ref(acc, k)
        order = np.lexsort((docs[:size], -scores[:size]))
        np.testing.assert_array_equal(docs[:size][order], want)
        np.testing.assert_array_equal(scores[:size][order], acc[want])
        # the same, sorted, from select_blocks (from the block bound, and from the tighter doc bound)
        for bound in (theta, dtheta):
            docs[:], scores[:] = -1, -1
            size = select_blocks(acc, shift, bmax, bound, np.int64(top), k, hist, docs, scores)
            assert not hist.any()
            np.testing.assert_array_equal(docs[:size], want)
            np.testing.assert_array_equal(scores[:size], acc[want])
        # a list of blocks (ascending, the tail block included when it is drawn): their maxima, and
        # the top k of the documents in them
        for frac in (0.0, 0.5, 1.0):
            listed = np.flatnonzero(rng.random(nb) < frac).astype(np.int32)
            n = len(listed)
            blocks = np.concatenate([listed, np.full(3, -1, np.int32)])   # only the first n are read
            vals = np.full(n + 3, -7, score)
            top = listed_block_maxima(acc, shift, blocks, n, vals)
            np.testing.assert_array_equal(vals[:n], want_bmax[listed])
            assert (vals[n:] == -7).all() and top == (want_bmax[listed].max() if n else 0)
            theta = kth_lower_bound(vals[:n], k, np.int64(top), hist)
            assert theta == kth_lower_bound_ref(vals[:n], k, top, nb_hist)
            size = offer_listed(acc, shift, (blocks, vals, n), theta, k, docs, scores)
            in_listed = np.zeros(nb, bool)
            in_listed[listed] = True
            want = topk_ref(acc, k, in_listed[np.arange(n_docs) >> shift])
            order = np.lexsort((docs[:size], -scores[:size]))
            np.testing.assert_array_equal(docs[:size][order], want)
            np.testing.assert_array_equal(scores[:size][order], acc[want])
            size = select_listed(acc, shift, (blocks, vals, n), theta, np.int64(top), k, hist, docs, scores)
            assert not hist.any()
            np.testing.assert_array_equal(docs[:size], want)
            np.testing.assert_array_equal(scores[:size], acc[want])


def test_quantisation_rounds_half_up_and_clips():
    w = np.array([0.0, 0.004, 0.005, 0.015, 1.0, 2.55, 9.0], np.float32)
    q = quantize_ref(w, 100.0, 255)
    expected = np.minimum(np.floor(w.astype(np.float64) * 100 + 0.5), 255)
    np.testing.assert_array_equal(q, expected)
    assert q[-1] == 255 and q[0] == 0


@pytest.mark.parametrize("dtype,score", [(np.uint8, np.int32), (np.uint16, np.int64), (np.float32, np.float32)])
@pytest.mark.parametrize("shift", [0, 4, 8])
@pytest.mark.parametrize("every", [0, 3])
def test_exhaustive_kernels_match_reference(dtype, score, shift, every):
    rng = np.random.default_rng(2)
    offs, docs, imp, n_docs = _postings(rng, dtype=dtype)
    ix = _arrays(offs, docs, imp, shift, n_docs, every)
    queries = [rng.choice(50, size=rng.integers(1, 8), replace=False).astype(np.int32) for _ in range(20)]
    weights = [(rng.random(len(q)).astype(np.float32) if score == np.float32
                else rng.integers(1, 300, len(q)).astype(score)) for q in queries]
    q_offs = np.zeros(len(queries) + 1, np.int64); np.cumsum([len(q) for q in queries], out=q_offs[1:])
    q_terms = np.concatenate(queries); q_w = np.concatenate(weights).astype(score)
    for k in (1, 10, n_docs):
        out_d = np.empty((len(queries), k), np.int32); out_s = np.empty((len(queries), k), score)
        counts = np.zeros(len(queries), np.int64)
        exhaustive_batch(ix, QueryBatch(q_offs, q_terms, q_w), k, (), np.zeros((2, n_docs), score), out_d, out_s,
                         counts)
        acc = np.zeros(n_docs, score)
        for i, (qt, qw) in enumerate(zip(queries, weights)):
            ed, es = exhaustive_ref(offs, docs, imp, qt, qw.astype(score), n_docs, k, score)
            d1 = np.empty(k, np.int32); s1 = np.empty(k, score)
            n = exhaustive_one(ix, qt, qw.astype(score), k, (), acc, d1, s1)
            assert not acc.any()  # the accumulator is left clean
            np.testing.assert_array_equal(d1[:n], ed)
            np.testing.assert_array_equal(s1[:n], es)
            assert counts[i] == n
            np.testing.assert_array_equal(out_d[i, :n], ed)
            np.testing.assert_array_equal(out_s[i, :n], es)


@pytest.mark.parametrize("dtype,score", [(np.uint8, np.int32), (np.float32, np.float32)])
@pytest.mark.parametrize("shift", [0, 2, 3, 4, 5])
@pytest.mark.parametrize("every", [0, 2])
def test_exhaustive_long_lists_span_many_flat_chunks(dtype, score, shift, every):
    """Lists several times longer than FLAT_CHUNK, dense and sparse, through the flat scoring loop."""
    from lsr.index.kernels.exhaustive import FLAT_CHUNK

    rng = np.random.default_rng(11)
    n_docs = 6 * FLAT_CHUNK + 37
    terms, docs = [], []
    for t, density in enumerate((0.95, 0.6, 0.3, 0.05)):
        d = np.flatnonzero(rng.random(n_docs) < density).astype(np.int32)
        terms.append(np.full(len(d), t, np.int32)); docs.append(d)
    offs = np.zeros(5, np.int64); np.cumsum([len(d) for d in docs], out=offs[1:])
    docs = np.concatenate(docs)
    assert np.diff(offs).max() > 4 * FLAT_CHUNK
    imp = (rng.random(len(docs)).astype(np.float32) + 0.01 if dtype == np.float32
           else rng.integers(1, 256, len(docs)).astype(dtype))
    ix = _arrays(offs, docs, imp, shift, n_docs, every)
    acc = np.zeros(n_docs, score)
    for qt in (np.array([0], np.int32), np.array([3, 1], np.int32), np.array([0, 1, 2, 3], np.int32)):
        qw = (rng.random(len(qt)).astype(np.float32) if score == np.float32
              else rng.integers(1, 300, len(qt)).astype(score))
        for k in (10, n_docs):
            ed, es = exhaustive_ref(offs, docs, imp, qt, qw, n_docs, k, score)
            d1 = np.empty(k, np.int32); s1 = np.empty(k, score)
            n = exhaustive_one(ix, qt, qw, k, (), acc, d1, s1)
            assert not acc.any()
            np.testing.assert_array_equal(d1[:n], ed)
            np.testing.assert_array_equal(s1[:n], es)


def test_gather_ids_matches_reference():
    ids = ["a", "ζeta", "", "doc-42", "x" * 100]
    raw = b"".join(i.encode() for i in ids)
    offs = np.zeros(len(ids) + 1, np.int64); np.cumsum([len(i.encode()) for i in ids], out=offs[1:])
    b = np.frombuffer(raw, np.uint8)
    sel = np.array([4, 1, 1, 0, 3], np.int64)
    assert gather_ids(offs, b, sel).tobytes() == gather_ids_ref(offs, b, sel)


def test_next_geq_matches_reference():
    from lsr.index.kernels.maxscore import next_geq, next_geq_ref

    rng = np.random.default_rng(3)
    docs = np.unique(rng.integers(0, 10_000, 3000)).astype(np.int32)
    e = len(docs)
    for _ in range(2000):
        p = int(rng.integers(0, e + 1))
        d = int(rng.integers(-5, 10_010))
        assert next_geq(docs, p, e, d) == next_geq_ref(docs, p, e, d)


@pytest.mark.parametrize("dtype,score", [(np.uint8, np.int32), (np.uint16, np.int64)])
@pytest.mark.parametrize("use_blocks,block", [(False, 64), (True, 8), (True, 64)])
def test_maxscore_and_bmm_match_exhaustive_reference(dtype, score, use_blocks, block):
    from lsr.index.kernels.build import block_maxima_ref
    from lsr.index.kernels.maxscore import maxscore_batch, maxscore_one

    rng = np.random.default_rng(4)
    offs, docs, imp, n_docs = _postings(rng, n_terms=40, n_docs=3000, per_doc=10, dtype=dtype)
    boffs, bmax, blast, tmax = block_maxima_ref(offs, docs, imp, block)
    dx = DocArrays(offs, docs, imp, tmax, boffs, bmax, blast, block)
    queries = [rng.choice(40, size=rng.integers(1, 12), replace=False).astype(np.int32) for _ in range(30)]
    queries.append(np.array([5, 5, 5], np.int32))  # repeated terms add up
    weights = [rng.integers(1, 300, len(q)).astype(score) for q in queries]
    weights[0][:] = 1                               # equal weights: many tied scores
    for k in (1, 10, 100, 1000, n_docs):
        out_d = np.empty((len(queries), k), np.int32); out_s = np.empty((len(queries), k), score)
        counts = np.zeros(len(queries), np.int64)
        maxscore_batch(dx, _batch(queries, weights), k, (use_blocks,), (), out_d, out_s, counts)
        for i, (qt, qw) in enumerate(zip(queries, weights)):
            ed, es = exhaustive_ref(offs, docs, imp, qt, qw, n_docs, k, score)
            d1 = np.empty(k, np.int32); s1 = np.empty(k, score)
            n = maxscore_one(dx, qt, qw, k, (use_blocks,), (), d1, s1)
            np.testing.assert_array_equal(d1[:n], ed)
            np.testing.assert_array_equal(s1[:n], es)
            np.testing.assert_array_equal(out_d[i, :counts[i]], ed)
            np.testing.assert_array_equal(out_s[i, :counts[i]], es)


@pytest.mark.parametrize("use_blocks", [False, True])
@pytest.mark.parametrize("block", [8, 64])
def test_wand_and_bmw_match_exhaustive_reference(use_blocks, block):
    from lsr.index.kernels.build import block_maxima
    from lsr.index.kernels.wand import wand_batch, wand_one

    rng = np.random.default_rng(5)
    offs, docs, imp, n_docs = _postings(rng, n_terms=40, n_docs=3000, per_doc=10, dtype=np.uint8)
    nb = n_blocks_ref(offs, block)
    bo = np.zeros(len(offs), np.int64); bm = np.zeros(nb, np.uint8); bl = np.zeros(nb, np.int32)
    tmax = np.zeros(len(offs) - 1, np.uint8)
    block_maxima(offs, docs, imp, block, bo, bm, bl, tmax)
    dx = DocArrays(offs, docs, imp, tmax, bo, bm, bl, block)
    queries = [rng.choice(40, size=rng.integers(1, 12), replace=False).astype(np.int32) for _ in range(30)]
    queries.append(np.array([7, 7], np.int32))  # repeated terms add up
    weights = [rng.integers(1, 300, len(q)).astype(np.int32) for q in queries]
    for k in (1, 10, 100, 1000, n_docs):
        out_d = np.empty((len(queries), k), np.int32); out_s = np.empty((len(queries), k), np.int32)
        counts = np.zeros(len(queries), np.int64)
        wand_batch(dx, _batch(queries, weights), k, (use_blocks,), (), out_d, out_s, counts)
        for i, (qt, qw) in enumerate(zip(queries, weights)):
            ed, es = exhaustive_ref(offs, docs, imp, qt, qw, n_docs, k, np.int32)
            d1 = np.empty(k, np.int32); s1 = np.empty(k, np.int32)
            n = wand_one(dx, qt, qw, k, (use_blocks,), (), d1, s1)
            np.testing.assert_array_equal(d1[:n], ed)
            np.testing.assert_array_equal(s1[:n], es)
            np.testing.assert_array_equal(out_d[i, :counts[i]], ed)
            np.testing.assert_array_equal(out_s[i, :counts[i]], es)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("shift", [0, 3, 4, 5, 8])
@pytest.mark.parametrize("n_docs", [7, 2000, 70_000])
def test_pair_coding_matches_reference_and_round_trips(dtype, shift, n_docs):
    rng = np.random.default_rng(11)
    offs, docs, imp, _ = _postings(rng, n_terms=60, n_docs=n_docs, per_doc=9 if n_docs < 70_000 else 3,
                                   dtype=dtype)
    got = encode(offs, docs, imp, shift)
    want = encode_ref(offs, docs, imp, shift)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)
    r_off, r_max, c_off, codes, low = got
    if shift >= 3 and n_docs == 70_000:
        assert (codes >= 0x80).any()   # multi-byte varints were exercised
    out = np.empty(len(docs), np.int32)
    decode_docs(offs, c_off, codes, low, shift, out)
    np.testing.assert_array_equal(out, docs)
    np.testing.assert_array_equal(decode_ref(offs, c_off, codes, low, shift), docs)
    # pair maxima: the largest impact of each (term, block)
    for t in range(60):
        seg_b, seg_i = docs[offs[t]:offs[t + 1]] >> shift, imp[offs[t]:offs[t + 1]]
        if not len(seg_b):
            assert r_off[t + 1] == r_off[t]
            continue
        first = np.flatnonzero(np.r_[True, seg_b[1:] != seg_b[:-1]])
        assert r_off[t + 1] - r_off[t] == len(first)
        np.testing.assert_array_equal(r_max[r_off[t]:r_off[t + 1]], np.maximum.reduceat(seg_i, first))


def _range_buffers(score, n_blocks, shift, n_pairs, workers=None, rng=None):
    """The block-max traversal's buffers; with ``rng``, garbage where the kernel must not rely on the content."""
    if workers is not None:
        return RangeBuffers(np.zeros((workers, n_blocks), score), np.zeros((workers, 1 << shift), score),
                            np.zeros((workers, n_blocks), np.int32), np.zeros((workers, N_BUCKETS + 1), np.int64),
                            np.full((workers, n_blocks), -1, np.int32), np.zeros((workers, n_blocks), np.int32),
                            np.zeros((workers, n_pairs), np.int64), np.zeros((workers, n_pairs), np.int32),
                            np.zeros((workers, 3), np.int64))
    return RangeBuffers(np.zeros(n_blocks, score), np.zeros(1 << shift, score), np.empty(n_blocks, np.int32),
                        np.zeros(N_BUCKETS + 1, np.int64), np.full(n_blocks, -1, np.int32),
                        rng.integers(-5, 50, n_blocks).astype(np.int32), rng.integers(0, 1 << 40, n_pairs),
                        rng.integers(-5, 50, n_pairs).astype(np.int32), np.full(3, -7, np.int64))


def _filter_buffers(score, n_docs, n_blocks, n_pairs, workers, blocks_fill=-5):
    z = (workers,) if workers is not None else ()
    return FilterBuffers(np.zeros(z + (n_docs,), score), np.zeros(z + (n_blocks,), score),
                         np.zeros(z + (n_blocks,), score), np.zeros(z + (n_blocks,), np.uint8),
                         np.zeros(z + (1 << HIST_BITS,), np.int64), np.full(z + (n_blocks,), blocks_fill, np.int32),
                         np.zeros(z + (n_pairs,), np.int64))


@pytest.mark.parametrize("dtype,score", [(np.uint8, np.int32), (np.uint16, np.int64)])
@pytest.mark.parametrize("shift", [3, 6])
@pytest.mark.parametrize("every", [0, 4])
def test_blockmax_and_planner_match_exhaustive_reference(dtype, score, shift, every):
    from lsr.index.kernels.blockmax import blockmax_batch, blockmax_one, query_pairs
    from lsr.index.kernels.cost import (COST_DENSE_BOUND, COST_DENSE_ELEMENT, COST_PAIR, COST_SELECT_DOC, bounds_cost,
                                        exhaustive_cost)
    from lsr.index.kernels.planner import auto_batch

    rng = np.random.default_rng(5)
    offs, docs, imp, n_docs = _postings(rng, n_terms=40, n_docs=3000, per_doc=10, dtype=dtype)
    ix = _arrays(offs, docs, imp, shift, n_docs, every)
    ro, slot = ix.range_offsets, ix.dense_slot
    n_blocks = (n_docs + (1 << shift) - 1) >> shift
    queries = [rng.choice(40, size=rng.integers(1, 12), replace=False).astype(np.int32) for _ in range(30)]
    queries.append(np.array([5, 5, 5], np.int32))   # repeated terms add up
    queries.append(np.array([7], np.int32))         # one term
    weights = [rng.integers(1, 300, len(q)).astype(score) for q in queries]
    weights[0][:] = 1                                # equal weights: many tied scores
    qb = _batch(queries, weights)
    nq = len(queries)
    n_pairs = int(query_pairs(ro, qb.offsets, qb.terms).max())
    bufs = _range_buffers(score, n_blocks, shift, n_pairs, rng=rng)

    for k in (1, 10, 100, 1000, n_docs):
        runs = []
        for sweep_after in (-1, 0, 5):   # never sweep in doc id order, from the start, after 5 blocks
            out_d = np.empty((nq, k), np.int32); out_s = np.empty((nq, k), score); counts = np.zeros(nq, np.int64)
            blockmax_batch(ix, qb, k, (-1.0, sweep_after), _range_buffers(score, n_blocks, shift, n_pairs, 2),
                           out_d, out_s, counts)
            runs.append((out_d, out_s, counts))
        dfs = np.diff(offs)
        for max_k, pair_ratio, budget_ratio, filter_large, common_df, max_common in (
                (10**9, 1e9, 0.0, True, 1, 10**6), (10**9, 1e9, 1e9, True, 1, 10**6), (10**9, 0.0, 1e9, True, 1, 10**6),
                (k - 1, 1e9, 1e9, True, 1, 10**6), (k - 1, 1e9, 1e9, False, 1, 10**6),
                (10**9, 1e9, 1e9, True, int(np.median(dfs)), 2)):
            a_d = np.empty((nq, k), np.int32); a_s = np.empty((nq, k), score); a_c = np.zeros(nq, np.int64)
            st = PlannerSettings(max_k, 1e9, pair_ratio, common_df, max_common, budget_ratio, 3, 0.4, filter_large)
            rb = _range_buffers(score, n_blocks, shift, n_pairs, 2)
            fb = _filter_buffers(score, n_docs, n_blocks, n_pairs, 2)._replace(ub=rb.ub, pairs=rb.ent_pos)
            work = AutoWork(rb, fb, np.full(nq, -1, np.int8))
            auto_batch(ix, qb, k, st, work, a_d, a_s, a_c)
            # budget 0 always falls back; an unbounded budget never does; pair ratio 0 never tries
            # (locality ratio 1e9: the random test postings have no doc id locality);
            # max_k below k takes the filtered scorer, or exhaustive scoring without filter_large;
            # more than max_common query terms in common_df documents or more: exhaustive scoring
            want = 0 if pair_ratio == 0 else (2 if filter_large else 0) if max_k < k else int(budget_ratio > 0)
            common = [int((dfs[q] >= common_df).sum()) for q in queries]
            assert work.paths.tolist() == [0 if c > max_common else want for c in common]
            if max_common == 2:
                assert 0 < sum(c > 2 for c in common) < nq   # both outcomes occur
            runs.append((a_d, a_s, a_c))
        for i, (qt, qw) in enumerate(zip(queries, weights)):
            ed, es = exhaustive_ref(offs, docs, imp, qt, qw, n_docs, k, score)
            d1 = np.empty(k, np.int32); s1 = np.empty(k, score)
            stats = bufs.stats
            stats[:] = -7
            n = blockmax_one(ix, qt, qw, k, (-1.0, i % 4 - 1), bufs, d1, s1)
            np.testing.assert_array_equal(d1[:n], ed)
            np.testing.assert_array_equal(s1[:n], es)
            # the counters: the pairs of the terms without a dense row (repeats read again); with k past
            # every document, every block with a bound is scored, so all those terms' postings
            sparse = qt[slot[qt] < 0]
            assert stats[2] == (ro[sparse + 1] - ro[sparse]).sum()
            if k == n_docs:
                assert stats[1] == (offs[sparse + 1] - offs[sparse]).sum()
                touched = np.unique(np.concatenate([docs[offs[t]:offs[t + 1]] for t in qt]) >> shift)
                assert stats[0] == len(touched)
            else:
                assert 0 < stats[0] <= n_blocks and 0 <= stats[1] <= (offs[sparse + 1] - offs[sparse]).sum()
            # a budget below the bounds pass: -1 at once, the buffers untouched
            cost = bounds_cost(ro, slot, n_blocks, qt)
            want = sum(COST_DENSE_BOUND * n_blocks if slot[t] >= 0 else COST_PAIR * (ro[t + 1] - ro[t]) for t in qt)
            assert cost == pytest.approx(want, rel=1e-12)
            want = COST_SELECT_DOC * n_docs + sum(
                COST_DENSE_ELEMENT * n_docs if slot[t] >= 0 else offs[t + 1] - offs[t] for t in qt)
            assert exhaustive_cost(offs, slot, n_docs, qt) == pytest.approx(want, rel=1e-12)
            assert blockmax_one(ix, qt, qw, k, (cost * 0.999, 0), bufs, d1, s1) == -1
            assert stats.tolist() == [0, 0, 0] and not bufs.ub.any() and (bufs.head == -1).all()
            for rd, rsc, rc in runs:
                np.testing.assert_array_equal(rd[i, :rc[i]], ed)
                np.testing.assert_array_equal(rsc[i, :rc[i]], es)
        # work buffers are left as given
        assert not bufs.ub.any() and not bufs.local.any() and (bufs.head == -1).all()


def test_planner_reads_doc_id_locality():
    from lsr.index.kernels.planner import plan_one

    rng = np.random.default_rng(2)
    n_docs, shift = 20000, 6
    lists_random, lists_local = [], []
    for t in range(20):
        lists_random.append(np.sort(rng.choice(n_docs, 2000, replace=False)))
        start = rng.integers(0, n_docs - 4000)   # the same number of postings, within 4,000 doc ids
        lists_local.append(np.sort(rng.choice(np.arange(start, start + 4000), 2000, replace=False)))
    q = np.arange(20, dtype=np.int32)

    def settings(common_df, max_common):
        return PlannerSettings(20, 0.95, 0.5, common_df, max_common, 2.0, 1024, 0.5, False)

    for lists, want in ((lists_random, False), (lists_local, True)):
        offs = np.zeros(21, np.int64); np.cumsum([len(x) for x in lists], out=offs[1:])
        docs = np.concatenate(lists).astype(np.int32)
        ix = _arrays(offs, docs, np.ones(len(docs), np.uint8), shift, n_docs)
        use, sdf = plan_one(ix, q, settings(2000, 20))
        assert sdf == 40000 and use == want
        # 20 terms in at least 2,000 documents: more than 19 common terms is scored exhaustively
        assert plan_one(ix, q, settings(2000, 19))[0] is False
        assert plan_one(ix, q, settings(2001, 0))[0] == want


def _local_postings(rng, n_terms, n_docs, dtype):
    """Postings with doc id locality: each term occurs mostly within a few windows of the doc ids, with
    impacts that drift along them, plus a few common terms everywhere (the long low-weight lists the
    filtered scorer skips); also one term without postings."""
    terms, docs = [], []
    for t in range(n_terms - 1):
        if t < 3:
            ds = rng.choice(n_docs, n_docs // 2, replace=False)
        else:
            ds = np.concatenate([np.arange(s, min(s + rng.integers(20, 400), n_docs))
                                 for s in rng.integers(0, n_docs, rng.integers(1, 4))])
            ds = np.unique(ds[rng.random(len(ds)) < 0.6])
        terms.extend([t] * len(ds)); docs.extend(ds.tolist())
    terms = np.asarray(terms, np.int32); docs = np.asarray(docs, np.int32)
    hi = np.iinfo(dtype).max
    imp = np.clip((rng.gamma(1.0, 0.15, len(terms)) * hi), 1, hi).astype(dtype)
    counts, sdocs, simp = sort_run_ref(terms, docs, imp.astype(np.float32), n_terms)
    offs = np.zeros(n_terms + 1, np.int64); np.cumsum(counts, out=offs[1:])
    order = np.lexsort((docs, terms))
    return offs, docs[order], imp[order], n_docs


@pytest.mark.parametrize("dtype,score", [(np.uint8, np.int32), (np.uint16, np.int64)])
@pytest.mark.parametrize("shift", [0, 3, 4, 5, 8])
@pytest.mark.parametrize("local", [False, True])
@pytest.mark.parametrize("every", [0, 5])
def test_filtered_matches_exhaustive_reference(dtype, score, shift, local, every):
    from lsr.index.kernels.filtered import filtered_batch, filtered_one

    rng = np.random.default_rng(11 + shift)
    n_terms = 40
    if local:
        offs, docs, imp, n_docs = _local_postings(rng, n_terms, 5000, dtype)
    else:
        offs, docs, imp, n_docs = _postings(rng, n_terms=n_terms, n_docs=3000, per_doc=10, dtype=dtype)
    ix = _arrays(offs, docs, imp, shift, n_docs, every)
    n_pairs = int(ix.range_offsets[-1])
    n_blocks = (n_docs + (1 << shift) - 1) >> shift
    queries = [rng.choice(n_terms, size=rng.integers(1, 15), replace=False).astype(np.int32) for _ in range(25)]
    queries.append(np.array([5, 5, 5], np.int32))         # repeated terms add up
    queries.append(np.array([7], np.int32))               # one term
    queries.append(np.array([n_terms - 1], np.int32))     # no matching document (local: no postings)
    queries.append(np.array([0, 1, 2, 9], np.int32))      # the common terms and a rare one
    weights = [rng.integers(1, 300, len(q)).astype(score) for q in queries]
    weights[0][:] = 1                                      # equal weights: many tied scores
    qb = _batch(queries, weights)
    nq = len(queries)
    bufs = _filter_buffers(score, n_docs, n_blocks, n_pairs, None)
    # garbage the kernel must overwrite: the pairs and the block list are scratch
    bufs = bufs._replace(pairs=rng.integers(0, 1 << 40, n_pairs), blocks=rng.integers(-9, 9, n_blocks).astype(np.int32))
    skipped = 0
    for k in (1, 10, 100, 1000, n_docs):
        for full_ratio in (0.0, 0.3, 0.6, 1.0):
            out_d = np.empty((nq, k), np.int32); out_s = np.empty((nq, k), score); counts = np.zeros(nq, np.int64)
            filtered_batch(ix, qb, k, (full_ratio,), _filter_buffers(score, n_docs, n_blocks, n_pairs, 2), out_d,
                           out_s, counts)
            for i, (qt, qw) in enumerate(zip(queries, weights)):
                ed, es = exhaustive_ref(offs, docs, imp, qt, qw, n_docs, k, score)
                d1 = np.empty(k, np.int32); s1 = np.empty(k, score)
                n = filtered_one(ix, qt, qw, k, (full_ratio,), bufs, d1, s1)
                np.testing.assert_array_equal(d1[:n], ed)
                np.testing.assert_array_equal(s1[:n], es)
                np.testing.assert_array_equal(out_d[i, :counts[i]], ed)
                np.testing.assert_array_equal(out_s[i, :counts[i]], es)
                skipped += int(np.count_nonzero(bufs.keep == 0))
                assert not bufs.acc.any() and not bufs.bmax.any() and not bufs.ub.any() and not bufs.hist.any()
    if local:
        assert skipped > 0   # the bounds did rule blocks out
    # float scores are not taken
    fimp = imp.astype(np.float32)
    fx = _arrays(offs, docs, fimp, shift, n_docs)
    d1 = np.empty(10, np.int32); s1 = np.empty(10, np.float32)
    assert filtered_one(fx, queries[1], weights[1].astype(np.float32), 10, (0.5,),
                        _filter_buffers(np.float32, n_docs, n_blocks, n_pairs, None), d1, s1) == -1


@pytest.mark.parametrize("shift", [0, 4, 6])
@pytest.mark.parametrize("every", [0, 3])
def test_planner_filtered_and_cost_helpers_match_reference(shift, every):
    """plan_one, full_prefix, rest_bounds, exhaustive_cost and bounds_cost against their NumPy references."""
    from lsr.index.kernels.cost import bounds_cost, bounds_cost_ref, exhaustive_cost, exhaustive_cost_ref
    from lsr.index.kernels.filtered import full_prefix, full_prefix_ref, rest_bounds, rest_bounds_ref
    from lsr.index.kernels.planner import plan_one, plan_one_ref

    rng = np.random.default_rng(30 + shift)
    n_terms = 40
    offs, docs, imp, n_docs = _local_postings(rng, n_terms, 4000, np.uint8)
    ix = _arrays(offs, docs, imp, shift, n_docs, every)
    n_blocks = (n_docs + (1 << shift) - 1) >> shift
    for i in range(60):
        qt = rng.choice(n_terms, size=rng.integers(1, 12), replace=False).astype(np.int32)
        if i % 7 == 0:
            qt = np.concatenate([qt, qt[:1]])   # a repeated term
        qw = rng.integers(1, 300, len(qt)).astype(np.int32)
        st = PlannerSettings(20, float(rng.choice([0.3, 0.95, 1e9])), float(rng.choice([0.0, 0.5, 1e9])),
                             int(rng.integers(1, n_docs)), int(rng.integers(0, 6)), 2.0, 1024, 0.5, False)
        assert plan_one(ix, qt, st) == plan_one_ref(offs, ix.range_offsets, n_docs, shift, qt, st)
        assert exhaustive_cost(offs, ix.dense_slot, n_docs, qt) == pytest.approx(
            exhaustive_cost_ref(offs, ix.dense_slot, n_docs, qt), rel=1e-12)
        assert bounds_cost(ix.range_offsets, ix.dense_slot, n_blocks, qt) == pytest.approx(
            bounds_cost_ref(ix.range_offsets, ix.dense_slot, n_blocks, qt), rel=1e-12)
        full_ratio = float(rng.choice([0.0, 0.3, 0.7, 1.0]))
        order, n_full = full_prefix(ix, qt, qw, full_ratio)
        want_order, want_full = full_prefix_ref(offs, ix.term_max, ix.dense_slot, qt, qw, full_ratio)
        np.testing.assert_array_equal(order, want_order)
        assert n_full == want_full
        ub = np.zeros(n_blocks, np.int32)
        pairs = np.full(int(ix.range_offsets[-1]) + 1, -1, np.int64)
        n = rest_bounds(ix, qt, qw, order, n_full, ub, pairs)
        want_ub, want_pairs = rest_bounds_ref(offs, docs, imp, shift, n_docs, qt, qw, order, n_full)
        np.testing.assert_array_equal(ub, want_ub)
        np.testing.assert_array_equal(pairs[:n], want_pairs)
