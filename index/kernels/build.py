"""Kernels of the index build: run sorting, quantisation, merging, block maxima.

Quantisation rule (shared by every kernel and reference here)::

    impact = min(floor(float64(weight) * scale + 0.5), max_impact)

with ``weight`` a float32. Postings whose impact is 0 are dropped.
"""

from __future__ import annotations

import numpy as np
from numba import njit


# --------------------------------------------------------------------------- quantisation
@njit(cache=True, inline="always")
def _quantize_one(w, scale, max_impact):
    q = np.floor(np.float64(w) * scale + 0.5)
    if q > max_impact:
        return max_impact
    return q


def quantize_ref(weights: np.ndarray, scale: float, max_impact: int) -> np.ndarray:
    """Plain NumPy quantisation (int64 result, zeros kept)."""
    q = np.floor(weights.astype(np.float32).astype(np.float64) * scale + 0.5)
    return np.minimum(q, max_impact).astype(np.int64)


# --------------------------------------------------------------------------- run sort
@njit(cache=True)
def sort_run(terms, docs, weights, n_terms):
    """Stable counting sort of one run's postings by term.

    Postings arrive in ascending doc id order, so the result is sorted by
    (term, doc). Returns (counts[n_terms], docs_sorted, weights_sorted).
    """
    n = terms.shape[0]
    counts = np.zeros(n_terms, dtype=np.int64)
    for i in range(n):
        counts[terms[i]] += 1
    starts = np.empty(n_terms, dtype=np.int64)
    acc = 0
    for t in range(n_terms):
        starts[t] = acc
        acc += counts[t]
    out_docs = np.empty(n, dtype=np.int32)
    out_w = np.empty(n, dtype=np.float32)
    for i in range(n):
        t = terms[i]
        p = starts[t]
        out_docs[p] = docs[i]
        out_w[p] = weights[i]
        starts[t] = p + 1
    return counts, out_docs, out_w


def sort_run_ref(terms, docs, weights, n_terms):
    order = np.argsort(terms, kind="stable")
    counts = np.bincount(terms, minlength=n_terms).astype(np.int64)
    return counts, docs[order].astype(np.int32), weights[order].astype(np.float32)


# --------------------------------------------------------------------------- merge
@njit(cache=True)
def count_kept(counts, weights, scale, max_impact, quantize, out_counts):
    """Add to ``out_counts[t]`` the postings of a run that survive quantisation."""
    p = 0
    for t in range(counts.shape[0]):
        c = 0
        for j in range(p, p + counts[t]):
            if quantize:
                if _quantize_one(weights[j], scale, max_impact) > 0:
                    c += 1
            elif weights[j] > 0:
                c += 1
        out_counts[t] += c
        p += counts[t]


@njit(cache=True)
def scatter_run(counts, docs, weights, scale, max_impact, quantize, cursor, out_docs, out_impacts):
    """Append a run's postings of each term at ``cursor[t]`` (quantising on the way).

    Runs cover ascending, disjoint doc ranges, so appending runs in order keeps
    every posting list sorted by doc id. Returns the number of clipped impacts.
    """
    clipped = 0
    p = 0
    for t in range(counts.shape[0]):
        c = cursor[t]
        for j in range(p, p + counts[t]):
            w = weights[j]
            if quantize:
                raw = np.floor(np.float64(w) * scale + 0.5)
                if raw <= 0:
                    continue
                if raw > max_impact:
                    clipped += 1
                    raw = max_impact
                out_impacts[c] = raw
            else:
                if w <= 0:
                    continue
                out_impacts[c] = w
            out_docs[c] = docs[j]
            c += 1
        cursor[t] = c
        p += counts[t]
    return clipped


# --------------------------------------------------------------------------- block maxima
@njit(cache=True)
def block_maxima(term_offsets, docs, impacts, block_size, block_offsets, block_max, block_last_doc, term_max):
    """Per term: max impact, and for each block of ``block_size`` postings its max and last doc."""
    n_terms = term_offsets.shape[0] - 1
    b = 0
    for t in range(n_terms):
        block_offsets[t] = b
        start = term_offsets[t]
        end = term_offsets[t + 1]
        tmax = impacts.dtype.type(0)
        s = start
        while s < end:
            e = min(s + block_size, end)
            m = impacts[s]
            for j in range(s + 1, e):
                if impacts[j] > m:
                    m = impacts[j]
            block_max[b] = m
            block_last_doc[b] = docs[e - 1]
            if m > tmax:
                tmax = m
            b += 1
            s = e
        term_max[t] = tmax
    block_offsets[n_terms] = b


def n_blocks_ref(term_offsets: np.ndarray, block_size: int) -> int:
    lens = np.diff(term_offsets)
    return int(((lens + block_size - 1) // block_size).sum())


def block_maxima_ref(term_offsets, docs, impacts, block_size):
    """Plain NumPy block maxima: (block_offsets, block_max, block_last_doc, term_max)."""
    n_terms = len(term_offsets) - 1
    bo = [0]
    bm, bl, tm = [], [], []
    for t in range(n_terms):
        s, e = int(term_offsets[t]), int(term_offsets[t + 1])
        starts = list(range(s, e, block_size))
        for a in starts:
            z = min(a + block_size, e)
            bm.append(impacts[a:z].max())
            bl.append(docs[z - 1])
        bo.append(bo[-1] + len(starts))
        tm.append(impacts[s:e].max() if e > s else 0)
    return (np.asarray(bo, dtype=np.int64), np.asarray(bm, dtype=impacts.dtype),
            np.asarray(bl, dtype=np.int32), np.asarray(tm, dtype=impacts.dtype))
