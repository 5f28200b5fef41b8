"""The postings turned around: documents' term lists from the term-major index, a range of documents at a time.

Exporters that write one record per document (Anserini's ``JsonVectorCollection``)
need the index by document. :func:`doc_lengths` counts each document's postings
in one pass over the terms; :func:`invert_range` then fills the CSR rows of the
documents ``first .. last - 1`` (term ids ascending within a row) in another
pass, so memory is bounded by the range chosen, not by the collection.

``postings`` is the index's bundle ``(term_offsets, range_code_offsets,
range_codes, postings_low, postings_impacts, shift)``
(:attr:`lsr.index.Index.postings_arrays`); ``buf`` is an int32 scratch array of
at least the largest document frequency. The plain-NumPy references
:func:`doc_lengths_ref` and :func:`invert_range_ref` sit beside the kernels.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .postings import decode_ref, decode_term_into


@njit(cache=True)
def doc_lengths(postings, n_docs, buf):
    """int64[n_docs]: the number of postings of each document."""
    term_offsets, code_offsets, codes, low, impacts, shift = postings
    out = np.zeros(n_docs, np.int64)
    for t in range(term_offsets.shape[0] - 1):
        n = decode_term_into(term_offsets, code_offsets, codes, low, shift, t, buf, 0)
        for i in range(n):
            out[buf[i]] += 1
    return out


@njit(cache=True)
def invert_range(postings, first, last, indptr, out_terms, out_impacts, buf):
    """Fill the rows of documents ``first .. last - 1``: ``out_terms[indptr[d - first]:indptr[d - first + 1]]``
    are document d's term ids (ascending) and ``out_impacts`` their impacts. ``indptr`` (int64,
    ``last - first + 1`` entries, starting at 0) comes from :func:`doc_lengths`."""
    term_offsets, code_offsets, codes, low, impacts, shift = postings
    cursor = indptr[:-1].copy()
    for t in range(term_offsets.shape[0] - 1):
        p0 = term_offsets[t]
        n = decode_term_into(term_offsets, code_offsets, codes, low, shift, t, buf, 0)
        # doc ids ascend within a term: binary search the range's start, stop past its end
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) >> 1
            if buf[mid] < first:
                lo = mid + 1
            else:
                hi = mid
        for i in range(lo, n):
            d = buf[i]
            if d >= last:
                break
            c = cursor[d - first]
            out_terms[c] = t
            out_impacts[c] = impacts[p0 + i]
            cursor[d - first] = c + 1


def doc_lengths_ref(postings, n_docs):
    """Plain NumPy reference of :func:`doc_lengths`."""
    term_offsets, code_offsets, codes, low, impacts, shift = postings
    docs = decode_ref(term_offsets, code_offsets, codes, low, shift)
    return np.bincount(docs, minlength=n_docs).astype(np.int64)


def invert_range_ref(postings, first, last):
    """Plain NumPy reference of :func:`invert_range`: ``(indptr, terms, impacts)`` of the range."""
    term_offsets, code_offsets, codes, low, impacts, shift = postings
    docs = decode_ref(term_offsets, code_offsets, codes, low, shift).astype(np.int64)
    terms = np.repeat(np.arange(len(term_offsets) - 1, dtype=np.int32), np.diff(term_offsets))
    keep = (docs >= first) & (docs < last)
    order = np.lexsort((terms[keep], docs[keep]))
    counts = np.bincount(docs[keep] - first, minlength=last - first)
    indptr = np.zeros(last - first + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, terms[keep][order], np.asarray(impacts)[keep][order]
