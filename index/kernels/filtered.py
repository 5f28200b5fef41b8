"""Two-phase term-at-a-time scoring with range-block filtering (exact; integer impacts).

Dynamic pruning for large k on collections with doc id locality (the planner
runs it above ``max_k`` only with ``PlannerConfig.large_k = "filtered"``). A
query is processed in five steps over a dense accumulator:

1. **Full phase**: the query terms with a dense row (:mod:`.dense`) are
   scored in full (one vectorised pass each); the others are ordered by
   their largest possible contribution ``w_t * term_max[t]`` (largest
   first) and the shortest prefix holding at least ``full_ratio`` of their
   postings is scored in full too (the flat loop of :mod:`.exhaustive`).
   These terms decide the ranking; scoring them needs no bound.
2. **Threshold**: ``bmax[b]``, the largest partial score in every range
   block b of ``R = 1 << shift`` documents, in one pass over the
   accumulator. A lower bound of the k-th largest block maximum (from a
   histogram, :func:`.topk.kth_lower_bound`), then, from a histogram of the
   partial scores of the documents in the blocks that reach it, a tighter
   one, ``theta``: a lower bound of the k-th largest partial score
   (:func:`.topk.doc_bound`). Either is a lower bound of the final k-th best
   score: k documents have partial scores, lower bounds of their final
   scores, that reach it.
3. **Bounds of the rest**: ``ub[b] = sum_t w_t * range_max[t, b]`` over the
   remaining terms, in one pass over their (term, block) pairs (which are
   stored in a buffer as they are decoded).
4. **Filtered phase**: a remaining term's pair is scored only if its block
   can still hold a top-k document, ``bmax[b] + ub[b] >= theta``. The rest of
   the query's postings are mostly those of long lists with small weights,
   and most of their blocks cannot reach ``theta``.
5. **Selection**: the final maxima of the blocks that pass the same test
   (kept in a list as step 4's test runs, so that only they are read)
   give a second lower bound of the k-th score (as in step 2, never below
   ``theta``); the documents of the blocks whose maximum reaches it are
   selected in doc id order (ties by doc id; :func:`.topk.select_listed`).

Exactness: a document d of block b has final score
``acc[d] + (rest of d's terms) <= bmax[b] + ub[b]``. A top-k document scores
at least the final k-th score, hence at least ``theta``, so its block passes
every test and it is scored in full and selected; a document of a
block that fails the test scores below ``theta`` and cannot be in the top k,
not even by a tie (nor can one below the second bound of step 5). Scores are
sums of integers, so no rounding is involved.
Float impacts are not taken (the planner scores those exhaustively): their
sums depend on the order in which the terms are added, and this processor
adds them in a different order from the exhaustive scorer. The kernel
returns -1 for them.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .bundles import FilterBuffers
from .exhaustive import FLAT_CHUNK, score_terms
from .postings import low_at, next_pair, term_pairs
from .topk import (HIST_BITS, acc_block_maxima, doc_bound, kth_lower_bound, listed_block_maxima,  # noqa: F401
                   select_listed)


@njit(cache=True)
def full_prefix(ix, q_terms, q_weights, full_ratio):
    """(term order, n_full): the query term positions in the order of the phases, and how many are
    scored in full. The terms with a dense row come first (cheap in full: one vectorised pass each);
    then the others by ``w * term_max`` (largest first, stable), of which the shortest prefix holding
    at least ``full_ratio`` of their postings is scored in full too."""
    term_offsets = ix.term_offsets
    nq = q_terms.shape[0]
    u = np.empty(nq, np.float64)
    sdf = 0
    n_dense = 0
    for i in range(nq):
        t = q_terms[i]
        if ix.dense_slot[t] >= 0:
            u[i] = -np.inf
            n_dense += 1
        else:
            u[i] = -np.float64(q_weights[i]) * np.float64(ix.term_max[t])
            sdf += term_offsets[t + 1] - term_offsets[t]
    order = np.argsort(u, kind="mergesort")
    n_full = n_dense
    done = 0
    while n_full < nq and done < full_ratio * sdf:
        t = q_terms[order[n_full]]
        done += term_offsets[t + 1] - term_offsets[t]
        n_full += 1
    return order, n_full


@njit(cache=True)
def rest_bounds(ix, q_terms, q_weights, order, start, ub, pairs):
    """``ub[b] += w_t * range_max[t, b]`` over the pairs of the query terms ``order[start:]``, each
    pair also written to ``pairs`` as ``(block << 16) | count`` in that order; returns the pairs
    written."""
    e = 0
    for i in range(start, q_terms.shape[0]):
        t = q_terms[order[i]]
        w = np.int64(q_weights[order[i]])
        j = ix.range_offsets[t]
        cur = term_pairs(ix.term_offsets, ix.code_offsets, t)
        while cur[0] < cur[1]:
            cur, blk, _, n = next_pair(ix.codes, ix.shift, cur)
            ub[blk] += w * ix.range_max[j]
            pairs[e] = (np.int64(blk) << 16) | n
            e += 1
            j += 1
    return e


@njit(cache=True)
def _score_passing_flat(ix, q_terms, q_weights, order, n_full, pairs, keep, acc):
    """Step 4 for range blocks of up to 16 documents: each pair whose block passes (``keep[b] == 1``)
    writes its block base and posting positions into 16 slots of small buffers (the next pair
    overwrites the surplus), and the buffered postings are then scored in one flat loop, as in the
    exhaustive scorer."""
    term_offsets = ix.term_offsets
    range_offsets = ix.range_offsets
    low = ix.low
    impacts = ix.impacts
    shift = ix.shift
    bases = np.empty(FLAT_CHUNK + 16, np.int32)
    poss = np.empty(FLAT_CHUNK + 16, np.int32)
    e = 0
    for i in range(n_full, q_terms.shape[0]):
        t = q_terms[order[i]]
        w = q_weights[order[i]]
        p = term_offsets[t]
        eend = e + range_offsets[t + 1] - range_offsets[t]
        while e < eend:
            o = 0
            while e < eend and o <= FLAT_CHUNK - 16:
                v = pairs[e]
                e += 1
                n = v & 0xFFFF
                blk = v >> 16
                if keep[blk] != 0:
                    base = np.int32(blk << shift)
                    rel = np.int32(p - term_offsets[t])
                    for y in range(16):
                        bases[o + y] = base
                        poss[o + y] = rel + y
                    o += n
                p += n
            p0 = term_offsets[t]
            for j in range(o):
                q = p0 + poss[j]
                acc[bases[j] + ((np.int32(low[q >> 1]) >> ((q & 1) << 2)) & 15)] += w * impacts[q]


@njit(cache=True)
def _score_passing_pairs(ix, q_terms, q_weights, order, n_full, pairs, keep, acc):
    """Step 4 pair by pair (any range block size)."""
    shift = ix.shift
    nib = shift <= 4
    e = 0
    for i in range(n_full, q_terms.shape[0]):
        t = q_terms[order[i]]
        w = q_weights[order[i]]
        p = ix.term_offsets[t]
        for _ in range(ix.range_offsets[t], ix.range_offsets[t + 1]):
            v = pairs[e]
            e += 1
            n = v & 0xFFFF
            blk = v >> 16
            if keep[blk] != 0:
                base = blk << shift
                for q in range(p, p + n):
                    acc[base + low_at(ix.low, q, nib)] += w * ix.impacts[q]
            p += n


@njit(cache=True)
def filtered_one(ix, q_terms, q_weights, k, params, bufs, out_docs, out_scores):
    """Top-k of one query; returns the hit count, or -1 for float scores (not taken).

    ``ix``: :class:`.bundles.IndexArrays` (the dense rows are read by the
    full phase; the filtered phase reads every term from its postings);
    ``params``: ``(full_ratio,)``; ``bufs``: :class:`.bundles.FilterBuffers`:
    ``acc`` (n_docs, score dtype), ``bmax`` and ``ub`` (range blocks, score
    dtype) and ``hist`` (int64[2**HIST_BITS]) must be all zeros and are left
    all zeros; ``keep`` (uint8, range blocks) and ``blocks`` (int32, range
    blocks) are scratch; ``pairs`` (int64) holds at least the query terms'
    pair count.
    """
    acc, bmax, ub, keep, hist, blocks, pairs = bufs
    shift = ix.shift
    zero = acc.dtype.type(0)
    if acc.dtype.type(0.5) != zero:   # float scores
        return -1
    n_blocks = bmax.shape[0]
    order, n_full = full_prefix(ix, q_terms, q_weights, params[0])
    # 1. full phase
    score_terms(ix, q_terms[order[:n_full]], q_weights[order[:n_full]], acc)
    # 2. block maxima of the partial scores; a lower bound of their k-th largest, then of the k-th
    #    largest partial score
    top = acc_block_maxima(acc, shift, bmax)
    theta = kth_lower_bound(bmax, k, np.int64(top), hist)
    theta = doc_bound(acc, shift, bmax, theta, np.int64(top), k, hist)
    # 3. bounds of the remaining terms' blocks; their pairs decoded once into the buffer
    rest_bounds(ix, q_terms, q_weights, order, n_full, ub, pairs)
    # which blocks can still hold a top-k document: a flag per block, and their list (ascending)
    n_kept = 0
    for b in range(n_blocks):
        if np.int64(bmax[b]) + np.int64(ub[b]) >= theta:
            keep[b] = 1
            blocks[n_kept] = b
            n_kept += 1
        else:
            keep[b] = 0
    # 4. filtered phase
    if shift <= 4:
        _score_passing_flat(ix, q_terms, q_weights, order, n_full, pairs, keep, acc)
    else:
        _score_passing_pairs(ix, q_terms, q_weights, order, n_full, pairs, keep, acc)
    # 5. selection: the final maxima of the blocks that pass (into bmax[:n_kept]; the partial maxima
    #    are not needed any more) give a tighter bound, then the documents of the blocks that reach
    #    it are selected in doc id order
    top = listed_block_maxima(acc, shift, blocks, n_kept, bmax)
    theta = max(theta, kth_lower_bound(bmax[:n_kept], k, np.int64(top), hist))
    size = select_listed(acc, shift, (blocks, bmax, n_kept), theta, np.int64(top), k, hist, out_docs, out_scores)
    acc[:] = zero
    bmax[:] = zero
    ub[:] = zero
    return size


@njit(cache=True, parallel=True)
def filtered_batch(ix, queries, k, params, bufs, out_docs, out_scores, out_counts):
    """Top-k of every query; one parallel loop over the workers' share of the batch (rows of the buffers)."""
    q_offsets, q_terms, q_weights = queries
    accs, bmaxs, ubs, keeps, hists, blocks, pairs = bufs
    n_queries = q_offsets.shape[0] - 1
    n_workers = accs.shape[0]
    for w in prange(n_workers):
        mine = FilterBuffers(accs[w], bmaxs[w], ubs[w], keeps[w], hists[w], blocks[w], pairs[w])
        for q in range(w, n_queries, n_workers):
            a = q_offsets[q]
            b = q_offsets[q + 1]
            out_counts[q] = filtered_one(ix, q_terms[a:b], q_weights[a:b], k, params, mine, out_docs[q],
                                         out_scores[q])


