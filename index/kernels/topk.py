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
    the largest (0 when n is 0). Reads only those blocks: a pass over every block with a mask measured
    15 times slower at 6 % of the blocks (docs/benchmarks.md)."""
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


@njit(cache=True)
def block_bound(acc, shift, bmax, hist, k):
    """Block maxima of the integer accumulator (:func:`acc_block_maxima`, into ``bmax``) and a lower
    bound (>= 1) of its k-th largest value: k blocks each hold a document that reaches the k-th
    largest block maximum (:func:`kth_lower_bound`; ``hist`` all zeros, left all zeros)."""
    top = acc_block_maxima(acc, shift, bmax)
    return kth_lower_bound(bmax, k, np.int64(top), hist)


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
def offer_listed(acc, shift, blocks, vals, n, theta, k, out_docs, out_scores):
    """:func:`offer_blocks` over the blocks ``blocks[:n]`` (ascending) with maxima ``vals[:n]``."""
    R = 1 << shift
    size = 0
    for i in range(n):
        if vals[i] >= theta:
            size = _offer_block(acc, np.int64(blocks[i]), R, theta, k, out_docs, out_scores, size)
    return size


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
