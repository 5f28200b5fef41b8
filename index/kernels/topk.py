"""A bounded top-k heap over flat arrays, shared by the query processors.

Order: a hit is better when its score is higher, or equal and its doc id is
lower. The heap keeps the worst retained hit at the root so that a candidate
is admitted with one comparison against ``heap_scores[0]``.
"""

from __future__ import annotations

from numba import njit


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
