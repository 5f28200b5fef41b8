"""Doc id reordering by recursive graph bisection (BP).

Dhulipala et al., "Compressing graphs and indexes with recursive graph
bisection" (KDD 2016), as implemented in PISA's ``recursive_graph_bisection``
and refined by Mackenzie et al., "Faster index reordering with bipartite graph
partitioning" (SIGIR 2021).

Documents that share terms should get nearby doc ids: the gaps between the
doc ids of a posting list then get small, the lists compress better, and doc
range block maxima (``blockmax.py``) bound tighter.

Algorithm
---------
The documents are seen as one side of a bipartite graph whose other side is
the terms (the forward index: document -> its distinct term ids). Starting
from the input order, :func:`bp_order` recursively bisects doc ranges:

1. a node (a range of positions of the current order) is sorted by original
   doc id (as PISA does, so that the locality of the input order seeds every
   split) and cut in the middle: the left half gets ``n_L = n // 2`` documents,
   the right half ``n_R = n - n_L``;
2. the degrees ``d_L(t)``, ``d_R(t)`` (how many documents of each half hold
   term t) are counted once; then for up to ``iterations`` rounds:

   * every document gets a *move gain*: the decrease of the cost (below) if it
     alone moved to the other half, degrees otherwise unchanged;
   * both halves are sorted by gain, highest first (ties: position, i.e.
     original doc id), and the i-th documents of the two lists are swapped
     while ``gain_left[i] + gain_right[i] > 0``; the degrees are updated after
     every swap, the gains are not (they are recomputed next round);
   * a round without a swap ends the node early;
3. both halves are bisected in turn (one level of the recursion at a time,
   for all nodes of the level), until a part has ``<= min_partition``
   documents or ``depth`` levels are done. The leaves are left sorted by
   original doc id.

Cost function (the log-gap model of the paper): a term that occurs in ``d``
of the ``n`` documents of a half costs ``d * log2(n / (d + 1))`` bits (about
what its ``d`` gaps cost when spread evenly over ``n`` doc ids). The cost of a
split is summed over the terms and the two halves. With
``F(d) = d * log2(d + 1)`` and ``D(d) = F(d + 1) - F(d)`` (tabulated once for
``d <= N``), moving one document holding term t from a half with ``(n_a, a)``
(size, degree) to one with ``(n_b, b)`` lowers the cost of t by::

    log2(n_a) - log2(n_b) + D(b) - D(a - 1)

which depends on the term only, so it is computed once per term and round,
and a document's gain is the sum of these over its terms.

Parameters of :func:`bp_order`: ``iterations`` (rounds per node, 20 as in
PISA), ``min_partition`` (parts this small are not split), ``depth`` (levels
at most; ``None``: no limit besides ``min_partition``, i.e.
``ceil(log2(N / min_partition))`` levels and parts of ``min_partition / 2`` to
``min_partition`` documents, PISA's "leaves of about a minimum size").

BP is a local search from the input order: from a random order it recovers
much of the locality a collection has, but from an order that already has a
lot (e.g. passages grouped by source) it can end up no better than that
order; measure (:func:`log_gap_cost`, :func:`range_pairs`) before adopting it.

Parallelism and determinism: the nodes of a level hold disjoint doc ranges.
Levels with many nodes run one node per worker (``prange`` over workers, each
with its own degree / gain scratch of ``n_terms`` entries, so no two threads
write the same slot); levels with few, big nodes run the nodes one after
another with a ``prange`` over the documents of the node for the gains (each
gain written by exactly one thread). Degrees are only ever counted and
updated by the one thread that owns the node. A document's gain is summed in
the same order on either path, so the result is the same bit for bit whatever
the thread count. Memory: the order, one float64 gain per document, the
``D`` table (``N + 1`` float64) and ``5 * n_workers * n_terms`` scratch words,
besides the forward index itself.

Besides :func:`bp_order` the module has :func:`apply_order` (relabel an
inverted index), :func:`forward_from_inverted` (its transpose) and two
measures of an order: :func:`log_gap_cost` and :func:`range_pairs`. Every
kernel keeps a plain-NumPy reference (``*_ref``) beside it.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange


# --------------------------------------------------------------------------- forward index
@njit(cache=True)
def _forward_from_inverted(term_offsets, docs, n_docs):
    n_terms = term_offsets.shape[0] - 1
    doc_offsets = np.zeros(n_docs + 1, dtype=np.int64)
    for p in range(docs.shape[0]):
        doc_offsets[docs[p] + 1] += 1
    for d in range(n_docs):
        doc_offsets[d + 1] += doc_offsets[d]
    cursor = doc_offsets[:-1].copy()
    doc_terms = np.empty(docs.shape[0], dtype=np.int32)
    for t in range(n_terms):
        for p in range(term_offsets[t], term_offsets[t + 1]):
            d = docs[p]
            doc_terms[cursor[d]] = t
            cursor[d] += 1
    return doc_offsets, doc_terms


def _check_inverted(term_offsets, docs, n_docs=None):
    term_offsets = np.ascontiguousarray(term_offsets, dtype=np.int64)
    docs = np.ascontiguousarray(docs, dtype=np.int32)
    if term_offsets.ndim != 1 or term_offsets.shape[0] < 1 or docs.ndim != 1:
        raise ValueError("term_offsets must be int64[T+1] and docs int32[P]")
    if term_offsets[0] != 0 or term_offsets[-1] != docs.shape[0]:
        raise ValueError("term_offsets must start at 0 and end at len(docs)")
    if docs.shape[0] and (docs.min() < 0 or (n_docs is not None and docs.max() >= n_docs)):
        raise ValueError("doc ids out of range")
    return term_offsets, docs


def forward_from_inverted(term_offsets, docs, n_docs):
    """Transpose an inverted index into a forward index.

    Returns ``(doc_offsets int64[n_docs + 1], doc_terms int32[P])``: the terms
    of document d are ``doc_terms[doc_offsets[d]:doc_offsets[d + 1]]``, in
    ascending term id order. O(P) counting sort.
    """
    term_offsets, docs = _check_inverted(term_offsets, docs, int(n_docs))
    return _forward_from_inverted(term_offsets, docs, int(n_docs))


def forward_from_inverted_ref(term_offsets, docs, n_docs):
    """Plain NumPy reference of :func:`forward_from_inverted`."""
    term_offsets = np.asarray(term_offsets, np.int64)
    docs = np.asarray(docs, np.int64)
    terms = np.repeat(np.arange(len(term_offsets) - 1, dtype=np.int64), np.diff(term_offsets))
    idx = np.lexsort((terms, docs))
    doc_offsets = np.zeros(n_docs + 1, np.int64)
    np.cumsum(np.bincount(docs, minlength=n_docs), out=doc_offsets[1:])
    return doc_offsets, terms[idx].astype(np.int32)


# --------------------------------------------------------------------------- apply an order
@njit(cache=True)
def _apply_order(term_offsets, docs, impacts, order, out_docs, out_impacts):
    n_terms = term_offsets.shape[0] - 1
    n_docs = order.shape[0]
    # forward index of (term, impact) per old doc id
    fwd_offsets = np.zeros(n_docs + 1, dtype=np.int64)
    for p in range(docs.shape[0]):
        fwd_offsets[docs[p] + 1] += 1
    for d in range(n_docs):
        fwd_offsets[d + 1] += fwd_offsets[d]
    cursor = fwd_offsets[:-1].copy()
    fwd_terms = np.empty(docs.shape[0], dtype=np.int32)
    fwd_impacts = np.empty_like(impacts)
    for t in range(n_terms):
        for p in range(term_offsets[t], term_offsets[t + 1]):
            d = docs[p]
            q = cursor[d]
            fwd_terms[q] = t
            fwd_impacts[q] = impacts[p]
            cursor[d] = q + 1
    # back to postings, visiting the documents in their new order
    tcur = term_offsets[:-1].copy()
    for new in range(n_docs):
        old = order[new]
        for q in range(fwd_offsets[old], fwd_offsets[old + 1]):
            t = fwd_terms[q]
            p = tcur[t]
            out_docs[p] = new
            out_impacts[p] = fwd_impacts[q]
            tcur[t] = p + 1


def _check_order(order):
    order = np.ascontiguousarray(order, dtype=np.int32)
    n = order.shape[0]
    seen = np.zeros(n, dtype=bool)
    if n and (order.min() < 0 or order.max() >= n):
        raise ValueError("order is not a permutation")
    seen[order] = True
    if not seen.all():
        raise ValueError("order is not a permutation")
    return order


def apply_order(term_offsets, docs, impacts, order):
    """Relabel an inverted index with a new doc order (``order[new_id] = old_id``).

    Returns ``(new_docs int32[P], new_impacts[P])`` (impacts keep their dtype):
    every posting's doc id is replaced by its new id and each term's postings
    are re-sorted by it; ``term_offsets`` stay valid. O(P + N) by two
    counting-sort transposes (through a forward index of (term, impact)).
    """
    order = _check_order(order)
    term_offsets, docs = _check_inverted(term_offsets, docs, order.shape[0])
    impacts = np.ascontiguousarray(impacts)
    if impacts.shape != docs.shape:
        raise ValueError("impacts and docs differ in length")
    out_docs = np.empty_like(docs)
    out_impacts = np.empty_like(impacts)
    _apply_order(term_offsets, docs, impacts, order, out_docs, out_impacts)
    return out_docs, out_impacts


def apply_order_ref(term_offsets, docs, impacts, order):
    """Plain NumPy reference of :func:`apply_order`."""
    order = np.asarray(order, np.int64)
    inv = np.empty(len(order), np.int64)
    inv[order] = np.arange(len(order))
    new = inv[np.asarray(docs, np.int64)]
    terms = np.repeat(np.arange(len(term_offsets) - 1), np.diff(term_offsets))
    idx = np.lexsort((new, terms))
    return new[idx].astype(np.int32), np.asarray(impacts)[idx]


# --------------------------------------------------------------------------- measures of an order
@njit(cache=True, parallel=True)
def _log_gap_sums(term_offsets, docs, out):
    n_terms = term_offsets.shape[0] - 1
    for t in prange(n_terms):
        s = 0.0
        prev = -1
        for p in range(term_offsets[t], term_offsets[t + 1]):
            d = docs[p]
            s += math.log2(d - prev + 1.0)
            prev = d
        out[t] = s


def log_gap_cost(term_offsets, docs) -> float:
    """Average over postings of ``log2(gap + 1)``, in bits.

    ``gap`` is the difference to the previous doc id of the same term (for a
    term's first posting: doc id + 1). Lower is more compressible. 0.0 for an
    index without postings.
    """
    term_offsets, docs = _check_inverted(term_offsets, docs)
    if docs.shape[0] == 0:
        return 0.0
    sums = np.empty(term_offsets.shape[0] - 1, dtype=np.float64)
    _log_gap_sums(term_offsets, docs, sums)
    return float(sums.sum() / docs.shape[0])


def log_gap_cost_ref(term_offsets, docs) -> float:
    """Plain NumPy reference of :func:`log_gap_cost`."""
    docs = np.asarray(docs, np.int64)
    if len(docs) == 0:
        return 0.0
    prev = np.concatenate(([-1], docs[:-1]))
    starts = np.asarray(term_offsets[:-1], np.int64)
    prev[starts[starts < len(docs)]] = -1
    return float(np.log2(docs - prev + 1.0).mean())


@njit(cache=True, parallel=True)
def _range_pair_counts(term_offsets, docs, shift, out):
    n_terms = term_offsets.shape[0] - 1
    for t in prange(n_terms):
        c = 0
        last = -1
        for p in range(term_offsets[t], term_offsets[t + 1]):
            b = docs[p] >> shift
            if b != last:
                c += 1
                last = b
        out[t] = c


def range_pairs(term_offsets, docs, shift) -> int:
    """Number of distinct ``(term, doc >> shift)`` pairs (doc ids ascending per term)."""
    term_offsets, docs = _check_inverted(term_offsets, docs)
    counts = np.empty(term_offsets.shape[0] - 1, dtype=np.int64)
    _range_pair_counts(term_offsets, docs, int(shift), counts)
    return int(counts.sum())


def range_pairs_ref(term_offsets, docs, shift) -> int:
    """Plain NumPy reference of :func:`range_pairs`."""
    terms = np.repeat(np.arange(len(term_offsets) - 1, dtype=np.int64), np.diff(term_offsets))
    keys = (terms << 32) | (np.asarray(docs, np.int64) >> shift)
    return int(len(np.unique(keys)))


# --------------------------------------------------------------------------- bisection: node steps
def gain_table(n_docs: int) -> np.ndarray:
    """``D[d] = F(d + 1) - F(d)`` with ``F(d) = d * log2(d + 1)``, for ``d = 0 .. n_docs``."""
    d = np.arange(n_docs + 2, dtype=np.float64)
    f = d * np.log2(d + 1.0)
    return np.diff(f)


@njit(cache=True)
def _node_degrees(doc_offsets, doc_terms, perm, lo, mid, hi, dl, dr, touched):
    """Count the degrees of the node's terms in both halves; list the terms met.

    ``dl`` / ``dr`` must be all zero on entry for the node's terms (cleared
    by :func:`_clear_degrees`). Returns how many terms were listed in ``touched``.
    """
    n = 0
    for i in range(lo, hi):
        d = perm[i]
        left = i < mid
        for q in range(doc_offsets[d], doc_offsets[d + 1]):
            t = doc_terms[q]
            if dl[t] == 0 and dr[t] == 0:
                touched[n] = t
                n += 1
            if left:
                dl[t] += 1
            else:
                dr[t] += 1
    return n


@njit(cache=True)
def _clear_degrees(touched, n_touched, dl, dr):
    for k in range(n_touched):
        t = touched[k]
        dl[t] = 0
        dr[t] = 0


@njit(cache=True)
def _term_gains(touched, n_touched, dl, dr, log_nl, log_nr, D, gl, gr):
    """Per-term move gains: ``gl[t]`` for a left doc going right, ``gr[t]`` the reverse."""
    for k in range(n_touched):
        t = touched[k]
        a = dl[t]
        b = dr[t]
        if a > 0:
            gl[t] = (log_nl - log_nr) + (D[b] - D[a - 1])
        if b > 0:
            gr[t] = (log_nr - log_nl) + (D[a] - D[b - 1])


@njit(cache=True, inline="always")
def _doc_gain(doc_offsets, doc_terms, d, g):
    s = 0.0
    for q in range(doc_offsets[d], doc_offsets[d + 1]):
        s += g[doc_terms[q]]
    return s


@njit(cache=True)
def _swap_pass(doc_offsets, doc_terms, perm, lo, mid, hi, gains, dl, dr):
    """Sort both halves by gain (descending, stable) and swap pairs while the sum is positive."""
    ol = np.argsort(-gains[lo:mid], kind="mergesort")
    orr = np.argsort(-gains[mid:hi], kind="mergesort")
    m = min(ol.shape[0], orr.shape[0])
    n = 0
    for i in range(m):
        pa = lo + ol[i]
        pb = mid + orr[i]
        if gains[pa] + gains[pb] <= 0.0:
            break
        a = perm[pa]
        b = perm[pb]
        for q in range(doc_offsets[a], doc_offsets[a + 1]):
            t = doc_terms[q]
            dl[t] -= 1
            dr[t] += 1
        for q in range(doc_offsets[b], doc_offsets[b + 1]):
            t = doc_terms[q]
            dr[t] -= 1
            dl[t] += 1
        perm[pa] = b
        perm[pb] = a
        n += 1
    return n


@njit(cache=True)
def _bisect_node(fwd, perm, lo, hi, iterations, D, scratch, gains):
    """One BP node, single-threaded. ``fwd``: the forward index ``(doc_offsets, doc_terms)``;
    ``scratch``: ``(dl, dr, gl, gr, touched)``, the caller's worker's."""
    doc_offsets, doc_terms = fwd
    dl, dr, gl, gr, touched = scratch
    perm[lo:hi].sort()
    mid = lo + (hi - lo) // 2
    log_nl = math.log2(mid - lo)
    log_nr = math.log2(hi - mid)
    nt = _node_degrees(doc_offsets, doc_terms, perm, lo, mid, hi, dl, dr, touched)
    for _ in range(iterations):
        _term_gains(touched, nt, dl, dr, log_nl, log_nr, D, gl, gr)
        for i in range(lo, mid):
            gains[i] = _doc_gain(doc_offsets, doc_terms, perm[i], gl)
        for i in range(mid, hi):
            gains[i] = _doc_gain(doc_offsets, doc_terms, perm[i], gr)
        if _swap_pass(doc_offsets, doc_terms, perm, lo, mid, hi, gains, dl, dr) == 0:
            break
    _clear_degrees(touched, nt, dl, dr)


@njit(cache=True, parallel=True)
def _bisect_node_parallel(fwd, perm, lo, hi, iterations, D, scratch, gains):
    """One (big) BP node; the document gains are computed by a parallel loop.

    Same arguments, steps and arithmetic as :func:`_bisect_node`, hence the
    same result.
    """
    doc_offsets, doc_terms = fwd
    dl, dr, gl, gr, touched = scratch
    perm[lo:hi].sort()
    mid = lo + (hi - lo) // 2
    log_nl = math.log2(mid - lo)
    log_nr = math.log2(hi - mid)
    nt = _node_degrees(doc_offsets, doc_terms, perm, lo, mid, hi, dl, dr, touched)
    for _ in range(iterations):
        _term_gains(touched, nt, dl, dr, log_nl, log_nr, D, gl, gr)
        for i in prange(lo, hi):
            if i < mid:
                gains[i] = _doc_gain(doc_offsets, doc_terms, perm[i], gl)
            else:
                gains[i] = _doc_gain(doc_offsets, doc_terms, perm[i], gr)
        if _swap_pass(doc_offsets, doc_terms, perm, lo, mid, hi, gains, dl, dr) == 0:
            break
    _clear_degrees(touched, nt, dl, dr)


@njit(cache=True, parallel=True)
def _bisect_nodes(fwd, perm, node_lo, node_hi, iterations, D, scratch, gains):
    """All nodes of a level: worker w runs nodes w, w + W, ... with row w of every scratch array."""
    doc_offsets, doc_terms = fwd
    dl, dr, gl, gr, touched = scratch
    n_workers = dl.shape[0]
    n_nodes = node_lo.shape[0]
    for w in prange(n_workers):
        for k in range(w, n_nodes, n_workers):
            _bisect_node((doc_offsets, doc_terms), perm, node_lo[k], node_hi[k], iterations, D,
                         (dl[w], dr[w], gl[w], gr[w], touched[w]), gains)


@njit(cache=True, parallel=True)
def _sort_ranges(perm, node_lo, node_hi):
    for k in prange(node_lo.shape[0]):
        perm[node_lo[k]:node_hi[k]].sort()


# --------------------------------------------------------------------------- gains (exposed for tests)
def move_gains(doc_offsets, doc_terms, n_terms, perm, lo, mid, hi):
    """Move gains of the documents at positions ``lo .. hi`` of ``perm`` (left half ``lo .. mid``).

    Uses the kernels of :func:`bp_order` (degrees, per-term gains, doc gains)
    on the split as it stands (no sorting). Returns float64[hi - lo].
    """
    doc_offsets = np.ascontiguousarray(doc_offsets, np.int64)
    doc_terms = np.ascontiguousarray(doc_terms, np.int32)
    perm = np.ascontiguousarray(perm, np.int32)
    D = gain_table(len(perm))
    dl = np.zeros(n_terms, np.int32)
    dr = np.zeros(n_terms, np.int32)
    gl = np.zeros(n_terms, np.float64)
    gr = np.zeros(n_terms, np.float64)
    touched = np.empty(n_terms, np.int32)
    nt = _node_degrees(doc_offsets, doc_terms, perm, lo, mid, hi, dl, dr, touched)
    _term_gains(touched, nt, dl, dr, math.log2(mid - lo), math.log2(hi - mid), D, gl, gr)
    out = np.empty(hi - lo, np.float64)
    for i in range(lo, hi):
        out[i - lo] = _doc_gain(doc_offsets, doc_terms, perm[i], gl if i < mid else gr)
    return out


def move_gains_ref(doc_offsets, doc_terms, n_terms, perm, lo, mid, hi):
    """Plain NumPy reference of :func:`move_gains`, straight from the cost definition."""
    def cost(n, d):
        d = np.asarray(d, np.float64)
        return d * np.log2(n / (d + 1.0))

    def degrees(ids):
        if len(ids) == 0:
            return np.zeros(n_terms, np.int64)
        ts = np.concatenate([doc_terms[doc_offsets[d]:doc_offsets[d + 1]] for d in ids])
        return np.bincount(ts.astype(np.int64), minlength=n_terms)

    left, right = perm[lo:mid], perm[mid:hi]
    nl, nr = len(left), len(right)
    dl, dr = degrees(left), degrees(right)
    out = np.empty(hi - lo, np.float64)
    for i, d in enumerate(perm[lo:hi]):
        ts = doc_terms[doc_offsets[d]:doc_offsets[d + 1]]
        a, b = (dl[ts], dr[ts]) if i < nl else (dr[ts], dl[ts])
        na, nb = (nl, nr) if i < nl else (nr, nl)
        before = cost(na, a) + cost(nb, b)
        after = cost(na, a - 1) + cost(nb, b + 1)
        out[i] = float(np.sum(before - after))
    return out


# --------------------------------------------------------------------------- driver
def n_bp_levels(n_docs: int, depth: int | None, min_partition: int) -> int:
    """How many levels :func:`bp_order` runs (the largest part at level k has ``ceil(N / 2^k)`` docs)."""
    limit = max(int(min_partition), 1)
    s, k = int(n_docs), 0
    while s > limit and (depth is None or k < depth):
        s = (s + 1) // 2
        k += 1
    return k


def bp_order(doc_offsets, doc_terms, n_terms, *, depth=None, iterations=20, min_partition=16, seed=0,
             progress=None) -> np.ndarray:
    """Doc order by recursive graph bisection (see the module docstring).

    ``doc_offsets`` int64[N + 1], ``doc_terms`` int32[nnz]: the forward index
    (distinct term ids per document, each ``< n_terms``). Returns ``order``
    int32[N] with ``order[new_id] = old_id``.

    ``depth``: levels at most (``None``: until parts have ``<= min_partition``
    documents); ``iterations``: swap rounds per node; ``min_partition``: parts
    of at most this many documents are not split; ``seed``: unused (ties are
    broken by original doc id, the result is deterministic and the same for
    any thread count); ``progress``: called as ``progress(levels_done,
    n_levels)`` from Python after every level (and once with ``(0, n_levels)``
    before the first).
    """
    del seed
    doc_offsets = np.ascontiguousarray(doc_offsets, dtype=np.int64)
    doc_terms = np.ascontiguousarray(doc_terms, dtype=np.int32)
    n_terms = int(n_terms)
    if doc_offsets.ndim != 1 or doc_offsets.shape[0] < 1 or doc_terms.ndim != 1:
        raise ValueError("doc_offsets must be int64[N+1] and doc_terms int32[nnz]")
    if doc_offsets[0] != 0 or doc_offsets[-1] != doc_terms.shape[0] or np.any(np.diff(doc_offsets) < 0):
        raise ValueError("doc_offsets must be non-decreasing from 0 to len(doc_terms)")
    if doc_terms.shape[0] and (doc_terms.min() < 0 or doc_terms.max() >= n_terms):
        raise ValueError("term ids out of range")
    if iterations < 0 or min_partition < 1 or (depth is not None and depth < 0):
        raise ValueError("iterations and depth must be >= 0, min_partition >= 1")
    n_docs = doc_offsets.shape[0] - 1
    perm = np.arange(n_docs, dtype=np.int32)
    n_levels = n_bp_levels(n_docs, depth, min_partition)
    if progress is not None:
        progress(0, n_levels)
    if n_levels == 0:
        return perm

    limit = max(int(min_partition), 1)
    n_workers = numba.get_num_threads()
    width = max(n_terms, 1)
    D = gain_table(n_docs)
    dl = np.zeros((n_workers, width), np.int32)
    dr = np.zeros((n_workers, width), np.int32)
    gl = np.zeros((n_workers, width), np.float64)
    gr = np.zeros((n_workers, width), np.float64)
    touched = np.empty((n_workers, width), np.int32)
    gains = np.empty(n_docs, np.float64)
    it = int(iterations)

    lo = np.zeros(1, np.int64)
    hi = np.full(1, n_docs, np.int64)
    fwd = (doc_offsets, doc_terms)
    for level in range(n_levels):
        # every node here has more than `limit` documents (so at least 2)
        if lo.shape[0] < 4 * n_workers:
            for k in range(lo.shape[0]):
                _bisect_node_parallel(fwd, perm, lo[k], hi[k], it, D, (dl[0], dr[0], gl[0], gr[0], touched[0]),
                                      gains)
        else:
            _bisect_nodes(fwd, perm, lo, hi, it, D, (dl, dr, gl, gr, touched), gains)
        mid = lo + (hi - lo) // 2
        clo = np.stack([lo, mid], axis=1).ravel()
        chi = np.stack([mid, hi], axis=1).ravel()
        split = (chi - clo) > limit
        if level + 1 < n_levels:
            leaf_lo, leaf_hi = clo[~split], chi[~split]
            lo, hi = clo[split], chi[split]
        else:
            leaf_lo, leaf_hi = clo, chi
        _sort_ranges(perm, leaf_lo, leaf_hi)
        if progress is not None:
            progress(level + 1, n_levels)
    return perm
