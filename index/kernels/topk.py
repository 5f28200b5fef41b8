"""Top-k selection shared by the query processors: a bounded heap over flat arrays, and block bounds.

Order: a hit is better when its score is higher, or equal and its doc id is
lower. The heap keeps the worst retained hit at the root so that a candidate
is admitted with one comparison against ``heap_scores[0]``.

For a dense accumulator of integer scores, :func:`acc_block_maxima` (or
:func:`listed_block_maxima` over a list of blocks) and :func:`kth_lower_bound`
give a lower bound of the k-th best score (the k-th largest block maximum, to
a histogram bin), and :func:`doc_bound` a tighter one from the scores of the
documents in the blocks that reach it, so that only the blocks and documents
that reach it are offered to the heap.
"""

from __future__ import annotations

import numpy as np
from numba import njit

HIST_BITS = 12  # 2**12 bins in the histogram that bounds the k-th largest block maximum


@njit(cache=True, inline="always")
def _bin_shift(span, nb):
    """The smallest s with ``span >> s < nb``: bins ``2**s`` wide put ``0..span`` into ``nb`` bins."""
    s = 0
    while (span >> s) >= nb:
        s += 1
    return s


@njit(cache=True, inline="always")
def _top_bin(hist, k):
    """The highest bin where the count from the top of ``hist`` reaches k, or -1; leaves ``hist``
    all zeros."""
    c = 0
    found = -1
    for j in range(hist.shape[0] - 1, -1, -1):
        c += hist[j]
        if c >= k:
            found = j
            break
    hist[:] = 0
    return found


@njit(cache=True)
def kth_lower_bound(vals, k, top, hist):
    """A lower bound (>= 1) of the k-th largest of the non-negative integers ``vals`` whose maximum is
    ``top``: the lower edge of the histogram bin where the count from the top reaches k (so at least
    k values reach it); 1 when fewer than k values are positive. The bins are ``2**s`` wide, the
    smallest power of two that puts ``top`` in one of ``hist.shape[0]`` (a power of two) bins.
    ``hist`` must be all zeros and is left all zeros."""
    s = _bin_shift(top, hist.shape[0])
    for i in range(vals.shape[0]):
        hist[np.int64(vals[i]) >> s] += 1
    j = _top_bin(hist, k)
    return max(np.int64(1), np.int64(j) << s) if j >= 0 else np.int64(1)


@njit(cache=True)
def acc_block_maxima(acc, shift, bmax):
    """``bmax[b] = max(acc[b * R:(b + 1) * R])`` (``R = 1 << shift``) for every block of a dense
    accumulator; returns the largest."""
    n_docs = acc.shape[0]
    R = 1 << shift
    full = n_docs >> shift
    zero = acc.dtype.type(0)
    top = zero
    if R == 16:   # fixed-length inner loops, which the compiler vectorises
        for b in range(full):
            m = zero
            for d in range(b * 16, b * 16 + 16):
                m = max(m, acc[d])
            bmax[b] = m
            top = max(top, m)
    else:
        for b in range(full):
            m = zero
            for d in range(b * R, b * R + R):
                m = max(m, acc[d])
            bmax[b] = m
            top = max(top, m)
    if full < bmax.shape[0]:
        m = zero
        for d in range(full * R, n_docs):
            m = max(m, acc[d])
        bmax[full] = m
        top = max(top, m)
    return top


@njit(cache=True)
def listed_block_maxima(acc, shift, blocks, n, vals):
    """``vals[i] = max(acc[b * R:(b + 1) * R])`` for the blocks ``b = blocks[i]``, ``i < n``; returns
    the largest (0 when n is 0). Reads only those blocks."""
    n_docs = acc.shape[0]
    R = 1 << shift
    top = acc.dtype.type(0)
    for i in range(n):
        b = np.int64(blocks[i])
        m = acc.dtype.type(0)
        for d in range(b * R, min(b * R + R, n_docs)):
            m = max(m, acc[d])
        vals[i] = m
        top = max(top, m)
    return top


