"""Approximate doc-range block-max traversal (``approx``): the traversal of :mod:`.blockmax` with
three knobs that trade recall for time, in the spirit of BMP's ``alpha`` and ``beta`` (Mallia et
al., SIGIR 2024) and of Seismic's query term cut.

* ``alpha`` in (0, 1]: a block is scored only while ``alpha * ub > theta`` (``ub`` its upper
  bound, ``theta`` the heap's k-th score), and the traversal stops at the first bucket whose upper
  edge times ``alpha`` cannot beat ``theta``. ``alpha = 1`` is the exact rule of :mod:`.blockmax`
  (ties by doc id included); smaller values stop earlier.
* ``query_cut`` (0 = all) and ``query_mass`` (1 = all): only the query terms with the largest
  bound ``w_t * term_max[t]`` drive the traversal: at most ``query_cut`` of them, and the fewest
  whose bounds sum to at least ``query_mass`` of the query's total (the first always; equal
  bounds in query term order). The other terms' pairs are never read in the bounds pass and their
  postings never scored there.
* ``max_blocks`` (-1 = none): the traversal stops after scoring that many blocks (an anytime
  budget).

Scores are exact: after the traversal the top k, found on the kept terms' partial scores, get the
left-out terms' contributions (each left-out term's pairs decoded once, up to the block of the
last hit; a term with a dense row read at the hit), and are sorted again. So every returned score
is the document's exhaustive score; only which documents are returned is approximate. With
``alpha = 1`` and every term kept (and no block budget) the answer is the exhaustive top k.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .blockmax import MAX_TERMS, N_BUCKETS, _cannot_enter, _score_block
from .bundles import RangeBuffers
from .postings import low_at, next_pair, term_pairs
from .topk import heap_push, heap_sort_desc


@njit(cache=True)
def kept_terms(q_terms, q_weights, term_max, query_cut, query_mass):
    """Which query terms drive the traversal (bool per term): by bound ``w * term_max`` descending
    (ties in query term order), at most ``query_cut`` (0 = no limit), and the fewest whose bounds
    reach ``query_mass`` of the total (1 = no limit); the first always."""
    m = q_terms.shape[0]
    keep = np.ones(m, np.bool_)
    if m == 0 or ((query_cut <= 0 or query_cut >= m) and query_mass >= 1.0):
        return keep
    contrib = np.empty(m, np.float64)
    total = 0.0
    for i in range(m):
        contrib[i] = np.float64(q_weights[i]) * np.float64(term_max[q_terms[i]])
        total += contrib[i]
    order = np.argsort(-contrib, kind="mergesort")
    keep[:] = False
    acc = 0.0
    for j in range(m):
        if j > 0 and ((query_cut > 0 and j >= query_cut) or (query_mass < 1.0 and acc >= query_mass * total)):
            break
        keep[order[j]] = True
        acc += contrib[order[j]]
    return keep


@njit(cache=True)
def _add_left_out(ix, q_terms, q_weights, keep, size, out_docs, out_scores):
    """Adds the left-out terms' contributions to the ``size`` hits (doc ids ``out_docs``); then
    re-sorts them (score desc, doc id asc)."""
    shift = ix.shift
    nib = shift <= 4
    mask = (1 << shift) - 1
    srt = np.argsort(out_docs[:size])
    last_blk = np.int64(out_docs[srt[size - 1]]) >> shift
    for i in range(q_terms.shape[0]):
        if keep[i]:
            continue
        t = q_terms[i]
        w = q_weights[i]
        r = ix.dense_slot[t]
        if r >= 0:
            row = ix.dense[r]
            for j in range(size):
                out_scores[j] += w * out_scores.dtype.type(row[out_docs[j]])
            continue
        cur = term_pairs(ix.term_offsets, ix.code_offsets, t)
        h = 0
        while cur[0] < cur[1] and h < size:
            cur, blk, p, n = next_pair(ix.codes, shift, cur)
            if blk > last_blk:
                break
            while h < size and (np.int64(out_docs[srt[h]]) >> shift) < blk:
                h += 1
            g = h
            while g < size and (np.int64(out_docs[srt[g]]) >> shift) == blk:
                j = srt[g]
                lo = np.int64(out_docs[j]) & mask
                for q in range(p, p + n):
                    if low_at(ix.low, q, nib) == lo:
                        out_scores[j] += w * ix.impacts[q]
                        break
                g += 1
    tmp_s = out_scores[:size].copy()
    tmp_d = out_docs[:size].copy()
    n = 0
    for j in range(size):
        n = heap_push(out_scores, out_docs, n, tmp_s[j], tmp_d[j])
    heap_sort_desc(out_scores, out_docs, size)


@njit(cache=True)
def approx_one(ix, q_terms, q_weights, k, params, bufs, out_docs, out_scores):
    """Approximate top-k of one query (module docs); returns the hit count (-1: more than
    ``MAX_TERMS`` terms, not taken).

    ``ix``: :class:`.bundles.IndexArrays`; ``params``: ``(alpha, query_cut, query_mass,
    max_blocks)``; ``bufs``: :class:`.bundles.RangeBuffers`, given and left as
    :func:`.blockmax.blockmax_one` wants them; ``stats`` is written (blocks scored, their
    postings, pairs read).
    """
    alpha, query_cut, query_mass, max_blocks = params
    ub, _, order, bucket_counts, head, tail, ent_pos, ent_next, stats = bufs
    shift = ix.shift
    m = q_terms.shape[0]
    stats[:3] = 0
    if m > MAX_TERMS:
        return -1
    zero = out_scores.dtype.type(0)
    n_blocks = ub.shape[0]
    keep = kept_terms(q_terms, q_weights, ix.term_max, query_cut, query_mass)
    any_left_out = False
    # 1. upper bounds per block from the kept terms, and each block's pairs linked in query term order
    e = 0
    dq_rows = np.empty(m, np.int64)
    dq_w = np.empty(m, q_weights.dtype)
    n_dq = 0
    for i in range(m):
        if not keep[i]:
            any_left_out = True
            continue
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
    n_scored = 0
    exact = alpha >= 1.0
    if max_ub > zero:
        # 2. bucket sort of the blocks with ub > 0, highest bucket first (as blockmax_one)
        #    (each block's key computed once and kept in ``tail``, free after the bounds pass)
        nb = N_BUCKETS
        bucket_counts[:] = 0
        for b in range(n_blocks):
            u = ub[b]
            if u > zero:
                key = nb - 1 - np.int64(np.floor(np.float64(u) * np.float64(nb - 1) / np.float64(max_ub)))
                tail[b] = key
                bucket_counts[key + 1] += 1
        for c in range(nb):
            bucket_counts[c + 1] += bucket_counts[c]
        for b in range(n_blocks):
            if ub[b] > zero:
                key = tail[b]
                order[bucket_counts[key]] = b
                bucket_counts[key] += 1
        # 3. score blocks in order of their bounds while alpha * bound can beat theta
        start = 0
        done = False
        for c in range(nb):
            end = bucket_counts[c]
            if start == end:
                continue
            if size >= k:
                # every block of bucket c has ub * (nb - 1) / max_ub < (nb - c)
                if alpha * np.float64(nb - c) * np.float64(max_ub) <= np.float64(out_scores[0]) * np.float64(nb - 1):
                    break
            for pos in range(start, end):
                b = order[pos]
                if size >= k:
                    if exact:
                        if _cannot_enter(ub[b], b, shift, out_scores, out_docs):
                            continue
                    elif alpha * np.float64(ub[b]) <= np.float64(out_scores[0]):
                        continue
                size, n = _score_block(ix, b, q_weights, bufs, dq, k, size, out_docs, out_scores)
                n_scored += 1
                stats[1] += n
                if max_blocks >= 0 and n_scored >= max_blocks:
                    done = True
                    break
            if done:
                break
            start = end
    # leave the buffers as they were given
    for b in range(n_blocks):
        ub[b] = zero
        if head[b] >= 0:
            head[b] = -1
    stats[0] = n_scored
    heap_sort_desc(out_scores, out_docs, size)
    if any_left_out and size > 0:
        _add_left_out(ix, q_terms, q_weights, keep, size, out_docs, out_scores)
    return size


@njit(cache=True, parallel=True)
def approx_batch(ix, queries, k, params, bufs, out_docs, out_scores, out_counts):
    """Approximate top-k of every query; one parallel loop over the workers' share of the batch.

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
            out_counts[q] = approx_one(ix, q_terms[a:b], q_weights[a:b], k, params, mine, out_docs[q],
                                       out_scores[q])


