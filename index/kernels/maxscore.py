"""Exact document-at-a-time MaxScore (Turtle and Flood, 1995).

Query terms are ordered by their score upper bound ``weight * term_max``.
Once the heap holds k hits with threshold ``theta`` (the k-th score), the
terms whose upper bounds sum to at most ``theta`` are *non-essential*: a
document that appears only in them cannot enter the top k, so candidates are
drawn from the essential lists alone, and the non-essential lists are probed
(galloping search) only while the remaining upper bound can still lift the
candidate above ``theta``.

Block-max MaxScore (``use_blocks``; Chakrabarti et al., 2011; as in PISA's
``block_max_maxscore``): before the non-essential lists are probed for a
candidate, their blocks (of ``block_size`` postings) that could hold the
candidate are located with a shallow cursor over ``block_last_doc``, and the
candidate is dropped when its essential score plus those blocks' maxima is
``<= theta``.

Exactness with the engine's tie rule: documents are visited in increasing id
order, so a candidate whose score equals ``theta`` ranks below every retained
hit (it has a larger doc id) and is correctly left out; all pruning tests use
``<= theta``. Integer scores make this exact; for float32 impacts the sums are
taken in another order than the exhaustive scorer's, so scores may differ in
the last bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .topk import heap_offer, heap_sort_desc


@njit(cache=True, inline="always")
def next_geq(docs, p, e, d):
    """First position in [p, e) whose doc id is >= d (e if none), galloping from p."""
    if p >= e or docs[p] >= d:
        return p
    lo = p          # docs[lo] < d
    step = 1
    hi = p + 1
    while hi < e and docs[hi] < d:
        lo = hi
        step *= 2
        hi = lo + step
    if hi > e:
        hi = e
    lo += 1         # answer in [lo, hi]
    while lo < hi:
        mid = (lo + hi) >> 1
        if docs[mid] < d:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def maxscore_one(dx, q_terms, q_weights, k, params, work, out_docs, out_scores):
    """Top-k of one query by MaxScore (block-max MaxScore with ``use_blocks``); returns the hit count.

    ``dx``: :class:`.bundles.DocArrays`; ``params``: ``(use_blocks,)``; ``work``: ``()`` (none)."""
    term_offsets, docs, impacts, term_max, block_offsets, block_max, block_last_doc, block_size = dx
    use_blocks = params[0]
    m = q_terms.shape[0]
    zero = out_scores.dtype.type(0)
    ub = np.empty(m, dtype=out_scores.dtype)
    for i in range(m):
        ub[i] = q_weights[i] * term_max[q_terms[i]]
    order = np.argsort(ub, kind="mergesort")
    pos = np.empty(m, dtype=np.int64)
    end = np.empty(m, dtype=np.int64)
    bpos = np.empty(m, dtype=np.int64)   # shallow block cursor (global block number)
    bend = np.empty(m, dtype=np.int64)
    w = np.empty(m, dtype=q_weights.dtype)
    cum = np.empty(m, dtype=out_scores.dtype)
    acc = zero
    for j in range(m):
        i = order[j]
        t = q_terms[i]
        pos[j] = term_offsets[t]
        end[j] = term_offsets[t + 1]
        bpos[j] = block_offsets[t]
        bend[j] = block_offsets[t + 1]
        w[j] = q_weights[i]
        acc += ub[i]
        cum[j] = acc
    sentinel = np.iinfo(np.int32).max
    size = 0
    theta = zero
    first = 0  # lists first..m-1 are essential
    while first < m:
        d = sentinel
        for j in range(first, m):
            if pos[j] < end[j]:
                dj = docs[pos[j]]
                if dj < d:
                    d = dj
        if d == sentinel:
            break
        score = zero
        for j in range(first, m):
            p = pos[j]
            if p < end[j] and docs[p] == d:
                score += w[j] * impacts[p]
                pos[j] = p + 1
        full = size >= k
        if use_blocks and full and first > 0 and score + cum[first - 1] > theta:
            # bound the non-essential lists by the maxima of their blocks that may hold d
            bound = score
            for j in range(first):
                b = bpos[j]
                while b < bend[j] and block_last_doc[b] < d:
                    b += 1
                bpos[j] = b
                if b < bend[j]:
                    bound += w[j] * block_max[b]
            if bound <= theta:
                continue
        j = first - 1
        while j >= 0:
            if full and score + cum[j] <= theta:
                break
            p = next_geq(docs, pos[j], end[j], d)
            pos[j] = p
            if p < end[j] and docs[p] == d:
                score += w[j] * impacts[p]
            j -= 1
        if score > zero and (not full or score > theta):
            size = heap_offer(out_scores, out_docs, size, k, score, d)
            if size >= k:
                theta = out_scores[0]
                while first < m and cum[first] <= theta:
                    first += 1
    heap_sort_desc(out_scores, out_docs, size)
    return size


@njit(cache=True, parallel=True)
def maxscore_batch(dx, queries, k, params, work, out_docs, out_scores, out_counts):
    """(Block-max) MaxScore top-k of every query; one parallel loop over the query batch."""
    q_offsets, q_terms, q_weights = queries
    n_queries = q_offsets.shape[0] - 1
    for q in prange(n_queries):
        a = q_offsets[q]
        b = q_offsets[q + 1]
        out_counts[q] = maxscore_one(dx, q_terms[a:b], q_weights[a:b], k, params, work, out_docs[q], out_scores[q])


def next_geq_ref(docs, p, e, d):
    """Plain NumPy reference of :func:`next_geq`."""
    return p + int(np.searchsorted(docs[p:e], d, side="left"))
