"""Exact doc-range block-max traversal (in the spirit of BMP, Mallia et al., SIGIR 2024).

The documents are cut into ranges of ``R = 1 << shift`` consecutive doc ids
(*range blocks*). For every term the index stores the sparse list of the
range blocks its postings touch: ``range_blocks`` (block number, ascending),
``range_max`` (the largest impact of the term in that block) and
``range_start`` (int32: where the term's postings for that block begin,
counted from the term's first posting; they end where the term's next block
begins, or at the end of the term's postings).

A query is processed in three steps:

1. **Upper bounds**: ``ub[b] = sum_t w_t * range_max[t, b]`` for every block,
   by walking each query term's block list (one pass; the cost is the number
   of (term, block) pairs, not postings).
2. **Order**: the blocks with ``ub > 0`` are bucket-sorted by ``ub`` into
   ``N_BUCKETS`` buckets, highest first.
3. **Scoring**: blocks are scored exactly (a block-local accumulator of R
   slots; each query term's postings in the block are found by binary search
   in its block list) in that order, and their documents offered to the top-k
   heap, until every remaining bucket's upper edge is below the heap's
   threshold ``theta`` (the k-th best score so far).

Exactness: a document's score is at most its block's ``ub``. A block is
skipped only when ``ub < theta`` (or ``ub == theta`` and every one of its doc
ids is larger than the heap's worst retained doc, which loses every tie);
the stop rule uses ``(c + 1) * max_ub <= theta * (N_BUCKETS - 1)`` for the
current bucket c, which implies ``ub < theta`` for every later block. The
bucket key ``floor(ub * (N_BUCKETS - 1) / max_ub)`` is computed in float64,
where products of the integer (or float32) scores are exact and a correctly
rounded quotient never floors below the true key; so no block that could hold
a top-k document (ties by doc id included) is left out.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .topk import heap_offer, heap_sort_desc

N_BUCKETS = 1024
TABLE_TERMS = 64   # query terms whose block positions are tabulated (the others use binary search)


# --------------------------------------------------------------------------- build
@njit(cache=True)
def range_counts(term_offsets, docs, shift, out_counts):
    """``out_counts[t]`` = number of distinct range blocks in the postings of term t."""
    n_terms = term_offsets.shape[0] - 1
    total = 0
    for t in range(n_terms):
        c = 0
        last = -1
        for p in range(term_offsets[t], term_offsets[t + 1]):
            b = docs[p] >> shift
            if b != last:
                c += 1
                last = b
        out_counts[t] = c
        total += c
    return total


@njit(cache=True)
def range_fill(term_offsets, docs, impacts, shift, range_offsets, range_blocks, range_max, range_start):
    """Fill the per-term range block lists (``range_offsets`` already holds the prefix sums)."""
    n_terms = term_offsets.shape[0] - 1
    for t in range(n_terms):
        j = range_offsets[t] - 1
        last = -1
        for p in range(term_offsets[t], term_offsets[t + 1]):
            b = docs[p] >> shift
            if b != last:
                j += 1
                range_blocks[j] = b
                range_max[j] = impacts[p]
                range_start[j] = p - term_offsets[t]
                last = b
            elif impacts[p] > range_max[j]:
                range_max[j] = impacts[p]


LOCALITY_THRESHOLD = 0.95


def range_locality(n_pairs: int, dfs: np.ndarray, n_docs: int, shift: int) -> float:
    """Range pairs over the pairs random doc ids would give: ``sum_t B (1 - exp(-df_t / B))``.

    1.0 means no doc id locality (block maxima then bound little: the builder
    stores no range blocks for such a collection unless asked to, and the
    planner never tries the block-max traversal); real collections whose
    neighbouring doc ids hold related texts score lower.
    """
    n_blocks = (n_docs + (1 << shift) - 1) >> shift
    expected = float(np.sum(-n_blocks * np.expm1(-np.asarray(dfs, np.float64) / n_blocks)))
    return n_pairs / expected if expected > 0 else 1.0


def range_index(term_offsets, docs, impacts, shift):
    """Build (range_offsets, range_blocks, range_max, range_start) with the kernels above."""
    n_terms = term_offsets.shape[0] - 1
    counts = np.zeros(n_terms, dtype=np.int64)
    total = range_counts(term_offsets, docs, shift, counts)
    offsets = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    blocks = np.empty(total, dtype=np.int32)
    rmax = np.empty(total, dtype=impacts.dtype)
    start = np.empty(total, dtype=np.int32)
    range_fill(term_offsets, docs, impacts, shift, offsets, blocks, rmax, start)
    return offsets, blocks, rmax, start


def range_index_ref(term_offsets, docs, impacts, shift):
    """Plain NumPy reference of :func:`range_index`."""
    offs, blocks, rmax, start = [0], [], [], []
    for t in range(len(term_offsets) - 1):
        s, e = int(term_offsets[t]), int(term_offsets[t + 1])
        b = docs[s:e] >> shift
        uniq, first = np.unique(b, return_index=True)
        blocks.extend(uniq.tolist())
        start.extend(first.tolist())
        if len(uniq):
            rmax.extend(np.maximum.reduceat(impacts[s:e], first).tolist())
        offs.append(offs[-1] + len(uniq))
    return (np.asarray(offs, dtype=np.int64), np.asarray(blocks, dtype=np.int32),
            np.asarray(rmax, dtype=impacts.dtype), np.asarray(start, dtype=np.int32))


# --------------------------------------------------------------------------- search
@njit(cache=True, inline="always")
def _find_block(range_blocks, lo, hi, b):
    """Position of block b in range_blocks[lo:hi] (sorted), or -1."""
    end = hi
    while lo < hi:
        mid = (lo + hi) >> 1
        if range_blocks[mid] < b:
            lo = mid + 1
        else:
            hi = mid
    if lo < end and range_blocks[lo] == b:
        return lo
    return -1


@njit(cache=True)
def blockmax_one(term_offsets, docs, impacts, range_offsets, range_blocks, range_max, range_start, shift,
                 n_docs, q_terms, q_weights, k, budget, ub, local, order, bucket_counts, table,
                 out_docs, out_scores):
    """Top-k of one query by doc-range block-max traversal; returns the hit count.

    Work buffers (left as they were given): ``ub`` (n_blocks, score dtype, all
    zeros), ``local`` (R = 1 << shift, score dtype, all zeros), ``order``
    (n_blocks, int32), ``bucket_counts`` (N_BUCKETS + 1, int64), ``table``
    (TABLE_TERMS x n_blocks, int32, any content).

    ``table[i, b]`` receives, in step 1, the position of block b in the block
    list of query term i (i < TABLE_TERMS), so that step 3 finds a term's
    postings in a block with one read instead of a binary search. The table is
    never cleared: an entry is used only when it points inside term i's list
    at an entry for block b, which a stale entry (left by another query) can
    only do if that term really has block b at that position.

    ``budget`` bounds the postings scored in step 3 (``-1``: no bound); when a
    block would exceed it the traversal stops and -1 is returned (the outputs
    are then meaningless; the planner falls back to exhaustive scoring).
    """
    m = q_terms.shape[0]
    zero = out_scores.dtype.type(0)
    n_blocks = ub.shape[0]
    R = 1 << shift
    # 1. upper bounds per block (and the block positions of the first TABLE_TERMS terms)
    n_tab = min(m, table.shape[0])
    sdf = 0
    for i in range(m):
        t = q_terms[i]
        w = q_weights[i]
        sdf += term_offsets[t + 1] - term_offsets[t]
        lo = range_offsets[t]
        if i < n_tab:
            for j in range(lo, range_offsets[t + 1]):
                b = range_blocks[j]
                ub[b] += w * range_max[j]
                table[i, b] = j - lo
        else:
            for j in range(lo, range_offsets[t + 1]):
                ub[range_blocks[j]] += w * range_max[j]
    max_ub = zero
    for b in range(n_blocks):
        if ub[b] > max_ub:
            max_ub = ub[b]
    size = 0
    if max_ub > zero:
        # 2. bucket sort of the blocks with ub > 0, highest bucket first
        nb = N_BUCKETS
        bucket_counts[:] = 0
        for b in range(n_blocks):
            u = ub[b]
            if u > zero:
                key = nb - 1 - np.int64(np.floor(np.float64(u) * np.float64(nb - 1) / np.float64(max_ub)))
                bucket_counts[key + 1] += 1
        for c in range(nb):
            bucket_counts[c + 1] += bucket_counts[c]
        # place (bucket_counts[c] becomes the end of bucket c after this loop)
        for b in range(n_blocks):
            u = ub[b]
            if u > zero:
                key = nb - 1 - np.int64(np.floor(np.float64(u) * np.float64(nb - 1) / np.float64(max_ub)))
                order[bucket_counts[key]] = b
                bucket_counts[key] += 1
        n_pos = bucket_counts[nb - 1]
        # 3. score blocks in order
        scored = 0
        n_scored = 0
        next_check = 0
        start = 0
        for c in range(nb):
            end = bucket_counts[c]
            if start == end:
                continue
            if size >= k:
                # every block of bucket c has ub * (nb - 1) / max_ub < (nb - c)
                if np.float64(nb - c) * np.float64(max_ub) <= np.float64(out_scores[0]) * np.float64(nb - 1):
                    break
            for pos in range(start, end):
                b = order[pos]
                u = ub[b]
                if size >= k:
                    theta = out_scores[0]
                    if u < theta or (u == theta and (b << shift) > out_docs[0]):
                        continue
                base = b << shift
                for i in range(m):
                    t = q_terms[i]
                    lo = range_offsets[t]
                    hi = range_offsets[t + 1]
                    if i < n_tab:
                        j = lo + table[i, b]
                        if j < lo or j >= hi or range_blocks[j] != b:
                            j = -1
                    else:
                        j = _find_block(range_blocks, lo, hi, b)
                    if j >= 0:
                        w = q_weights[i]
                        tp = term_offsets[t]
                        p0 = tp + range_start[j]
                        p1 = tp + range_start[j + 1] if j + 1 < hi else term_offsets[t + 1]
                        scored += p1 - p0
                        for p in range(p0, p1):
                            local[docs[p] - base] += w * impacts[p]
                lim = min(R, n_docs - base)
                if budget >= 0 and scored > budget:
                    local[:lim] = zero
                    ub[:] = zero
                    return -1
                for x in range(lim):
                    s = local[x]
                    if s > zero:
                        local[x] = zero
                        if size < k or s > out_scores[0] or (s == out_scores[0] and base + x < out_docs[0]):
                            size = heap_offer(out_scores, out_docs, size, k, s, base + x)
                n_scored += 1
                if budget >= 0 and size >= k and n_scored >= next_check:
                    # early give-up: the blocks whose bucket still reaches theta, times the mean
                    # postings per block, would exceed the budget
                    next_check = n_scored + 32
                    c_stop = np.int64(np.ceil(nb - np.float64(out_scores[0]) * np.float64(nb - 1)
                                              / np.float64(max_ub)))
                    c_stop = min(max(c_stop, c + 1), nb)
                    remaining = bucket_counts[c_stop - 1] - pos - 1
                    if scored + remaining * (sdf / n_pos) > budget:
                        ub[:] = zero
                        return -1
            start = end
    ub[:] = zero
    heap_sort_desc(out_scores, out_docs, size)
    return size


@njit(cache=True, parallel=True)
def blockmax_batch(term_offsets, docs, impacts, range_offsets, range_blocks, range_max, range_start, shift,
                   n_docs, q_offsets, q_terms, q_weights, k, ubs, locals_, orders, bucket_counts, tables,
                   out_docs, out_scores, out_counts):
    """Block-max top-k of every query; one parallel loop over the workers' share of the batch.

    Worker w uses row w of ``ubs``, ``locals_``, ``orders`` and ``bucket_counts``
    and handles queries w, w + n_workers, ...
    """
    n_queries = q_offsets.shape[0] - 1
    n_workers = ubs.shape[0]
    for wk in prange(n_workers):
        for q in range(wk, n_queries, n_workers):
            a = q_offsets[q]
            b = q_offsets[q + 1]
            out_counts[q] = blockmax_one(term_offsets, docs, impacts, range_offsets, range_blocks, range_max,
                                         range_start, shift, n_docs, q_terms[a:b], q_weights[a:b], k, -1, ubs[wk],
                                         locals_[wk], orders[wk], bucket_counts[wk], tables[wk], out_docs[q],
                                         out_scores[q])