@njit(cache=True)
def doc_bound(acc, shift, bmax, theta, top, k, hist):
    """A lower bound (>= ``theta``) of the k-th largest value of the integer accumulator, from the
    documents scoring at least ``theta`` in the blocks whose maximum ``bmax[b]`` reaches it (``top``:
    the largest block maximum): the lower edge of the histogram bin, between ``theta`` and ``top``,
    where the count from the top reaches k; ``theta`` when fewer than k documents reach it. Tighter
    than the block bound, which counts one document a block. ``hist`` all zeros, left all zeros."""
    R = 1 << shift
    n_docs = acc.shape[0]
    s = _bin_shift(top - theta, hist.shape[0])
    for b in range(bmax.shape[0]):
        if bmax[b] >= theta:
            for d in range(b * R, min(b * R + R, n_docs)):
                v = np.int64(acc[d])
                if v >= theta:
                    hist[(v - theta) >> s] += 1
    j = _top_bin(hist, k)
    return theta + (np.int64(j) << s) if j >= 0 else np.int64(theta)


@njit(cache=True, inline="always")
def _offer_block(acc, b, R, theta, k, out_docs, out_scores, size):
    """Offers the documents of block b scoring at least ``theta``, in doc id order; returns the heap size."""
    for d in range(b * R, min(b * R + R, acc.shape[0])):
        s = acc[d]
        if s >= theta and (size < k or s > out_scores[0]):
            size = heap_offer(out_scores, out_docs, size, k, s, d)
    return size


@njit(cache=True)
def offer_blocks(acc, shift, bmax, theta, k, out_docs, out_scores):
    """Offers to an empty heap of capacity k, in doc id order (so ties go to the lower doc id), every
    document scoring at least ``theta`` in the blocks whose maximum ``bmax[b]`` reaches it; returns
    the heap size (not sorted)."""
    R = 1 << shift
    size = 0
    for b in range(bmax.shape[0]):
        if bmax[b] >= theta:
            size = _offer_block(acc, b, R, theta, k, out_docs, out_scores, size)
    return size


@njit(cache=True)
def offer_listed(acc, shift, listed, theta, k, out_docs, out_scores):
    """:func:`offer_blocks` over the listed blocks: ``listed = (blocks, vals, n)``, the blocks
    ``blocks[:n]`` (ascending) with maxima ``vals[:n]``."""
    blocks, vals, n = listed
    R = 1 << shift
    size = 0
    for i in range(n):
        if vals[i] >= theta:
            size = _offer_block(acc, np.int64(blocks[i]), R, theta, k, out_docs, out_scores, size)
    return size


HIST_SELECT_K = 256  # from this k on, select_blocks / select_listed sort by histogram bins, not with a heap


@njit(cache=True, inline="always")
def _count_block(acc, b, R, theta, s, hist):
    """Adds block b's documents scoring at least ``theta`` to the histogram (bins ``2**s`` wide from ``theta``)."""
    for d in range(b * R, min(b * R + R, acc.shape[0])):
        v = np.int64(acc[d])
        if v >= theta:
            hist[(v - theta) >> s] += 1


@njit(cache=True, inline="always")
def _place_block(acc, b, R, lo, theta, s, hist, tmp_scores, tmp_docs):
    """Appends block b's documents scoring at least ``lo`` to their bins' runs (``hist[i]``: the next free slot
    of bin i's run)."""
    for d in range(b * R, min(b * R + R, acc.shape[0])):
        v = np.int64(acc[d])
        if v >= lo:
            i = (v - theta) >> s
            p = hist[i]
            tmp_scores[p] = acc[d]
            tmp_docs[p] = d
            hist[i] = p + 1


@njit(cache=True)
def _run_starts(hist, k):
    """Turns the bin counts, from the top bin down, into the starts of the bins' runs in one array sorted
    by bin, descending, and stops at the bin j where the count from the top reaches k (j = 0 when it never
    does). Returns (j, the number of documents in bin j and above)."""
    c = 0
    for i in range(hist.shape[0] - 1, -1, -1):
        h = hist[i]
        hist[i] = c
        c += h
        if c >= k:
            return i, c
    return 0, c


@njit(cache=True)
def _sort_runs(hist, j, s, tmp_scores, tmp_docs, n, k, out_docs, out_scores):
    """Sorts every bin's run (bins ``hist.shape[0] - 1`` down to j; ``hist[i]`` the end of bin i's run) by
    score, descending, keeping doc id order within a score; copies the first ``min(n, k)`` hits out and
    leaves ``hist`` all zeros. Returns that count."""
    if s > 0:
        start = 0
        for i in range(hist.shape[0] - 1, j - 1, -1):
            end = hist[i]
            if end - start > 16:   # a crowded bin: a stable sort (doc ids ascend within a score)
                o = np.argsort(-tmp_scores[start:end].astype(np.int64), kind="mergesort")
                ts = tmp_scores[start:end][o]
                td = tmp_docs[start:end][o]
                tmp_scores[start:end] = ts
                tmp_docs[start:end] = td
            else:                  # insertion sort, which moves nothing past an equal score
                for a in range(start + 1, end):
                    x = tmp_scores[a]
                    y = tmp_docs[a]
                    q = a - 1
                    while q >= start and tmp_scores[q] < x:
                        tmp_scores[q + 1] = tmp_scores[q]
                        tmp_docs[q + 1] = tmp_docs[q]
                        q -= 1
                    tmp_scores[q + 1] = x
                    tmp_docs[q + 1] = y
            start = end
    hist[:] = 0
    m = min(n, k)
    out_scores[:m] = tmp_scores[:m]
    out_docs[:m] = tmp_docs[:m]
    return m


