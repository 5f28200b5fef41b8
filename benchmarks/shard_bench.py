"""Benchmark: sharded search (local and on Ray actors) against the unsharded index, paired per query.

Run ``python -m benchmarks.shard_bench --index ~/.cache/lsr-bench/index-real-real300k-b8
--queries-file ~/.cache/lsr-bench/real300k/queries-devsmall.jsonl --work-dir ~/.cache/lsr-bench/shards
--shards 1,2,4 --ray --json shard-bench.json`` (``--help`` for the options). Steps:

1. The index is split into each ``--shards`` count under ``--work-dir``
   (:func:`lsr.index.sharded.shard_index`); a split already there of the same source index (the
   source manifest's SHA-256 recorded in the sharded manifest) is reused. Split seconds are recorded.
2. The systems: ``unsharded`` (:class:`lsr.index.Searcher`), ``local-S`` (the sharded index through
   ``lsr.Searcher``, i.e. :class:`lsr.index.sharded.ShardedSearcher`) and, with ``--ray``,
   ``ray-S`` (:class:`lsr.distributed.search.RayShardedSearcher`, one actor per
   ``--shards-per-actor`` shards, on a local ``ray.init(num_cpus=--ray-cpus)``). All use
   ``--algorithm`` with the default settings.
3. Correctness first: every system's ``search_batch`` hits at each k are compared with the unsharded
   ones (doc ids, scores, order); for ``approx`` the recall of the unsharded exhaustive top k is
   reported instead.
4. Single-query latency: one untimed pass over the queries for every system, then ``--rounds``
   passes in which query i runs on every system in an order shuffled per (pass, query)
   (:func:`lsr.eval.benchmark.interleaved_ms`); a query's time is its median over the passes. Each
   system is compared with ``unsharded`` per query (:func:`lsr.eval.benchmark.paired_latency`:
   the median of the per-query time ratios, the queries it was faster on, a sign test).
5. Batch throughput: ``search_batch`` over all queries with ``--threads`` threads (the median of
   ``--batch-repeats`` runs).

Prints a table and, with ``--json``, writes the figures with the machine's facts and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from typing import Sequence

import numpy as np

import lsr
from lsr.eval.benchmark import interleaved_ms, paired_latency
from lsr.eval.report import _table


def read_queries(path: str, n: int | None) -> list[tuple[str, dict]]:
    """(query id, term -> weight) pairs from a JSONL file of ``{"id", "vector"}`` records (the first n)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if n is not None and len(out) >= n:
                break
            r = json.loads(line)
            out.append((str(r["id"]), r["vector"]))
    return out


def ensure_shards(index: "lsr.Index", work_dir: str, shards: int, log=print) -> tuple[str, float | None]:
    """The index split into ``shards`` under ``work_dir`` (reused when it is a split of this index);
    returns (path, split seconds or None when reused)."""
    from lsr.index.format import sha256_file
    from lsr.index.sharded import is_sharded, shard_index

    path = os.path.join(work_dir, f"{os.path.basename(index.path.rstrip(os.sep))}-shards{shards}")
    want = sha256_file(os.path.join(index.path, "manifest.json"))
    if is_sharded(path):
        with open(os.path.join(path, "manifest.json"), encoding="utf-8") as f:
            m = json.load(f)
        if m.get("source", {}).get("manifest_sha256") == want and len(m.get("shards", [])) == shards:
            log(f"reusing {path}")
            return path, None
    log(f"splitting {index.path} into {shards} shard(s) at {path}")
    t0 = time.perf_counter()
    shard_index(index, path, shards, overwrite=os.path.exists(path))
    return path, round(time.perf_counter() - t0, 3)


def _same(a: lsr.Results, b: lsr.Results) -> bool:
    return (a.query_ids == b.query_ids and a.doc_ids == b.doc_ids and a.scores.dtype == b.scores.dtype
            and bool(np.array_equal(a.scores, b.scores)))


def _recall(got: lsr.Results, want: lsr.Results) -> float:
    g, w = got.by_query(), want.by_query()
    hit = sum(len({h.doc_id for h in g.get(q, [])} & {h.doc_id for h in hs}) for q, hs in w.items())
    total = sum(len(hs) for hs in w.values())
    return hit / total if total else 1.0


