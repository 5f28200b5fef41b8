"""Time the scoring kernels directly (no Searcher), query by query: the figures behind the flat loop.

    python benchmarks/scripts/kernel_times.py INDEX QUERIES.jsonl [--queries 200] [--k 1000] [--cold]

Rows: ``pairs`` / ``flat`` (scoring into the accumulator only: the per-pair loop and the flat loop of
``lsr.index.kernels.exhaustive``), ``exhaustive_one``, ``filtered_one`` and ``auto_one`` (scoring and
top k, with the default SearchConfig, its dense rows included; the two loops read every term from its
postings). The order of the calls alternates per query; ``--cold`` writes
64 MB before each call. Every call's accumulator is checked against the per-pair loop's, and the
top k of ``filtered_one`` and ``auto_one`` against ``exhaustive_one``'s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lsr.index.kernels.dense import no_dense
from lsr.index.kernels.exhaustive import _score_terms_flat, _score_terms_pairs, exhaustive_one
from lsr.index.kernels.filtered import filtered_one
from lsr.index.kernels.planner import auto_one
from lsr.index.processors import PROCESSORS
from _common import open_prepared


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("queries")
    ap.add_argument("--queries", dest="n", type=int, default=200)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--cold", action="store_true")
    a = ap.parse_args(argv)
    ix, s, p = open_prepared(a.index, a.queries, a.n)
    cfg, k, dt = s.config, a.k, p.score_dtype
    acc, ref, fl = (np.zeros(ix.num_documents, dt) for _ in range(3))
    ixa = s.index_arrays()
    work = {name: PROCESSORS[name].work(s, p, None) for name in ("filtered", "auto")}
    none = ixa._replace(dense_slot=no_dense(ix.num_terms, ix.num_documents, 1, ix.postings_impacts.dtype)[0])
    out = {name: (np.empty(k, np.int32), np.empty(k, dt))
           for name in ("exhaustive_one", "filtered_one", "auto_one")}
    junk = np.zeros(64 << 20, np.uint8)
    times: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for qi in range(len(p.ids)):
        qt, qw = p.terms[p.offsets[qi]:p.offsets[qi + 1]], p.weights[p.offsets[qi]:p.offsets[qi + 1]]
        calls = [("pairs", lambda: _score_terms_pairs(none, qt, qw, ref)),
                 ("flat", lambda: _score_terms_flat(none, qt, qw, fl)),
                 ("exhaustive_one", lambda: exhaustive_one(ixa, qt, qw, k, (), acc, *out["exhaustive_one"])),
                 ("filtered_one", lambda: filtered_one(ixa, qt, qw, k, (cfg.planner.full_ratio,), work["filtered"],
                                                       *out["filtered_one"])),
                 ("auto_one", lambda: auto_one(ixa, qt, qw, k, s.planner_settings(), work["auto"],
                                               *out["auto_one"]))]
        for name, call in (calls if qi % 2 == 0 else calls[::-1]):
            if a.cold:
                junk += 1
            t = time.perf_counter()
            r = call()
            times.setdefault(name, []).append(time.perf_counter() - t)
            if name in out:
                counts[name] = r[0] if isinstance(r, tuple) else r
        n = counts["exhaustive_one"]
        for name in ("filtered_one", "auto_one"):
            same = all(np.array_equal(x[:n], y[:n]) for x, y in zip(out[name], out["exhaustive_one"]))
            if counts[name] != n or not same:
                raise SystemExit(f"query {p.ids[qi]}: {name}'s top k differs from exhaustive_one's")
        if not np.array_equal(fl, ref):
            raise SystemExit(f"query {p.ids[qi]}: the flat loop's scores differ from the per-pair loop's")
        fl[:] = 0
        ref[:] = 0
    for name, ts in times.items():
        x = np.asarray(ts[5:]) * 1e3
        print(f"{'cold' if a.cold else 'warm'} k={k} {name:16s} mean {x.mean():6.3f} p50 {np.median(x):6.3f}")


if __name__ == "__main__":
    main()
