"""The figures behind the large-k work of docs/benchmarks.md ("The histogram-bin selection for large k"): where
the exhaustive scorer's time goes at k=1000, the histogram selection against the heap, and two pruning
ideas measured before building them.

    python benchmarks/scripts/large_k.py INDEX QUERIES.jsonl parts  [--queries 300] [--k 1000]
    python benchmarks/scripts/large_k.py INDEX QUERIES.jsonl select [--queries 300] [--ks 10,100,300,500,1000]
    python benchmarks/scripts/large_k.py INDEX QUERIES.jsonl ab     [--queries 400] [--k 1000]
    python benchmarks/scripts/large_k.py INDEX QUERIES.jsonl oracle [--queries 400] [--k 1000]
    python benchmarks/scripts/large_k.py INDEX QUERIES.jsonl rows-bound [--queries 200] [--k 1000]

``parts``: ``exhaustive_one``'s steps timed one by one per query (the dense rows' passes, the other
terms' postings, the selection, the accumulator's reset) and the whole call. ``select``: the selection
step alone, heap (``offer_blocks`` + ``heap_sort_desc``) against histogram bins (``bins_select_blocks``,
which ``select_blocks`` calls from ``HIST_SELECT_K`` on), on the same accumulators.
``ab``: ``exhaustive_one`` against the same kernel with the heap selection, paired and interleaved.
``oracle``: per query, the best of three exact kernels (exhaustive, filtered, block-max traversal),
which bounds what any per-query choice among them could gain. ``rows-bound``: NumPy, no timing: a
pruning idea in which the terms with a dense row are added only in the 16-document blocks that can
still reach the k-th score (bound: the block's maximum over the other terms plus the rows' block
maxima), with ``theta`` the k-th largest score over the other terms (what a kernel could know) and
with the final k-th score (an oracle); prints the share of blocks that would still be scored.
All timings warm, one thread, p50 over the queries (the first 5 left out).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

from lsr.index.kernels.blockmax import blockmax_one
from lsr.index.kernels.dense import add_dense_row
from lsr.index.kernels.exhaustive import _score_terms_flat, exhaustive_one, score_terms
from lsr.index.kernels.filtered import filtered_one
from lsr.index.kernels.topk import (HIST_BITS, acc_block_maxima, bins_select_blocks, heap_sort_desc, kth_lower_bound,
                                    offer_blocks)
from lsr.index.processors import PROCESSORS
from _common import open_prepared


@njit(cache=True)
def _rows_only(dense_slot, dense, q_terms, q_weights, acc):
    for i in range(q_terms.shape[0]):
        r = dense_slot[q_terms[i]]
        if r >= 0:
            add_dense_row(dense[r], q_weights[i], acc)


@njit(cache=True)
def _bound(acc, bmax, hist, k):
    top = np.int64(acc_block_maxima(acc, 4, bmax))
    return kth_lower_bound(bmax, k, top, hist), top


@njit(cache=True)
def _heap_select(acc, bmax, theta, k, out_docs, out_scores):
    size = offer_blocks(acc, 4, bmax, theta, k, out_docs, out_scores)
    heap_sort_desc(out_scores, out_docs, size)
    return size


@njit(cache=True)
def _heap_exhaustive_one(ix, q_terms, q_weights, k, params, acc, out_docs, out_scores):
    """exhaustive_one with the heap selection at every k (as before the histogram bins)."""
    score_terms(ix, q_terms, q_weights, acc)
    bmax = np.empty((acc.shape[0] + 15) >> 4, dtype=acc.dtype)
    theta, _ = _bound(acc, bmax, np.zeros(1 << HIST_BITS, np.int64), k)
    size = _heap_select(acc, bmax, theta, k, out_docs, out_scores)
    acc[:] = 0
    return size


def _p50(ts) -> float:
    return float(np.median(np.asarray(ts[5:]) * 1e3))


def _query(p, qi):
    return p.terms[p.offsets[qi]:p.offsets[qi + 1]], p.weights[p.offsets[qi]:p.offsets[qi + 1]]


def parts(ix, s, p, k) -> None:
    ixa = s.index_arrays()
    slot, rows = ixa.dense_slot, ixa.dense
    acc = np.zeros(ix.num_documents, p.score_dtype)
    bmax = np.empty((ix.num_documents + 15) >> 4, p.score_dtype)
    hist = np.zeros(1 << HIST_BITS, np.int64)
    od, osc = np.empty(k, np.int32), np.empty(k, p.score_dtype)
    T: dict[str, list[float]] = {n: [] for n in ("dense rows", "other terms", "selection", "reset", "exhaustive_one")}
    for qi in range(len(p.ids)):
        qt, qw = _query(p, qi)
        t0 = time.perf_counter()
        _rows_only(slot, rows, qt, qw, acc)
        t1 = time.perf_counter()
        _score_terms_flat(ixa, qt, qw, acc)
        t2 = time.perf_counter()
        theta, top = _bound(acc, bmax, hist, k)
        if k >= 256:
            bins_select_blocks(acc, 4, bmax, theta, top, k, hist, od, osc)
        else:
            _heap_select(acc, bmax, theta, k, od, osc)
        t3 = time.perf_counter()
        acc[:] = 0
        t4 = time.perf_counter()
        exhaustive_one(ixa, qt, qw, k, (), acc, od, osc)
        t5 = time.perf_counter()
        for n, v in zip(T, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            T[n].append(v)
    df = np.diff(ix.term_offsets)[p.terms]
    has_row = slot[p.terms] >= 0
    starts = p.offsets[:-1]
    rows_q = np.add.reduceat(has_row.astype(np.int64), starts)
    other_q = np.add.reduceat(np.where(has_row, 0, df), starts)
    print(f"k={k}, {len(p.ids)} queries, p50 ms (a query: {np.median(rows_q):.0f} dense rows, "
          f"{np.median(other_q):,.0f} postings of the other terms; medians)")
    for n, v in T.items():
        print(f"{n:16s} {_p50(v):.3f}")


def select(ix, s, p, ks) -> None:
    ixa = s.index_arrays()
    acc = np.zeros(ix.num_documents, p.score_dtype)
    bmax = np.empty((ix.num_documents + 15) >> 4, p.score_dtype)
    hist = np.zeros(1 << HIST_BITS, np.int64)
    print(f"{len(p.ids)} queries; the selection after the block bound, p50 ms")
    print("    k    heap   bins")
    for k in ks:
        out = [(np.empty(k, np.int32), np.empty(k, p.score_dtype)) for _ in range(2)]
        T: dict[str, list[float]] = {"heap": [], "bins": []}
        for qi in range(len(p.ids)):
            qt, qw = _query(p, qi)
            score_terms(ixa, qt, qw, acc)
            theta, top = _bound(acc, bmax, hist, k)
            for rep in range(2):   # the second of two calls each, in alternating order
                for name in (("heap", "bins") if (qi + rep) % 2 == 0 else ("bins", "heap")):
                    t = time.perf_counter()
                    if name == "heap":
                        n0 = _heap_select(acc, bmax, theta, k, *out[0])
                    else:
                        n1 = bins_select_blocks(acc, 4, bmax, theta, top, k, hist, *out[1])
                    if rep == 1:
                        T[name].append(time.perf_counter() - t)
            if n0 != n1 or not (np.array_equal(out[0][0][:n0], out[1][0][:n0])
                                and np.array_equal(out[0][1][:n0], out[1][1][:n0])):
                raise SystemExit(f"query {p.ids[qi]}: the two selections differ")
            acc[:] = 0
        print(f"{k:5d}  {_p50(T['heap']):6.3f} {_p50(T['bins']):6.3f}")


def ab(ix, s, p, k) -> None:
    ixa = s.index_arrays()
    acc = np.zeros(ix.num_documents, p.score_dtype)
    out = {n: (np.empty(k, np.int32), np.empty(k, p.score_dtype)) for n in ("heap", "exhaustive_one")}
    T: dict[str, list[float]] = {n: [] for n in out}
    fn = {"heap": _heap_exhaustive_one, "exhaustive_one": exhaustive_one}
    for qi in range(len(p.ids)):
        qt, qw = _query(p, qi)
        for rep in range(2):
            for name in (("heap", "exhaustive_one") if (qi + rep) % 2 == 0 else ("exhaustive_one", "heap")):
                t = time.perf_counter()
                fn[name](ixa, qt, qw, k, (), acc, *out[name])
                if rep == 1:
                    T[name].append(time.perf_counter() - t)
        if not all(np.array_equal(a, b) for a, b in zip(out["heap"], out["exhaustive_one"])):
            raise SystemExit(f"query {p.ids[qi]}: the two kernels differ")
    a, b = np.asarray(T["heap"][5:]), np.asarray(T["exhaustive_one"][5:])
    print(f"k={k}, {len(p.ids)} queries: heap selection p50 {_p50(T['heap']):.3f} ms, exhaustive_one p50 "
          f"{_p50(T['exhaustive_one']):.3f} ms; exhaustive_one faster on {int((b < a).sum())} of {len(a)}, "
          f"median ratio {np.median(b / a):.3f}")


def oracle(ix, s, p, k) -> None:
    cfg, dt = s.config, p.score_dtype
    acc = np.zeros(ix.num_documents, dt)
    ixa = s.index_arrays()
    fb, rb = PROCESSORS["filtered"].work(s, p, None), PROCESSORS["blockmax"].work(s, p, None)
    od, osc = np.empty(k, np.int32), np.empty(k, dt)
    T: dict[str, list[float]] = {"exhaustive": [], "filtered": [], "blockmax": []}
    for qi in range(len(p.ids)):
        qt, qw = _query(p, qi)
        calls = {"exhaustive": lambda: exhaustive_one(ixa, qt, qw, k, (), acc, od, osc),
                 "filtered": lambda: filtered_one(ixa, qt, qw, k, (cfg.planner.full_ratio,), fb, od, osc),
                 "blockmax": lambda: blockmax_one(ixa, qt, qw, k, (-1.0, cfg.planner.sweep_after), rb, od, osc)}
        best = dict.fromkeys(calls, np.inf)
        for _ in range(3):   # the best of three calls each
            for name, call in calls.items():
                t = time.perf_counter()
                call()
                best[name] = min(best[name], time.perf_counter() - t)
        for name in calls:
            T[name].append(best[name])
    X = {n: np.asarray(v[5:]) * 1e3 for n, v in T.items()}
    print(f"k={k}, {len(p.ids)} queries, best of 3 calls, p50 ms")
    for n, v in X.items():
        print(f"{n:12s} {np.median(v):.3f}  faster than exhaustive on {np.mean(v < X['exhaustive']):.2f} of the queries")
    print(f"{'per-query best':12s} {np.median(np.minimum.reduce(list(X.values()))):.3f}")


def rows_bound(ix, s, p, k) -> None:
    slot, rows, row_max = s.dense_rows()
    docs, imp, to = ix.postings_docs, ix.postings_impacts, ix.term_offsets
    n, nb = ix.num_documents, (ix.num_documents + 15) // 16
    if ix.range_shift != 4:
        raise SystemExit("the rows' block maxima are per range block; this estimate takes 16-document blocks")
    kept, kept_oracle, ratio = [], [], []
    for qi in range(len(p.ids)):
        qt, qw = _query(p, qi)
        other = np.zeros(n, np.int64)
        full = np.zeros(n, np.int64)
        rows_ub = np.zeros(nb, np.int64)
        for t, w in zip(qt, qw.astype(np.int64)):
            if slot[t] >= 0:
                full += w * rows[slot[t]]
                rows_ub += w * row_max[slot[t]]
            else:
                np.add.at(other, docs[to[t]:to[t + 1]], w * imp[to[t]:to[t + 1]])
        full += other
        theta = max(1, np.sort(other)[-k]) if n >= k else 1
        final = max(1, np.sort(full)[-k]) if n >= k else 1
        pad = np.zeros(nb * 16, np.int64)
        pad[:n] = other
        ub = pad.reshape(nb, 16).max(axis=1) + rows_ub
        kept.append(np.mean(ub >= theta))
        kept_oracle.append(np.mean(ub >= final))
        ratio.append(theta / final)
    print(f"k={k}, {len(p.ids)} queries (median): blocks whose rows would still be added {np.median(kept):.3f} "
          f"(theta from the other terms, {np.median(ratio):.3f} of the final k-th score), "
          f"{np.median(kept_oracle):.3f} with the final k-th score")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("queries")
    ap.add_argument("what", choices=["parts", "select", "ab", "oracle", "rows-bound"])
    ap.add_argument("--queries", dest="n", type=int, default=None)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--ks", default="10,100,300,500,1000")
    a = ap.parse_args(argv)
    n = a.n or {"parts": 300, "select": 300, "ab": 400, "oracle": 400, "rows-bound": 200}[a.what]
    ix, s, p = open_prepared(a.index, a.queries, n)
    if np.dtype(p.score_dtype).kind != "i":
        raise SystemExit("these measurements are for integer impacts")
    if a.what == "select":
        select(ix, s, p, [int(x) for x in a.ks.split(",")])
    else:
        {"parts": parts, "ab": ab, "oracle": oracle, "rows-bound": rows_bound}[a.what](ix, s, p, a.k)


if __name__ == "__main__":
    main()
