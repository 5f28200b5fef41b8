"""Fit the planner's cost model (lsr.index.kernels.cost) to per-query kernel times, and test the budget.

    python benchmarks/scripts/planner_cost.py INDEX QUERIES.jsonl fit|common [--queries 1000] [--skip 0] [--k 10]
    python benchmarks/scripts/planner_cost.py INDEX QUERIES.jsonl budget [--ratios 1,1.5,2] [--max-common 9]
        [--max-k K] [--queries 1000] [--skip 0] [--k 10]

``fit``: every query is run by the exhaustive scorer and by the block-max traversal (no budget), in
alternating order, 64 MB written before each call (a cold cache). The exhaustive times are fitted by
least squares to the other terms' postings, the dense rows' elements and a constant; the traversal's
to its (term, block) pairs, its dense rows' block maxima, the blocks it scored, their dense row slices
and their postings (the counters ``blockmax_one`` leaves in ``stats``). The coefficients are printed
in ms and in units of the exhaustive scorer's posting, the unit of ``lsr.index.kernels.cost``.

``common``: the block-max traversal (no budget) over exhaustive scoring per query, cold as above, by
the query's number of common terms (in at least ``PlannerConfig.common_df`` of the documents).

``budget``: the planner (``auto_one``, the default SearchConfig except ``budget_ratio``, ``max_common``
and ``max_k``) at each setting ("b RATIO c MAX_COMMON") beside the exhaustive scorer, the calls of a
query in rotating order, cold as above: latency percentiles, the queries the traversal answered, and
the paired median ratio against exhaustive.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lsr.index.kernels.blockmax import blockmax_one
from lsr.index.kernels.exhaustive import exhaustive_one
from lsr.index.kernels.planner import auto_one
from lsr.index.processors import PROCESSORS
from _common import open_prepared


def _setup(ix, s, p, k):
    dt = p.score_dtype
    return dict(acc=np.zeros(ix.num_documents, dt), ix=s.index_arrays(), rb=PROCESSORS["blockmax"].work(s, p, None),
                aw=PROCESSORS["auto"].work(s, p, None), bm=(-1.0, s.config.planner.sweep_after),
                out=(np.empty(k, np.int32), np.empty(k, dt)))


def _query(p, qi):
    return p.terms[p.offsets[qi]:p.offsets[qi + 1]], p.weights[p.offsets[qi]:p.offsets[qi + 1]]


def fit(ix, s, p, k) -> None:
    b = _setup(ix, s, p, k)
    slot = b["ix"].dense_slot
    n, N = len(p.ids), ix.num_documents
    NB = b["rb"].ub.shape[0]
    junk = np.zeros(64 << 20, np.uint8)
    T = np.zeros((n, 2))
    X = np.zeros((n, 7))
    df = np.diff(ix.term_offsets)
    for qi in range(n):
        qt, qw = _query(p, qi)
        st = b["rb"].stats
        calls = [lambda: exhaustive_one(b["ix"], qt, qw, k, (), b["acc"], *b["out"]),
                 lambda: blockmax_one(b["ix"], qt, qw, k, b["bm"], b["rb"], *b["out"])]
        for j in ((0, 1) if qi % 2 == 0 else (1, 0)):
            junk += 1
            t = time.perf_counter()
            calls[j]()
            T[qi, j] = time.perf_counter() - t
        dense = slot[qt] >= 0
        X[qi] = [df[qt][~dense].sum(), dense.sum(), st[2], st[0], st[1], 0, 0]
    T, X = T[5:] * 1e3, X[5:]   # the first calls compile
    other, nd, pairs, blocks, posts = X[:, 0], X[:, 1], X[:, 2], X[:, 3], X[:, 4]
    one = np.ones(len(T))
    Xe = np.c_[other, nd * N, one]
    Xb = np.c_[pairs, nd * NB, blocks, blocks * nd, posts, one]
    ce = np.linalg.lstsq(Xe, T[:, 0], rcond=None)[0]
    cb = np.linalg.lstsq(Xb, T[:, 1], rcond=None)[0]
    r2 = lambda X, c, y: 1 - np.var(y - X @ c) / np.var(y)   # noqa: E731
    unit = ce[0]
    print(f"k={k}, {len(T)} queries, cold; p50 ms: exhaustive {np.median(T[:, 0]):.3f}, "
          f"block-max traversal {np.median(T[:, 1]):.3f}")
    print(f"exhaustive (R^2 {r2(Xe, ce, T[:, 0]):.2f}): posting {ce[0] * 1e6:.2f} ns; dense row element "
          f"{ce[1] * 1e6:.3f} ns = {ce[1] / unit:.3f} units; constant {ce[2]:.3f} ms = {ce[2] / unit / N:.3f} "
          f"units a document")
    names = ("pair", "dense row block maximum", "scored block", "dense row slice of a scored block",
             "scored posting")
    print(f"block-max traversal (R^2 {r2(Xb, cb, T[:, 1]):.2f}), constant {cb[5]:.3f} ms:")
    for name, c in zip(names, cb):
        print(f"  {name:34s} {c * 1e6:8.2f} ns = {c / unit:7.2f} units")
    print(f"medians a query: other-term postings {np.median(other):,.0f}, dense rows {np.median(nd):.0f}, "
          f"pairs {np.median(pairs):,.0f}, blocks scored {np.median(blocks):,.0f} of {NB:,}, "
          f"their postings {np.median(posts):,.0f}")


def budget(ix, s, p, k, ratios, max_commons, max_k) -> None:
    b = _setup(ix, s, p, k)
    base = s.planner_settings()
    if max_k is not None:
        base = base._replace(max_k=max_k)
    settings = [base._replace(max_common=c, budget_ratio=r) for r in ratios for c in max_commons]
    n = len(p.ids)
    junk = np.zeros(64 << 20, np.uint8)
    names = ["exhaustive"] + [f"b {r:g} c {c}" for r in ratios for c in max_commons]
    T = np.zeros((n, len(names)))
    used = np.zeros((n, len(names)), np.int64)
    for qi in range(n):
        qt, qw = _query(p, qi)
        calls = [lambda: (exhaustive_one(b["ix"], qt, qw, k, (), b["acc"], *b["out"]), 0)]
        for st in settings:
            calls.append(lambda st=st: (auto_one(b["ix"], qt, qw, k, st, b["aw"], *b["out"]), int(b["aw"].paths[0])))
        for j in np.roll(np.arange(len(calls)), qi):
            junk += 1
            t = time.perf_counter()
            used[qi, j] = calls[j]()[1]
            T[qi, j] = time.perf_counter() - t
    T, used = T[5:] * 1e3, used[5:]
    print(f"k={k}, {len(T)} queries, cold, ms")
    print(f"{'setting':14s} {'p50':>6s} {'mean':>6s} {'p95':>6s} {'p99':>6s} {'worst 5%':>8s} "
          f"{'traversal':>9s} {'vs exh.':>7s}")
    for j, name in enumerate(names):
        x = T[:, j]
        worst = np.sort(x)[-max(1, len(x) // 20):].mean()
        ratio = float(np.exp(np.median(np.log(x / T[:, 0]))))
        print(f"{name:14s} {np.median(x):6.3f} {x.mean():6.3f} {np.percentile(x, 95):6.3f} "
              f"{np.percentile(x, 99):6.3f} {worst:8.3f} {int((used[:, j] == 1).sum()):9d} {ratio:7.3f}")


def common(ix, s, p, k) -> None:
    b = _setup(ix, s, p, k)
    common_df = s.planner_settings().common_df
    df = np.diff(ix.term_offsets)
    n = len(p.ids)
    junk = np.zeros(64 << 20, np.uint8)
    T = np.zeros((n, 2))
    nc = np.zeros(n, np.int64)
    for qi in range(n):
        qt, qw = _query(p, qi)
        nc[qi] = int((df[qt] >= common_df).sum())
        calls = [lambda: exhaustive_one(b["ix"], qt, qw, k, (), b["acc"], *b["out"]),
                 lambda: blockmax_one(b["ix"], qt, qw, k, b["bm"], b["rb"], *b["out"])]
        for j in ((0, 1) if qi % 2 == 0 else (1, 0)):
            junk += 1
            t = time.perf_counter()
            calls[j]()
            T[qi, j] = time.perf_counter() - t
    T, nc = T[5:], nc[5:]
    r = T[:, 1] / T[:, 0]
    print(f"k={k}, {len(T)} queries, cold: the block-max traversal (no budget) over exhaustive scoring, by the "
          f"query's terms in at least {common_df:,} documents")
    print(f"{'common terms':>12s} {'queries':>7s} {'median ratio':>12s} {'slower on':>9s}")
    for lo, hi in ((0, 2), (3, 4), (5, 6), (7, 8), (9, 11), (12, 15), (16, 10**9)):
        m = (nc >= lo) & (nc <= hi)
        if m.any():
            name = f"{lo}-{hi}" if hi < 10**9 else f"{lo}+"
            print(f"{name:>12s} {int(m.sum()):7d} {np.median(r[m]):12.2f} {100 * (r[m] > 1).mean():8.0f}%")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("queries")
    ap.add_argument("what", choices=("fit", "budget", "common"))
    ap.add_argument("--queries", dest="n", type=int, default=1000)
    ap.add_argument("--skip", type=int, default=0, help="queries passed over first (held-out queries)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--ratios", default="1,1.5,2", help="budget_ratio settings")
    ap.add_argument("--max-common", default="9", help="max_common settings (each with each ratio)")
    ap.add_argument("--max-k", type=int, default=None, help="the planner's max_k (default: SearchConfig's)")
    a = ap.parse_args(argv)
    ix, s, p = open_prepared(a.index, a.queries, a.n, a.skip)
    if a.what == "fit":
        fit(ix, s, p, a.k)
    elif a.what == "common":
        common(ix, s, p, a.k)
    else:
        budget(ix, s, p, a.k, [float(x) for x in a.ratios.split(",")], [int(x) for x in a.max_common.split(",")],
               a.max_k)


if __name__ == "__main__":
    main()
