"""Compare Searcher settings on one index, query by query (the "Settings tried" tables of docs/benchmarks.md).

    python benchmarks/scripts/query_settings.py INDEX QUERIES.jsonl [--queries N] [--skip N] [--ks 10,1000] [--cold] \\
        --variant exhaustive:algorithm=exhaustive --variant "bm1024:algorithm=blockmax,sweep_after=1024" ...

Each variant is ``name:key=value,...`` (keys of lsr.SearchConfig; numbers are parsed). For every query
every variant runs in turn (``Searcher.search``, one thread, the order fixed), after 10 untimed
warm-up queries; ``--cold`` writes 64 MB before each call so that each finds the caches holding other
data (as in the interleaved peer benchmark). Prints mean / p50 / p99 ms per variant and k.
QUERIES is a JSONL file of ``{"id", "vector"}`` lines (what ``benchmarks.realdata`` writes).
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np

import lsr
from _common import open_index, read_queries, setting_value


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("queries")
    ap.add_argument("--queries", dest="n", type=int, default=200)
    ap.add_argument("--skip", type=int, default=0, help="queries to skip first (default 0)")
    ap.add_argument("--ks", default="10,1000")
    ap.add_argument("--cold", action="store_true")
    ap.add_argument("--variant", action="append", required=True)
    a = ap.parse_args(argv)
    ix = open_index(a.index)
    qs = read_queries(a.queries, a.n, a.skip)
    searchers = {}
    for v in a.variant:
        name, _, spec = v.partition(":")
        kw = dict(kv.split("=", 1) for kv in spec.split(",") if kv)
        searchers[name] = lsr.Searcher(ix, **{k: setting_value(x) for k, x in kw.items()})
    junk = np.zeros(64 << 20, np.uint8)
    for k in (int(x) for x in a.ks.split(",")):
        for s in searchers.values():
            for qid, q in qs[:10]:
                s.search(q, k=k, query_id=qid)
        times = {n: [] for n in searchers}
        gc.disable()
        for qid, q in qs:
            for n, s in searchers.items():
                if a.cold:
                    junk += 1
                t = time.perf_counter()
                s.search(q, k=k, query_id=qid)
                times[n].append(time.perf_counter() - t)
        gc.enable()
        for n, ts in times.items():
            x = np.asarray(ts) * 1e3
            print(f"{'cold' if a.cold else 'warm'} k={k:5d} {n:24s} mean {x.mean():6.2f} p50 {np.median(x):6.2f} "
                  f"p99 {np.percentile(x, 99):6.2f}")


if __name__ == "__main__":
    main()