def full_prefix_ref(term_offsets, term_max, dense_slot, q_terms, q_weights, full_ratio):
    """Plain NumPy reference of :func:`full_prefix`."""
    q = np.asarray(q_terms, np.int64)
    df = term_offsets[q + 1] - term_offsets[q]
    dense = dense_slot[q] >= 0
    u = np.where(dense, -np.inf, -np.asarray(q_weights, np.float64) * term_max[q].astype(np.float64))
    order = np.argsort(u, kind="stable")
    n_dense = int(dense.sum())
    # the sparse terms' postings, in phase order, until at least full_ratio of them are taken
    done = np.concatenate([[0], np.cumsum(df[order[n_dense:]])])
    need = full_ratio * int(df[~dense].sum())
    n_more = int(np.argmax(done >= need)) if (done >= need).any() else len(done) - 1
    return order, n_dense + n_more


def rest_bounds_ref(term_offsets, docs, impacts, shift, n_docs, q_terms, q_weights, order, start):
    """Plain NumPy reference of :func:`rest_bounds` from plain doc ids: (ub, pairs)."""
    n_blocks = (n_docs + (1 << shift) - 1) >> shift
    ub = np.zeros(n_blocks, np.int64)
    pairs = []
    for i in order[start:]:
        t = int(q_terms[i])
        s, e = int(term_offsets[t]), int(term_offsets[t + 1])
        blocks = np.asarray(docs[s:e], np.int64) >> shift
        uniq, first, counts = np.unique(blocks, return_index=True, return_counts=True)
        if len(uniq):
            ub[uniq] += int(q_weights[i]) * np.maximum.reduceat(impacts[s:e].astype(np.int64), first)
        pairs.extend(((uniq << 16) | counts).tolist())
    return ub, np.asarray(pairs, np.int64)