def _stats(ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    return {"p50_ms": float(np.median(a)), "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def run(args, log=print) -> dict:
    warnings.simplefilter("ignore")   # unknown query terms etc.: the output is the table
    ks = sorted(int(x) for x in args.ks.split(","))
    shard_counts = sorted(int(x) for x in args.shards.split(","))
    index = lsr.Index.open(args.index, verify=False)
    queries = read_queries(args.queries_file, args.queries)
    os.makedirs(args.work_dir, exist_ok=True)
    result: dict = {"command": " ".join(sys.argv), "index": index.path, "documents": index.num_documents,
                    "postings": index.num_postings, "queries": len(queries), "algorithm": args.algorithm, "ks": ks,
                    "rounds": args.rounds, "threads": args.threads,
                    "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                "platform": platform.platform()},
                    "splits": {}, "systems": {}}
    systems: dict[str, object] = {"unsharded": lsr.Searcher(index, algorithm=args.algorithm)}
    for s in shard_counts:
        path, secs = ensure_shards(index, args.work_dir, s, log)
        result["splits"][s] = {"path": path, "seconds": secs}
        systems[f"local-{s}"] = lsr.Searcher(lsr.Index.open(path, verify=False), algorithm=args.algorithm)
    ray_searchers = []
    if args.ray:
        import ray

        from lsr.distributed.search import RayShardedSearcher, ShardActorsConfig

        if not ray.is_initialized():
            ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        for s in shard_counts:
            rs = RayShardedSearcher(result["splits"][s]["path"], algorithm=args.algorithm,
                                    actors=ShardActorsConfig(shards_per_actor=args.shards_per_actor, verify=False,
                                                             timeout_s=600))
            ray_searchers.append(rs)
            systems[f"ray-{s}"] = rs
    for s in systems.values():
        if hasattr(s, "warmup"):
            s.warmup()

    # correctness
    reference = {k: systems["unsharded"].search_batch(queries, k=k, threads=args.threads) for k in ks}
    exact_ref = ({k: lsr.Searcher(index, algorithm="exhaustive").search_batch(queries, k=k, threads=args.threads)
                  for k in ks} if args.algorithm == "approx" else reference)
    for name, s in systems.items():
        entry = result["systems"][name] = {"per_k": {}}
        for k in ks:
            got = s.search_batch(queries, k=k, threads=args.threads)
            entry["per_k"][k] = {"identical": _same(got, reference[k]),
                                 "recall_vs_exhaustive": round(_recall(got, exact_ref[k]), 5)}

    # single-query latency, interleaved
    for k in ks:
        timers = {name: ((lambda i, s=s, k=k: s.search(queries[i][1], k=k, query_id=queries[i][0])), len(queries))
                  for name, s in systems.items()}
        interleaved_ms(timers, 1, seed=k)   # untimed warm pass
        ms = interleaved_ms(timers, args.rounds, seed=1000 + k)
        for name in systems:
            e = result["systems"][name]["per_k"][k]
            e.update(_stats(ms[name]))
            if name != "unsharded":
                e["paired_vs_unsharded"] = paired_latency(ms[name], ms["unsharded"])
        # batch throughput
        for name, s in systems.items():
            times = []
            for _ in range(args.batch_repeats):
                t0 = time.perf_counter()
                s.search_batch(queries, k=k, threads=args.threads)
                times.append(time.perf_counter() - t0)
            result["systems"][name]["per_k"][k]["batch_qps"] = round(len(queries) / float(np.median(times)), 1)
    for rs in ray_searchers:
        rs.close()
    return result


def format_table(result: dict) -> str:
    header = ["system", "k", "identical", "recall", "p50 ms", "p99 ms", "mean ms", "ratio vs unsharded",
              "faster on", "sign p", "batch QPS"]
    rows = []
    for name, e in result["systems"].items():
        for k, r in e["per_k"].items():
            pv = r.get("paired_vs_unsharded") or {}
            rows.append([name, str(k), "yes" if r["identical"] else "NO", f"{r['recall_vs_exhaustive']:.4f}",
                         f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['mean_ms']:.3f}",
                         f"{pv['median_ratio']:.3f}" if pv else "-",
                         f"{pv['a_faster']}/{pv['queries']}" if pv else "-",
                         f"{pv['sign_test_p']:.2g}" if pv else "-", f"{r['batch_qps']:.0f}"])
    head = (f"{result['index']}: {result['documents']:,} documents, {result['postings']:,} postings; "
            f"{result['queries']} queries, algorithm {result['algorithm']}, {result['rounds']} rounds, "
            f"batch threads {result['threads']}")
    return head + "\n" + _table(header, rows)


def parser() -> argparse.ArgumentParser:
    home = os.path.expanduser("~/.cache/lsr-bench")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", default=os.path.join(home, "index-real-real300k-b8"), help="an unsharded index")
    ap.add_argument("--queries-file", default=os.path.join(home, "real300k", "queries-devsmall.jsonl"),
                    help="JSONL {\"id\", \"vector\"} queries")
    ap.add_argument("--queries", type=int, default=1000, help="the first N queries (default 1000)")
    ap.add_argument("--work-dir", default=os.path.join(home, "shards"), help="where the splits are written/reused")
    ap.add_argument("--shards", default="1,2,4", help="shard counts (default 1,2,4)")
    ap.add_argument("--ks", default="10,1000")
    ap.add_argument("--algorithm", default="auto")
    ap.add_argument("--rounds", type=int, default=3, help="timed passes over the queries (default 3)")
    ap.add_argument("--threads", type=int, default=0, help="search_batch threads (0: all; default 0)")
    ap.add_argument("--batch-repeats", type=int, default=3)
    ap.add_argument("--ray", action="store_true", help="also RayShardedSearcher on a local Ray")
    ap.add_argument("--ray-cpus", type=int, default=None, help="ray.init(num_cpus=...) (default: Ray's)")
    ap.add_argument("--shards-per-actor", type=int, default=1)
    ap.add_argument("--json", help="write the results here")
    return ap


def main(argv: Sequence[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    result = run(args, log=lambda m: print(m, file=sys.stderr))
    print(format_table(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return result


if __name__ == "__main__":
    main()
