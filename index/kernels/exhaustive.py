"""Exhaustive term-at-a-time scoring: the reference query processor.

Scores every document that shares a term with the query into a dense
accumulator, then selects the top k (score desc, doc id asc). Only documents
with a positive score are returned, so fewer than k hits come back when fewer
documents match. The query terms that have a dense row (:mod:`.dense`: the
most frequent terms, integer impacts) are added first, one vectorised pass
over the accumulator each; the others posting by posting.

The selection for integer scores (the quantised indexes) takes every
16-document block's maximum in one vectorisable pass; a 4,096-bin histogram
of them gives ``theta``, a lower bound of the k-th largest block maximum and
hence of the k-th best score (k blocks each hold a document that scores at
least that much; :func:`.topk.kth_lower_bound`); then only the documents of
the blocks that reach ``theta``, and only those that reach it themselves,
are selected (:func:`.topk.select_blocks`: offered to the top-k heap in doc
id order, which keeps the tie rule, or from ``HIST_SELECT_K`` on sorted by
histogram bins). Float scores are selected otherwise: blocks of ``SCAN_BLOCK`` documents
(halved down to 8 until there are at least 8k of them), the k largest block
maxima kept in the output heap as the bound, then a second pass over the
blocks that reach it.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .dense import add_dense_row
from .postings import low_at, next_pair, term_pairs
from .topk import HIST_BITS, acc_block_maxima, heap_offer, heap_sort_desc, kth_lower_bound, select_blocks

SCAN_BLOCK = 128  # documents per block of the float top-k scan


FLAT_CHUNK = 2048  # postings expanded at a time by the flat scoring loop (an L1-sized buffer)


@njit(cache=True, inline="always")
def _scatter_nibbles(acc, bases, n, p0, w, low, impacts):
    """acc[bases[j] + low(p0 + j)] += w * impacts[p0 + j] for j < n (4-bit low doc id bits)."""
    for j in range(n):
        q = p0 + j
        acc[bases[j] + ((np.int32(low[q >> 1]) >> ((q & 1) << 2)) & 15)] += w * impacts[q]


@njit(cache=True)
def _score_terms_flat(ix, q_terms, q_weights, acc):
    """:func:`score_terms` for range blocks of up to 16 documents (4-bit low doc id bits); the terms
    with a dense row are left out."""
    bases = np.empty(FLAT_CHUNK + 16, np.int32)
    shift = ix.shift
    for i in range(q_terms.shape[0]):
        t = q_terms[i]
        if ix.dense_slot[t] >= 0:
            continue
        w = q_weights[i]
        cur = term_pairs(ix.term_offsets, ix.code_offsets, t)
        p = cur[3]
        while cur[0] < cur[1]:
            # expand up to FLAT_CHUNK postings' bases, then score them
            o = 0
            while cur[0] < cur[1] and o <= FLAT_CHUNK - 16:
                cur, blk, _, n = next_pair(ix.codes, shift, cur)
                base = np.int32(blk << shift)
                for y in range(16):
                    bases[o + y] = base
                o += n
            _scatter_nibbles(acc, bases, o, p, w, ix.low, ix.impacts)
            p += o


@njit(cache=True)
def _score_terms_pairs(ix, q_terms, q_weights, acc):
    """:func:`score_terms` pair by pair (any range block size); the terms with a dense row are left out."""
    shift = ix.shift
    nib = shift <= 4
    for i in range(q_terms.shape[0]):
        t = q_terms[i]
        if ix.dense_slot[t] >= 0:
            continue
        w = q_weights[i]
        cur = term_pairs(ix.term_offsets, ix.code_offsets, t)
        while cur[0] < cur[1]:
            cur, blk, p, n = next_pair(ix.codes, shift, cur)
            base = blk << shift
            for q in range(p, p + n):
                acc[base + low_at(ix.low, q, nib)] += w * ix.impacts[q]


@njit(cache=True)
def score_terms(ix, q_terms, q_weights, acc):
    """Add every query term's postings into the dense accumulator (``ix``: :class:`.bundles.IndexArrays`).

    The terms with a dense row (``dense_slot[t] >= 0``, :mod:`.dense`) are
    added first, each in one vectorised pass over the accumulator
    (integer impacts only, where the order of the terms changes no sum); the
    others from their postings.

    For range blocks of up to 16 documents (``shift <= 4``, the default) the
    pairs are first expanded into a small buffer of per-posting block bases
    (each pair writes 16 slots unconditionally; the next pair overwrites the
    surplus), then the postings are scored in one flat loop, which has no
    short inner loop of data-dependent length per pair. Larger range blocks
    are scored pair by pair.
    """
    for i in range(q_terms.shape[0]):
        r = ix.dense_slot[q_terms[i]]
        if r >= 0:
            add_dense_row(ix.dense[r], q_weights[i], acc)
    if ix.shift <= 4:
        _score_terms_flat(ix, q_terms, q_weights, acc)
    else:
        _score_terms_pairs(ix, q_terms, q_weights, acc)


@njit(cache=True)
def select_top(acc, k, out_docs, out_scores):
    """The top k of the accumulator (score desc, doc id asc; positive scores only) into the outputs;
    leaves ``acc`` all zeros. Returns the hit count."""
    n_docs = acc.shape[0]
    zero = acc.dtype.type(0)
    if acc.dtype.type(0.5) == zero:   # integer scores: 16-document block maxima, a histogram bound
        block_max = np.empty((n_docs + 15) >> 4, dtype=acc.dtype)
        hist = np.zeros(1 << HIST_BITS, np.int64)
        top = np.int64(acc_block_maxima(acc, 4, block_max))
        theta = kth_lower_bound(block_max, k, top, hist)
        size = select_blocks(acc, 4, block_max, theta, top, k, hist, out_docs, out_scores)
        acc[:] = zero
        return size
    # float scores: smaller scan blocks for large k, so that the k-th largest block maximum
    # stays a useful bound (at least 8k blocks, down to 8 documents a block)
    B = SCAN_BLOCK
    while B > 8 and n_docs // B < 8 * k:
        B //= 2
    n_blocks = (n_docs + B - 1) // B
    block_max = np.empty(n_blocks, dtype=acc.dtype)
    # pass 1: block maxima; the heap keeps the k largest (doc = block number)
    size = 0
    for b in range(n_blocks):
        m = zero
        for d in range(b * B, min(b * B + B, n_docs)):
            m = max(m, acc[d])
        block_max[b] = m
        if m > zero and (size < k or m > out_scores[0]):
            size = heap_offer(out_scores, out_docs, size, k, m, b)
    bound = out_scores[0] if size == k else zero
    # pass 2: documents of the blocks that reach the bound, in doc id order
    size = 0
    for b in range(n_blocks):
        if block_max[b] > zero and block_max[b] >= bound:
            for d in range(b * B, min(b * B + B, n_docs)):
                s = acc[d]
                if s > zero and s >= bound and (size < k or s > out_scores[0]):
                    size = heap_offer(out_scores, out_docs, size, k, s, d)
    acc[:] = zero
    heap_sort_desc(out_scores, out_docs, size)
    return size


@njit(cache=True)
def exhaustive_one(ix, q_terms, q_weights, k, params, acc, out_docs, out_scores):
    """Top-k of one query; returns the hit count.

    ``ix``: :class:`.bundles.IndexArrays` (a ``dense_slot`` of -1 for every
    term reads no dense row); ``params``: ``()``; ``acc``: the work buffer,
    one slot per document of the score dtype (int32/int64 for integer
    impacts, float32 for float impacts), all zeros, left all zeros.
    """
    score_terms(ix, q_terms, q_weights, acc)
    return select_top(acc, k, out_docs, out_scores)


@njit(cache=True, parallel=True)
def exhaustive_batch(ix, queries, k, params, accs, out_docs, out_scores, out_counts):
    """Top-k of every query; one parallel loop over the query batch.

    ``accs`` is (n_workers, n_docs) of zeros: worker w handles queries
    w, w + n_workers, ... with its own accumulator row.
    """
    q_offsets, q_terms, q_weights = queries
    n_queries = q_offsets.shape[0] - 1
    n_workers = accs.shape[0]
    for w in prange(n_workers):
        for q in range(w, n_queries, n_workers):
            a = q_offsets[q]
            b = q_offsets[q + 1]
            out_counts[q] = exhaustive_one(ix, q_terms[a:b], q_weights[a:b], k, params, accs[w], out_docs[q],
                                           out_scores[q])


def exhaustive_ref(term_offsets, docs, impacts, q_terms, q_weights, n_docs, k, score_dtype):
    """Plain NumPy reference: (doc ids, scores) of the top k, ties by doc id."""
    scores = np.zeros(n_docs, dtype=score_dtype)
    for t, w in zip(q_terms, q_weights):
        s, e = term_offsets[t], term_offsets[t + 1]
        np.add.at(scores, docs[s:e], (score_dtype(w) * impacts[s:e].astype(score_dtype)).astype(score_dtype))
    cand = np.flatnonzero(scores > 0)
    order = np.lexsort((cand, -scores[cand]))[:k]
    return cand[order].astype(np.int32), scores[cand[order]]
