"""Is the default planner (``auto``) ever slower than exhaustive scoring? Paired per query, one run.

    python benchmarks/scripts/planner_overhead.py --work-dir DIR \\
        [--vectors ~/.cache/lsr-bench/real300k/vectors --queries-file ~/.cache/lsr-bench/real300k/queries-devsmall.jsonl] \\
        [--sizes 10000,100000,300000] [--queries 1000] \\
        [--synthetic-index ~/.cache/lsr-bench/index-n1000000-s0-b8 --synthetic-docs 1000000 --synthetic-queries 200] \\
        [--ks 10,100,1000] [--json OUT.json]

The real collection's nested subsets are those of ``scale_crossover.py`` (one seeded random order of
the documents; the subset of size N is its first N; built once under ``--work-dir`` and reused). The
synthetic collection is the index ``benchmarks.peer_bench --collection synthetic`` caches, searched with
its generator's queries (:meth:`benchmarks.synthetic.SpladeLike.queries`, seed 0). On each index, every
query runs at every k through ``Searcher.search`` (one thread, warm), ``auto`` and ``exhaustive`` in a
fresh seeded random order per query and k (``scale_crossover.time_subset``). Printed per index and k: both
p50s, the median over the queries of auto's time / exhaustive's, the queries auto was faster on, the
sign test's p (:func:`lsr.eval.benchmark.paired_latency`), and whether the target holds: median ratio
<= 1.02, or a sign test that does not find ``auto`` slower (p > 0.05, or auto faster on most queries).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys

from lsr.eval.report import _table

from _common import read_queries
from scale_crossover import build_subsets, time_subset

# benchmarks.synthetic (the synthetic collection's queries) from the checkout this script is in
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

TARGET_RATIO = 1.02
TARGET_P = 0.05


def verdict(paired: dict) -> bool:
    """The target: auto no slower than exhaustive, by the paired median ratio or the sign test."""
    slower_on_most = paired["a_faster"] < (paired["queries"] - paired["ties"]) / 2
    return paired["median_ratio"] <= TARGET_RATIO or not (slower_on_most and paired["sign_test_p"] <= TARGET_P)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    home = os.path.expanduser("~/.cache/lsr-bench")
    ap.add_argument("--work-dir", required=True, help="where the subset indexes are built (and reused)")
    ap.add_argument("--vectors", default=os.path.join(home, "real300k", "vectors"))
    ap.add_argument("--queries-file", default=os.path.join(home, "real300k", "queries-devsmall.jsonl"))
    ap.add_argument("--sizes", default="10000,100000,300000", help="real subsets ('' for none)")
    ap.add_argument("--queries", type=int, default=1000, help="real queries (default 1000)")
    ap.add_argument("--synthetic-index", default=os.path.join(home, "index-n1000000-s0-b8"),
                    help="a synthetic index of benchmarks.peer_bench ('' for none)")
    ap.add_argument("--synthetic-docs", type=int, default=1_000_000, help="its generator's document count")
    ap.add_argument("--synthetic-queries", type=int, default=200)
    ap.add_argument("--ks", default="10,100,1000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    ks = sorted(int(x) for x in args.ks.split(","))
    sizes = sorted(int(x) for x in args.sizes.split(",") if x)
    result = {"command": " ".join(sys.argv), "ks": ks, "target": {"median_ratio": TARGET_RATIO, "p": TARGET_P},
              "runs": []}
    if sizes:
        os.makedirs(args.work_dir, exist_ok=True)
        paths = build_subsets(args.vectors, sizes, args.work_dir, args.seed)
        queries = read_queries(args.queries_file, args.queries)
        for n in sizes:
            gc.collect()
            result["runs"].append({"collection": f"real {n:,}", "queries": len(queries),
                                   **time_subset(paths[n], queries, ks, ["auto"], cold=False)})
    if args.synthetic_index:
        from benchmarks.synthetic import SpladeLike

        queries = SpladeLike(n_docs=args.synthetic_docs, seed=0).queries(args.synthetic_queries)
        gc.collect()
        result["runs"].append({"collection": f"synthetic {args.synthetic_docs:,}", "queries": len(queries),
                               **time_subset(args.synthetic_index, queries, ks, ["auto"], cold=False)})
    print(format_result(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


def format_result(result: dict) -> str:
    head = ["collection", "queries", "k", "exhaustive p50", "auto p50", "median auto/exh", "auto faster", "sign p",
            "target"]
    rows = []
    for run in result["runs"]:
        by = {(r["algorithm"], r["k"]): r for r in run["rows"]}
        for k in result["ks"]:
            p = by[("auto", k)]["paired"]
            rows.append([run["collection"], str(run["queries"]), str(k), f"{by[('exhaustive', k)]['p50_ms']:.3f}",
                         f"{by[('auto', k)]['p50_ms']:.3f}", f"{p['median_ratio']:.3f}",
                         f"{p['a_faster']}/{p['queries']}", f"{p['sign_test_p']:.3g}",
                         "met" if verdict(p) else "MISSED"])
    return ("ms, Searcher.search, one thread, warm; auto and exhaustive interleaved per query in a shuffled order\n"
            + _table(head, rows))


if __name__ == "__main__":
    main()
