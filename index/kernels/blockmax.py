"""Exact doc-range block-max traversal (in the spirit of BMP, Mallia et al., SIGIR 2024).

The documents are cut into ranges of ``R = 1 << shift`` consecutive doc ids
(*range blocks*). The index stores every term's postings as (term, block)
pairs (:mod:`.postings`): per pair the term's largest impact in the block
(``range_max``) and a varint with the block and the pair's posting count.

A query is processed in three steps:

1. **Upper bounds**: ``ub[b] = sum_t w_t * range_max[t, b]`` for every block,
   in one pass over the query terms' pairs (the cost is the number of pairs,
   not postings). The same pass links each block's pairs into a list (in
   query term order), so that scoring a block later visits exactly the query
   terms present in it. A query term with a dense row (:mod:`.dense`)
   adds its row's block maxima instead (one pass over the blocks), and its
   row's slice when a block is scored.
2. **Order**: the blocks with ``ub > 0`` are bucket-sorted by ``ub`` into
   ``N_BUCKETS`` buckets, highest first.
3. **Scoring**: blocks are scored exactly (a block-local accumulator of R
   slots) in that order, and their documents offered to the top-k heap,
   until every remaining bucket's upper edge is below the heap's threshold
   ``theta`` (the k-th best score so far).

Exactness: a document's score is at most its block's ``ub`` (both are summed
in query term order, so this also holds for float32 impacts). A block is
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

from .cost import COST_BLOCK, COST_BLOCK_ROW, COST_POSTING, bounds_cost
from .bundles import RangeBuffers
from .postings import low_at, next_pair, term_pairs
from .topk import heap_offer, heap_sort_desc

N_BUCKETS = 1024
MAX_TERMS = 2048   # query terms the pair entries can name (longer queries: -1, the caller scores exhaustively)
GIVE_UP_FIRST = 256   # blocks scored before the first early give-up test (the threshold rises fast at first)
GIVE_UP_EVERY = 32   # blocks scored between two early give-up tests


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


# --------------------------------------------------------------------------- search
def query_pairs(range_offsets, q_offsets, q_terms) -> np.ndarray:
    """Number of (term, block) pairs of every query (the size of its pair buffers)."""
    # only the query terms' entries (a diff of the whole offsets array would cost O(terms) per query)
    per_term = range_offsets[q_terms + 1] - range_offsets[q_terms]
    csum = np.zeros(len(per_term) + 1, np.int64)
    np.cumsum(per_term, out=csum[1:])
    return csum[q_offsets[1:]] - csum[q_offsets[:-1]]


@njit(cache=True, inline="always")
def _cannot_enter(u, b, shift, out_scores, out_docs):
    """With a full heap: no document of block b (bound u) can enter it, ties by doc id included."""
    theta = out_scores[0]
    return u < theta or (u == theta and (b << shift) > out_docs[0])


@njit(cache=True, inline="always")
def _score_block(ix, b, q_weights, bufs, dq, k, size, out_docs, out_scores):
    """Score block b exactly and offer its documents to the heap; returns (heap size, postings scored,
    dense rows' slices not counted). ``dq``: (dense rows, their weights, how many) of the query terms
    with a dense row."""
    dq_rows, dq_w, n_dq = dq
    local = bufs.local
    ent_pos = bufs.ent_pos
    shift = ix.shift
    nib = shift <= 4
    zero = out_scores.dtype.type(0)
    base = b << shift
    scored = 0
    x = bufs.head[b]
    while x >= 0:
        code = ent_pos[x]
        p0 = code >> 20
        n = (code & 0x1FF) + 1
        w = q_weights[(code >> 9) & 0x7FF]
        for p in range(p0, p0 + n):
            local[low_at(ix.low, p, nib)] += w * ix.impacts[p]
        scored += n
        x = bufs.ent_next[x]
    lim = min(1 << shift, ix.n_docs - base)
    for r in range(n_dq):   # the query terms with a dense row
        row = ix.dense[dq_rows[r]]
        w = dq_w[r]
        for y in range(lim):
            local[y] += w * local.dtype.type(row[base + y])
    for y in range(lim):
        s = local[y]
        if s > zero:
            local[y] = zero
            if size < k or s > out_scores[0] or (s == out_scores[0] and base + y < out_docs[0]):
                size = heap_offer(out_scores, out_docs, size, k, s, base + y)
    return size, scored


@njit(cache=True)
def blockmax_one(ix, q_terms, q_weights, k, params, bufs, out_docs, out_scores):
    """Top-k of one query by doc-range block-max traversal; returns the hit count.

    ``ix``: :class:`.bundles.IndexArrays`; ``params``: ``(budget, sweep_after)``
    (below); ``bufs``: :class:`.bundles.RangeBuffers`.

    The query terms with a dense row (``dense_slot[t] >= 0``, :mod:`.dense`;
    integer impacts) add their row's block maxima ``dense_max`` to the bounds
    in one pass over the blocks, and their row's slice to a block when it is
    scored, instead of their pairs.

    Work buffers (left as they were given): ``ub`` (n_blocks, score dtype, all
    zeros), ``local`` (R = 1 << shift, score dtype, all zeros), ``order``
    (n_blocks, int32), ``bucket_counts`` (N_BUCKETS + 1, int64), ``head``
    (n_blocks, int32, all -1), ``tail`` (n_blocks, int32, any content),
    ``ent_pos`` (int64) and ``ent_next`` (int32), at least as long as the
    query's pairs (:func:`query_pairs`), any content; ``stats`` is written.

    Pair e of the query (in query term order) is kept as
    ``ent_pos[e] = (first posting << 20) | (query term index << 9) | (count - 1)``
    and linked from ``head[b]`` through ``ent_next``: so blocks have at most
    512 documents, and a query with more than ``MAX_TERMS`` terms returns -1.

    ``budget`` bounds the traversal's estimated cost (:mod:`.cost`: its bounds
    pass, then every scored block; a negative budget: no bound). The traversal
    stops and returns -1 (the outputs are then meaningless; the planner falls
    back to exhaustive scoring) before its bounds pass if that alone would
    pass the budget, as soon as it has spent the budget, or when the blocks
    whose bucket still reaches the threshold, at the mean cost of the blocks
    scored so far, would take it past the budget (checked once the heap
    holds k hits, from the ``GIVE_UP_FIRST``-th scored block on, every
    ``GIVE_UP_EVERY`` blocks).

    ``stats`` (int64[3], written): blocks scored, their postings (the dense
    rows' slices not counted), and the (term, block) pairs read.

    ``sweep_after``: once that many blocks were scored in bound order and the
    heap holds k hits, the remaining blocks are visited in doc id order
    instead (each still skipped when its bound cannot beat the current
    threshold), which reads every term's postings front to back; ``-1``:
    never.
    """
    budget, sweep_after = params
    ub, _, order, bucket_counts, head, tail, ent_pos, ent_next, stats = bufs
    shift = ix.shift
    m = q_terms.shape[0]
    stats[:3] = 0
    if m > MAX_TERMS:
        return -1
    zero = out_scores.dtype.type(0)
    n_blocks = ub.shape[0]
    spent = 0.0
    if budget >= 0:
        spent = bounds_cost(ix.range_offsets, ix.dense_slot, n_blocks, q_terms)
        if spent > budget:
            return -1
    # 1. upper bounds per block, and each block's pairs linked in query term order (the dense
    #    rows' terms: their block maxima, and the rows kept for scoring)
    e = 0
    dq_rows = np.empty(m, np.int64)
    dq_w = np.empty(m, q_weights.dtype)
    n_dq = 0
    for i in range(m):
        t = q_terms[i]
        w = q_weights[i]
        r = ix.dense_slot[t]
        if r >= 0:
            rmax = ix.dense_max[r]
            for b in range(n_blocks):
                ub[b] += w * ub.dtype.type(rmax[b])
            dq_rows[n_dq] = r
            dq_w[n_dq] = w
            n_dq += 1
            continue
        j = ix.range_offsets[t]
        cur = term_pairs(ix.term_offsets, ix.code_offsets, t)
        while cur[0] < cur[1]:
            cur, blk, p, n = next_pair(ix.codes, shift, cur)
            ub[blk] += w * ix.range_max[j]
            ent_pos[e] = (p << 20) | (i << 9) | (n - 1)
            ent_next[e] = -1
            if head[blk] < 0:
                head[blk] = e
            else:
                ent_next[tail[blk]] = e
            tail[blk] = e
            e += 1
            j += 1
    stats[2] = e
    dq = (dq_rows, dq_w, n_dq)
    max_ub = zero
    for b in range(n_blocks):
        if ub[b] > max_ub:
            max_ub = ub[b]
    size = 0
    result = 0
    n_scored = 0
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
        # 3. score blocks in order of their bounds; after ``sweep_after`` blocks (and a full
        #    heap), sweep the rest in doc id order (sequential reads of every term's postings)
        bounds_spent = spent
        next_check = GIVE_UP_FIRST
        start = 0
        sweep = False
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
                if size >= k:
                    if sweep_after >= 0 and n_scored >= sweep_after:
                        sweep = True
                        break
                    if _cannot_enter(ub[b], b, shift, out_scores, out_docs):
                        continue
                size, n = _score_block(ix, b, q_weights, bufs, dq, k, size, out_docs, out_scores)
                ub[b] = zero   # scored
                n_scored += 1
                stats[1] += n
                spent += COST_BLOCK + COST_BLOCK_ROW * n_dq + COST_POSTING * n
                if budget >= 0 and spent > budget:
                    result = -1
                    break
                if budget >= 0 and size >= k and n_scored >= next_check:
                    # early give-up: the blocks whose bucket still reaches theta, at the mean
                    # cost of the blocks scored so far, would take the traversal past the budget
                    next_check = n_scored + GIVE_UP_EVERY
                    c_stop = np.int64(np.ceil(nb - np.float64(out_scores[0]) * np.float64(nb - 1)
                                              / np.float64(max_ub)))
                    c_stop = min(max(c_stop, c + 1), nb)
                    remaining = bucket_counts[c_stop - 1] - pos - 1
                    if spent + remaining * ((spent - bounds_spent) / n_scored) > budget:
                        result = -1
                        break
            if result < 0 or sweep:
                break
            start = end
        if sweep and result == 0:
            for b in range(n_blocks):
                if ub[b] == zero:
                    continue   # nothing to score (no pairs, no dense row) or scored already
                if _cannot_enter(ub[b], b, shift, out_scores, out_docs):
                    continue
                size, n = _score_block(ix, b, q_weights, bufs, dq, k, size, out_docs, out_scores)
                n_scored += 1
                stats[1] += n
                spent += COST_BLOCK + COST_BLOCK_ROW * n_dq + COST_POSTING * n
                if budget >= 0 and spent > budget:
                    result = -1
                    break
    # leave the buffers as they were given
    for b in range(n_blocks):
        ub[b] = zero
        if head[b] >= 0:
            head[b] = -1
    stats[0] = n_scored
    if result < 0:
        return -1
    heap_sort_desc(out_scores, out_docs, size)
    return size


@njit(cache=True, parallel=True)
def blockmax_batch(ix, queries, k, params, bufs, out_docs, out_scores, out_counts):
    """Block-max top-k of every query; one parallel loop over the workers' share of the batch.

    Worker w uses row w of every work buffer and handles queries w, w + n_workers, ...
    """
    q_offsets, q_terms, q_weights = queries
    ubs, locals_, orders, bucket_counts, heads, tails, ent_pos, ent_next, stats = bufs
    n_queries = q_offsets.shape[0] - 1
    n_workers = ubs.shape[0]
    for wk in prange(n_workers):
        mine = RangeBuffers(ubs[wk], locals_[wk], orders[wk], bucket_counts[wk], heads[wk], tails[wk], ent_pos[wk],
                            ent_next[wk], stats[wk])
        for q in range(wk, n_queries, n_workers):
            a = q_offsets[q]
            b = q_offsets[q + 1]
            out_counts[q] = blockmax_one(ix, q_terms[a:b], q_weights[a:b], k, params, mine, out_docs[q],
                                         out_scores[q])
