"""Exact WAND (Broder et al., 2003) and Block-Max WAND (Ding and Suel, 2011).

Cursors are kept sorted by their current doc id. The *pivot* is the first
cursor at which the upper bounds ``weight * term_max`` of the cursors before
it, plus its own, exceed the threshold ``theta`` (the k-th score once the heap
is full, else 0). No document before the pivot's doc can beat ``theta``, so
the cursors before the pivot jump to it. When every cursor up to the pivot
sits on the pivot doc it is a candidate; Block-Max WAND first bounds it by the
maxima of the current blocks and, when that bound is <= ``theta``, skips to
the end of the shallowest block instead of scoring.

Exactness: documents are visited in increasing id order and admitted only
with a score strictly above ``theta`` (an equal score has a larger doc id
than every retained hit), and every skip is justified by a bound ``<= theta``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .maxscore import next_geq
from .topk import heap_offer, heap_sort_desc


@njit(cache=True, inline="always")
def _resort(order, cur, m, j):
    """Move order[j] (whose doc increased) right until ``order`` is sorted by ``cur``."""
    c = order[j]
    d = cur[c]
    while j + 1 < m and cur[order[j + 1]] < d:
        order[j] = order[j + 1]
        j += 1
    order[j] = c


@njit(cache=True)
def wand_one(dx, q_terms, q_weights, k, params, work, out_docs, out_scores):
    """Top-k of one query by WAND (``use_blocks`` False) or Block-Max WAND (True); returns the hit count.

    ``dx``: :class:`.bundles.DocArrays`; ``params``: ``(use_blocks,)``; ``work``: ``()`` (none)."""
    term_offsets, docs, impacts, term_max, block_offsets, block_max, block_last_doc, block_size = dx
    use_blocks = params[0]
    m = q_terms.shape[0]
    zero = out_scores.dtype.type(0)
    sentinel = np.iinfo(np.int32).max
    pos = np.empty(m, dtype=np.int64)
    end = np.empty(m, dtype=np.int64)
    start = np.empty(m, dtype=np.int64)
    bbase = np.empty(m, dtype=np.int64)
    w = np.empty(m, dtype=q_weights.dtype)
    ub = np.empty(m, dtype=out_scores.dtype)
    cur = np.empty(m, dtype=np.int64)
    for j in range(m):
        t = q_terms[j]
        pos[j] = term_offsets[t]
        start[j] = term_offsets[t]
        end[j] = term_offsets[t + 1]
        bbase[j] = block_offsets[t]
        w[j] = q_weights[j]
        ub[j] = q_weights[j] * term_max[t]
        cur[j] = docs[pos[j]] if pos[j] < end[j] else sentinel
    order = np.argsort(cur, kind="mergesort")
    size = 0
    theta = zero
    while True:
        # pivot: first prefix of sorted cursors whose upper bounds exceed theta
        acc = zero
        p = -1
        for i in range(m):
            c = order[i]
            if cur[c] == sentinel:
                break
            acc += ub[c]
            if acc > theta:
                p = i
                break
        if p < 0:
            break
        pd = cur[order[p]]
        # extend the pivot over every cursor on the same doc
        while p + 1 < m and cur[order[p + 1]] == pd:
            p += 1
        if cur[order[0]] == pd:
            if use_blocks and size >= k:
                bound = zero
                nxt = sentinel
                for i in range(p + 1):
                    c = order[i]
                    b = bbase[c] + (pos[c] - start[c]) // block_size
                    bound += w[c] * block_max[b]
                    last = np.int64(block_last_doc[b]) + 1
                    if last < nxt:
                        nxt = last
                if bound <= theta:
                    if p + 1 < m and cur[order[p + 1]] < nxt:
                        nxt = cur[order[p + 1]]
                    for i in range(p, -1, -1):
                        c = order[i]
                        pos[c] = next_geq(docs, pos[c], end[c], nxt)
                        cur[c] = docs[pos[c]] if pos[c] < end[c] else sentinel
                        _resort(order, cur, m, i)
                    continue
            score = zero
            for i in range(p + 1):
                c = order[i]
                score += w[c] * impacts[pos[c]]
            if score > zero and (size < k or score > theta):
                size = heap_offer(out_scores, out_docs, size, k, score, pd)
                if size >= k:
                    theta = out_scores[0]
            for i in range(p, -1, -1):
                c = order[i]
                pos[c] += 1
                cur[c] = docs[pos[c]] if pos[c] < end[c] else sentinel
                _resort(order, cur, m, i)
        else:
            # cursors before the pivot cannot make a doc < pd beat theta: jump them to pd
            for i in range(p, -1, -1):
                c = order[i]
                if cur[c] < pd:
                    pos[c] = next_geq(docs, pos[c], end[c], pd)
                    cur[c] = docs[pos[c]] if pos[c] < end[c] else sentinel
                    _resort(order, cur, m, i)
    heap_sort_desc(out_scores, out_docs, size)
    return size


@njit(cache=True, parallel=True)
def wand_batch(dx, queries, k, params, work, out_docs, out_scores, out_counts):
    """(Block-Max) WAND top-k of every query; one parallel loop over the query batch."""
    q_offsets, q_terms, q_weights = queries
    n_queries = q_offsets.shape[0] - 1
    for q in prange(n_queries):
        a = q_offsets[q]
        b = q_offsets[q + 1]
        out_counts[q] = wand_one(dx, q_terms[a:b], q_weights[a:b], k, params, work, out_docs[q], out_scores[q])