@njit(cache=True)
def select_blocks(acc, shift, bmax, theta, top, k, hist, out_docs, out_scores):
    """The top k, sorted (score desc, doc id asc), of the documents scoring at least ``theta`` (>= 1, at
    most the k-th best score) in the blocks whose maximum ``bmax[b]`` reaches it (``top``: the largest
    block maximum); returns the hit count. ``hist`` (int64, a power of two long) all zeros, left all zeros.

    Below ``HIST_SELECT_K``: offered to a heap in doc id order (:func:`offer_blocks`), then heap-sorted.
    From it on, by histogram bins: the documents that reach ``theta`` are counted into
    ``hist.shape[0]`` bins ``2**s`` wide (the smallest power of two that spans ``theta..top``); the bins
    from the top down to the one where the count reaches k hold the top k (the k-th bin's lower edge,
    ``lo``, is a lower bound of the k-th score); a second pass puts the documents that reach ``lo`` into
    their bins' runs in doc id order, and each run is sorted by score, stably (a bin of one score, as
    when ``s`` is 0, needs no sort). No comparison with a heap root per document.
    """
    if k < HIST_SELECT_K:
        size = offer_blocks(acc, shift, bmax, theta, k, out_docs, out_scores)
        heap_sort_desc(out_scores, out_docs, size)
        return size
    return bins_select_blocks(acc, shift, bmax, theta, top, k, hist, out_docs, out_scores)


@njit(cache=True)
def bins_select_blocks(acc, shift, bmax, theta, top, k, hist, out_docs, out_scores):
    """:func:`select_blocks` by histogram bins, at any k."""
    R = 1 << shift
    s = _bin_shift(max(np.int64(0), np.int64(top) - theta), hist.shape[0])
    for b in range(bmax.shape[0]):
        if bmax[b] >= theta:
            _count_block(acc, b, R, theta, s, hist)
    j, n = _run_starts(hist, k)
    lo = theta + (np.int64(j) << s)
    tmp_scores = np.empty(n, acc.dtype)
    tmp_docs = np.empty(n, np.int32)
    for b in range(bmax.shape[0]):
        if bmax[b] >= lo:
            _place_block(acc, b, R, lo, theta, s, hist, tmp_scores, tmp_docs)
    return _sort_runs(hist, j, s, tmp_scores, tmp_docs, n, k, out_docs, out_scores)


@njit(cache=True)
def select_listed(acc, shift, listed, theta, top, k, hist, out_docs, out_scores):
    """:func:`select_blocks` over the listed blocks: ``listed = (blocks, vals, n_listed)``, the blocks
    ``blocks[:n_listed]`` (ascending) with maxima ``vals[:n_listed]``."""
    if k < HIST_SELECT_K:
        size = offer_listed(acc, shift, listed, theta, k, out_docs, out_scores)
        heap_sort_desc(out_scores, out_docs, size)
        return size
    return bins_select_listed(acc, shift, listed, theta, top, k, hist, out_docs, out_scores)


@njit(cache=True)
def bins_select_listed(acc, shift, listed, theta, top, k, hist, out_docs, out_scores):
    """:func:`select_listed` by histogram bins, at any k."""
    blocks, vals, n_listed = listed
    R = 1 << shift
    s = _bin_shift(max(np.int64(0), np.int64(top) - theta), hist.shape[0])
    for i in range(n_listed):
        if vals[i] >= theta:
            _count_block(acc, np.int64(blocks[i]), R, theta, s, hist)
    j, n = _run_starts(hist, k)
    lo = theta + (np.int64(j) << s)
    tmp_scores = np.empty(n, acc.dtype)
    tmp_docs = np.empty(n, np.int32)
    for i in range(n_listed):
        if vals[i] >= lo:
            _place_block(acc, np.int64(blocks[i]), R, lo, theta, s, hist, tmp_scores, tmp_docs)
    return _sort_runs(hist, j, s, tmp_scores, tmp_docs, n, k, out_docs, out_scores)


