"""The figures behind the dense rows (``lsr.index.kernels.dense``; docs/benchmarks.md, "Since commit bb70579").

    python benchmarks/scripts/dense_rows.py INDEX QUERIES.jsonl share
    python benchmarks/scripts/dense_rows.py INDEX QUERIES.jsonl passes [--calls 200]

``share``: for ``dense_df`` 1/2 ... 1/32, how many terms get a row, the memory of their rows and
row maxima, their share of the index's postings and of the postings of the queries' terms, and the
query terms with a row per query. ``passes``: p50 of ``calls`` calls of ``add_dense_row`` (one row
over the index's documents), of ``topk.acc_block_maxima`` (the exhaustive scorer's selection pass),
and of versions tried and not kept: a row added in 4,096-document chunks without casting the
impact before the product, and two sweeps that add 6 rows and take the 16-document block maxima in
one pass (2-D indexing inside a 16-document loop; chunks of 4,096 documents). Random uint8 rows.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

import lsr
from lsr.index.kernels.dense import add_dense_row, choose_dense_terms
from lsr.index.kernels.topk import acc_block_maxima
from _common import open_index, read_queries


def share(ix, s, qs) -> None:
    p = s.prepare(qs)
    n = ix.num_documents
    n_blocks = (n + (1 << ix.range_shift) - 1) >> ix.range_shift
    df = np.diff(ix.term_offsets)
    qdf = df[p.terms]
    print(f"{len(qs)} queries, {int(qdf.sum()):,} postings of their terms; index {int(df.sum()):,} postings")
    print("dense_df  terms  memory MiB  index postings  query postings  rows a query (mean, median)")
    for ratio in (1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32):
        terms = choose_dense_terms(ix.term_offsets, n, ratio, 1 << 62, ix.postings_impacts.itemsize)
        has = np.zeros(ix.num_terms, bool)
        has[terms] = True
        per_query = np.add.reduceat(has[p.terms].astype(np.int64), p.offsets[:-1]) if len(p.terms) else []
        print(f"1/{round(1 / ratio):<6d} {len(terms):6d}  {len(terms) * (n + n_blocks) / 2**20:10.1f}  "
              f"{df[terms].sum() / df.sum():14.3f}  {qdf[has[p.terms]].sum() / qdf.sum():14.3f}  "
              f"{np.mean(per_query):.1f}, {np.median(per_query):.0f}")


@njit(cache=True)
def _add_chunked_uncast(row, w, acc):
    """The first version: 4,096-document chunks, the uint8 impact not cast before the product."""
    n = acc.shape[0]
    for c0 in range(0, n, 4096):
        for d in range(c0, min(c0 + 4096, n)):
            acc[d] += w * row[d]


@njit(cache=True)
def _fused_2d(dense, rows, ws, acc, bmax):
    """Every row and the 16-document block maxima in one sweep, rows indexed 2-D per block."""
    top = acc.dtype.type(0)
    for b in range(acc.shape[0] >> 4):
        base = b << 4
        for r in range(rows.shape[0]):
            for y in range(16):
                acc[base + y] += ws[r] * acc.dtype.type(dense[rows[r], base + y])
        m = acc.dtype.type(0)
        for y in range(16):
            m = max(m, acc[base + y])
        bmax[b] = m
        top = max(top, m)
    return top


@njit(cache=True)
def _fused_chunks(dense, rows, ws, acc, bmax):
    """Every row added to a 4,096-document chunk (one vectorised loop a row), then its block maxima."""
    top = acc.dtype.type(0)
    for c0 in range(0, acc.shape[0] - 4095, 4096):
        a = acc[c0:c0 + 4096]
        for r in range(rows.shape[0]):
            add_dense_row(dense[rows[r], c0:c0 + 4096], ws[r], a)
        for b in range(256):
            m = acc.dtype.type(0)
            for y in range(16):
                m = max(m, a[(b << 4) + y])
            bmax[(c0 >> 4) + b] = m
            top = max(top, m)
    return top


@njit(cache=True)
def _add_rows(dense, rows, ws, acc):
    for r in range(rows.shape[0]):
        add_dense_row(dense[rows[r]], ws[r], acc)


def passes(n_docs: int, calls: int) -> None:
    rng = np.random.default_rng(0)
    dense = rng.integers(0, 50, (6, n_docs)).astype(np.uint8)
    rows, ws = np.arange(6, dtype=np.int64), np.full(6, 7, np.int32)
    n = n_docs - n_docs % 4096   # whole chunks for the chunked sweep
    acc = np.zeros(n, np.int32)
    bmax = np.zeros(n >> 4, np.int32)
    w = np.int32(7)
    cases = [("add_dense_row, 1 row", lambda: _add_rows(dense[:, :n], rows[:1], ws[:1], acc)),
             ("add_dense_row, 6 rows", lambda: _add_rows(dense[:, :n], rows, ws, acc)),
             ("acc_block_maxima", lambda: acc_block_maxima(acc, 4, bmax)),
             ("first version (chunked, not cast), 1 row", lambda: _add_chunked_uncast(dense[0, :n], w, acc)),
             ("fused sweep, 2-D indexing, 6 rows", lambda: _fused_2d(dense[:, :n], rows, ws, acc, bmax)),
             ("fused sweep, 4,096-document chunks, 6 rows", lambda: _fused_chunks(dense[:, :n], rows, ws, acc, bmax))]
    print(f"{n:,} documents, int32 accumulator, p50 of {calls} calls")
    for name, f in cases:
        f()
        ts = []
        for _ in range(calls):
            acc[:] = 0
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        print(f"{name:45s} {np.median(ts) * 1e3:7.3f} ms")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("queries")
    ap.add_argument("mode", choices=["share", "passes"])
    ap.add_argument("--calls", type=int, default=200)
    a = ap.parse_args(argv)
    ix = open_index(a.index)
    if a.mode == "share":
        share(ix, lsr.Searcher(ix), read_queries(a.queries))
    else:
        passes(ix.num_documents, a.calls)


if __name__ == "__main__":
    main()