# --------------------------------------------------------------------------- NumPy reference
def kept_terms_ref(q_terms, q_weights, term_max, query_cut, query_mass):
    """Plain NumPy reference of :func:`kept_terms`."""
    m = len(q_terms)
    keep = np.ones(m, bool)
    if m == 0 or ((query_cut <= 0 or query_cut >= m) and query_mass >= 1.0):
        return keep
    contrib = np.asarray(q_weights, np.float64) * np.asarray(term_max, np.float64)[np.asarray(q_terms)]
    order = np.argsort(-contrib, kind="stable")
    total = float(sum(contrib.tolist()))
    keep[:] = False
    acc = 0.0
    for j, i in enumerate(order.tolist()):
        if j > 0 and ((query_cut > 0 and j >= query_cut) or (query_mass < 1.0 and acc >= query_mass * total)):
            break
        keep[i] = True
        acc += float(contrib[i])
    return keep


def approx_ref(term_offsets, docs, impacts, term_max, shift, n_docs, q_terms, q_weights, k, params):
    """Plain NumPy reference of :func:`approx_one` on decoded postings (``docs``: every posting's doc
    id, as :func:`.postings.decode_ref` gives them), integer impacts: (doc ids, scores), best first.

    The same traversal written plainly: block bounds from the kept terms' block maxima, blocks in
    decreasing bucket of their bound (block id order within a bucket), the same stop and skip
    rules against the k-th best partial score of the documents scored so far (ties by doc id), then
    the exact scores of the top k and a sort."""
    alpha, query_cut, query_mass, max_blocks = params
    q_terms = np.asarray(q_terms, np.int64)
    q_weights = np.asarray(q_weights, np.int64)
    R = 1 << shift
    n_blocks = (n_docs + R - 1) // R
    keep = kept_terms_ref(q_terms, q_weights, term_max, query_cut, query_mass)
    partial = np.zeros(n_docs, np.int64)
    full = np.zeros(n_docs, np.int64)
    ub = np.zeros(n_blocks, np.int64)
    for t, w, kp in zip(q_terms.tolist(), q_weights.tolist(), keep.tolist()):
        a, b = int(term_offsets[t]), int(term_offsets[t + 1])
        d = np.asarray(docs[a:b], np.int64)
        v = np.asarray(impacts[a:b], np.int64) * w
        full[d] += v
        if kp:
            partial[d] += v
            bmax = np.zeros(n_blocks, np.int64)
            np.maximum.at(bmax, d >> shift, np.asarray(impacts[a:b], np.int64))
            ub += w * bmax
    max_ub = int(ub.max()) if n_blocks else 0
    found: list[tuple[int, int]] = []   # (score, doc) of the positive documents of the scored blocks
    if max_ub > 0:
        nb = N_BUCKETS
        blocks = np.flatnonzero(ub > 0)
        keys = nb - 1 - np.floor(ub[blocks].astype(np.float64) * (nb - 1) / max_ub).astype(np.int64)
        order = blocks[np.lexsort((blocks, keys))]
        n_scored = 0
        prev_key = -1
        for b, key in zip(order.tolist(), keys[np.lexsort((blocks, keys))].tolist()):
            full_heap = len(found) >= k
            if full_heap:
                found.sort(key=lambda x: (-x[0], x[1]))
                theta, worst = found[k - 1]
                if key != prev_key and alpha * (nb - key) * max_ub <= theta * (nb - 1):
                    break
            prev_key = key
            if full_heap:
                u = int(ub[b])
                if alpha >= 1.0:
                    if u < theta or (u == theta and b * R > worst):
                        continue
                elif alpha * u <= theta:
                    continue
            lo, hi = b * R, min(b * R + R, n_docs)
            for d in range(lo, hi):
                if partial[d] > 0:
                    found.append((int(partial[d]), d))
            n_scored += 1
            if max_blocks >= 0 and n_scored >= max_blocks:
                break
    found.sort(key=lambda x: (-x[0], x[1]))
    top = [d for _, d in found[:k]]
    hits = sorted(((int(full[d]), d) for d in top), key=lambda x: (-x[0], x[1]))
    return np.array([d for _, d in hits], np.int64), np.array([s for s, _ in hits], np.int64)