def acc_block_maxima_ref(acc, shift):
    """Plain NumPy reference of :func:`acc_block_maxima` (and of :func:`listed_block_maxima`, indexed
    by the listed blocks): (bmax, top)."""
    R = 1 << shift
    nb = (len(acc) + R - 1) // R
    padded = np.zeros(nb * R, acc.dtype)
    padded[:len(acc)] = acc
    bmax = padded.reshape(nb, R).max(axis=1)
    return bmax, (bmax.max() if nb else acc.dtype.type(0))


def _top_bin_ref(v, span, k, n_bins):
    """Plain NumPy reference of the histogram step: (the highest bin where the count from the top of
    the values ``v`` in ``0..span`` reaches k, or -1; the bin shift)."""
    s = 0
    while (int(span) >> s) >= n_bins:
        s += 1
    from_top = np.cumsum(np.bincount(np.asarray(v, np.int64) >> s, minlength=n_bins)[::-1])
    j = np.flatnonzero(from_top >= k)
    return (n_bins - 1 - int(j[0]) if len(j) else -1), s


def doc_bound_ref(acc, shift, theta, k, n_bins):
    """Plain NumPy reference of :func:`doc_bound` (the block maxima and their largest from ``acc``)."""
    bmax, top = acc_block_maxima_ref(acc, shift)
    in_blocks = (bmax >= theta)[np.arange(len(acc)) >> shift]
    j, s = _top_bin_ref(np.asarray(acc, np.int64)[in_blocks & (acc >= theta)] - theta, int(top) - theta, k, n_bins)
    return theta if j < 0 else theta + (j << s)


def kth_lower_bound_ref(vals, k, top, n_bins):
    """Plain NumPy reference of :func:`kth_lower_bound`."""
    j, s = _top_bin_ref(vals, top, k, n_bins)
    return 1 if j < 0 else max(1, j << s)


@njit(cache=True, inline="always")
def _worse(sa, da, sb, db):
    """True if hit (sa, da) ranks below hit (sb, db)."""
    return sa < sb or (sa == sb and da > db)


@njit(cache=True)
def heap_sift_down(hs, hd, size, i):
    while True:
        left = 2 * i + 1
        if left >= size:
            return
        w = left
        right = left + 1
        if right < size and _worse(hs[right], hd[right], hs[left], hd[left]):
            w = right
        if _worse(hs[w], hd[w], hs[i], hd[i]):
            hs[i], hs[w] = hs[w], hs[i]
            hd[i], hd[w] = hd[w], hd[i]
            i = w
        else:
            return


@njit(cache=True)
def heap_push(hs, hd, size, s, d):
    """Insert (s, d) into a heap of ``size`` < capacity; returns the new size."""
    i = size
    hs[i] = s
    hd[i] = d
    while i > 0:
        parent = (i - 1) // 2
        if _worse(hs[i], hd[i], hs[parent], hd[parent]):
            hs[i], hs[parent] = hs[parent], hs[i]
            hd[i], hd[parent] = hd[parent], hd[i]
            i = parent
        else:
            break
    return size + 1


@njit(cache=True)
def heap_offer(hs, hd, size, k, s, d):
    """Offer (s, d) to a heap of capacity k; returns the new size."""
    if size < k:
        return heap_push(hs, hd, size, s, d)
    if _worse(hs[0], hd[0], s, d):
        hs[0] = s
        hd[0] = d
        heap_sift_down(hs, hd, size, 0)
    return size


@njit(cache=True)
def heap_sort_desc(hs, hd, size):
    """Sort the heap in place, best first (score desc, doc id asc)."""
    n = size
    while n > 1:
        n -= 1
        hs[0], hs[n] = hs[n], hs[0]
        hd[0], hd[n] = hd[n], hd[0]
        heap_sift_down(hs, hd, n, 0)


def topk_ref(acc, k, mask=None):
    """Plain NumPy reference of the selections (:func:`select_blocks`, :func:`select_listed`, the offers
    and the heap): the doc ids of the top k positive scores of ``acc`` (where ``mask``), score desc,
    doc id asc."""
    keep = acc > 0 if mask is None else (acc > 0) & mask
    cand = np.flatnonzero(keep)
    return cand[np.lexsort((cand, -acc[cand]))][:k]
