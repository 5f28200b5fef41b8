"""Brute-force retrieval for the tests: SciPy sparse dot products on quantised weights.

Written independently of the index code: quantisation is re-derived here from
the documented rule, and scores come from a sparse matrix-vector product.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from lsr.config import ALGORITHMS


def expected_scale(weights32: np.ndarray, method: str = "auto", bits: int = 8, scale: float | None = None):
    max_impact = (1 << bits) - 1
    w = weights32[weights32 > 0]
    if method == "float":
        return None
    if method == "fixed":
        return float(scale)
    if method == "auto" and len(w) and np.all(w == np.floor(w)) and w.max() <= max_impact:
        return 1.0
    return max_impact / float(w.max())


def doc_matrix(docs: list[dict], vocab: list[str], method="auto", bits=8, scale=None):
    """CSR (n_docs x n_terms) of impacts (int64) or float32 weights."""
    col = {t: i for i, t in enumerate(vocab)}
    rows, cols, vals = [], [], []
    for r, vec in enumerate(docs):
        for t, w in vec.items():
            rows.append(r); cols.append(col[t]); vals.append(w)
    w32 = np.asarray(vals, dtype=np.float32)
    s = expected_scale(w32, method, bits, scale)
    if s is None:
        data = w32
    else:
        data = np.minimum(np.floor(w32.astype(np.float64) * s + 0.5), (1 << bits) - 1).astype(np.int64)
    m = sp.csr_matrix((data, (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))),
                      shape=(len(docs), len(vocab)))
    m.eliminate_zeros()
    return m


def query_vector(query: dict, vocab: list[str], is_float: bool, query_scale: float = 100.0):
    col = {t: i for i, t in enumerate(vocab)}
    scaled = not is_float and not all(float(w).is_integer() for w in query.values())
    known = {t: w for t, w in query.items() if t in col and w > 0}
    if is_float:
        q = np.zeros(len(vocab), dtype=np.float32)
        for t, w in known.items():
            q[col[t]] = w
        return q
    if scaled:
        known = {t: np.floor(w * query_scale + 0.5) for t, w in known.items()}
    q = np.zeros(len(vocab), dtype=np.int64)
    for t, w in known.items():
        q[col[t]] = int(w)
    return q


def topk(matrix, q, k: int):
    """(doc indices, scores) of the top k with score > 0, ties by doc index."""
    scores = matrix @ q
    cand = np.flatnonzero(scores > 0)
    order = np.lexsort((cand, -scores[cand]))[:k]
    return cand[order], scores[cand[order]]


# every query processor, plus the planner forced down each of its paths: the
# block-max traversal always tried and always falling back (budget 0), and
# always tried and always kept; and the block-max traversal sweeping in doc id
# order from the start, after 2 blocks, or never; the planner down the filtered
# scorer's path, and that scorer with nothing and everything scored in full
SEARCHERS = [dict(algorithm=a) for a in ALGORITHMS] + [
    dict(algorithm="auto", max_k=10**9, max_k_power=0.0, locality_ratio=1e9, pair_ratio=1e9, max_common=10**6,
         budget_ratio=0.0),
    dict(algorithm="auto", max_k=10**9, max_k_power=0.0, locality_ratio=1e9, pair_ratio=1e9, max_common=10**6,
         budget_ratio=1e9),
    dict(algorithm="blockmax", sweep_after=0),
    dict(algorithm="blockmax", sweep_after=2),
    dict(algorithm="blockmax", sweep_after=-1),
    dict(algorithm="auto", max_k=0, max_k_power=0.0, locality_ratio=1e9, pair_ratio=1e9,
         large_k="filtered"),   # the filtered path
    dict(algorithm="auto", pair_ratio=0.0),   # the planner's tests send every query to exhaustive scoring
    dict(algorithm="filtered", full_ratio=0.0),
    dict(algorithm="filtered", full_ratio=1.0),
    # no dense rows: every term from its postings (the default makes rows of the terms in 1/16 of the documents)
    dict(algorithm="exhaustive", dense_df=0.0),
    dict(algorithm="blockmax", dense_df=0.0),
    dict(algorithm="filtered", dense_df=0.0),
    dict(algorithm="auto", dense_df=0.0),
    dict(algorithm="blockmax", dense_df=0.5, sweep_after=0),   # rows for the commonest terms only
]
