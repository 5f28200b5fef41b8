"""Dense impact rows: the most frequent terms' impacts held by doc id, in memory.

A few terms occur in a large share of the documents and hold most of the
postings that queries read. Scattering such a list into the accumulator
posting by posting costs a decode and a random write each; held as a dense
row (``row[d]`` = the term's impact in document d, 0 where absent), the same
term is added with one vectorised pass over the accumulator,
``acc[d] += w * row[d]`` (``benchmarks/scripts/dense_rows.py`` measures both).

The rows are derived from the index when a searcher first needs them (nothing
is stored on disk; the pair-coded postings stay complete, so every processor
can still read those terms' postings): ``rows`` (n_dense, n_docs) of the
impact dtype, ``row_max`` (n_dense, n_blocks) each row's maximum in every
range block (the block-max traversal's bounds for those terms), and
``slot`` (int32[n_terms]): a term's row, or -1. Integer impacts only: sums of
integers do not depend on the order of the terms, so adding the dense terms
first changes no score (float sums would; float indexes get no rows).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .postings import low_at, next_pair, term_pairs


def choose_dense_terms(term_offsets: np.ndarray, n_docs: int, min_df_ratio: float, max_bytes: int,
                       itemsize: int) -> np.ndarray:
    """Term ids (ascending) of the terms in at least ``min_df_ratio * n_docs`` documents, the most
    frequent first while their rows fit in ``max_bytes``; none when ``min_df_ratio`` is 0."""
    if min_df_ratio <= 0 or n_docs == 0:
        return np.zeros(0, np.int32)
    df = np.diff(term_offsets)
    cand = np.flatnonzero(df >= max(1.0, min_df_ratio * n_docs))
    cand = cand[np.argsort(-df[cand], kind="stable")]
    fit = int(max_bytes // max(1, n_docs * itemsize))
    return np.sort(cand[:fit]).astype(np.int32)


def no_dense(n_terms: int, n_docs: int, n_blocks: int, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(slot, rows, row_max) with no dense term."""
    return np.full(n_terms, -1, np.int32), np.zeros((0, n_docs), dtype), np.zeros((0, n_blocks), dtype)


@njit(cache=True, parallel=True)
def fill_dense_rows(term_offsets, code_offsets, codes, low, impacts, shift, terms, rows, row_max):
    """Row r of ``rows`` (all zeros) gets term ``terms[r]``'s impacts by doc id, and ``row_max[r, b]``
    its largest impact in range block b (0 where it has none); range blocks of up to 256 documents."""
    for r in prange(terms.shape[0]):
        _fill_row(term_offsets, code_offsets, codes, low, impacts, shift, terms[r], rows[r], row_max[r])


@njit(cache=True)
def _fill_row(term_offsets, code_offsets, codes, low, impacts, shift, t, row, row_max):
    """Term t's impacts by doc id into ``row`` and its range block maxima into ``row_max``."""
    nib = shift <= 4
    cur = term_pairs(term_offsets, code_offsets, t)
    while cur[0] < cur[1]:
        cur, blk, p, n = next_pair(codes, shift, cur)
        m = impacts[p]
        for q in range(p, p + n):
            row[(blk << shift) + low_at(low, q, nib)] = impacts[q]
            m = max(m, impacts[q])
        row_max[blk] = m


def dense_rows_ref(term_offsets, docs, impacts, terms, n_docs, shift):
    """Plain NumPy reference of :func:`fill_dense_rows` from plain doc ids: (rows, row_max)."""
    R = 1 << shift
    n_blocks = (n_docs + R - 1) // R
    rows = np.zeros((len(terms), n_docs), impacts.dtype)
    for r, t in enumerate(terms):
        s, e = term_offsets[t], term_offsets[t + 1]
        rows[r, docs[s:e]] = impacts[s:e]
    pad = np.zeros((len(terms), n_blocks * R), impacts.dtype)
    pad[:, :n_docs] = rows
    return rows, pad.reshape(len(terms), n_blocks, R).max(axis=2)


@njit(cache=True, inline="always")
def add_dense_row(row, w, acc):
    """``acc[d] += w * row[d]`` for every document (one vectorised pass)."""
    for d in range(acc.shape[0]):
        acc[d] += w * acc.dtype.type(row[d])
