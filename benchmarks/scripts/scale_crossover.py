"""Where pruning starts to pay as the collection grows: nested random subsets of one encoded collection.

    python benchmarks/scripts/scale_crossover.py VECTORS QUERIES.jsonl --work-dir DIR \\
        [--sizes 37500,75000,150000,300000] [--ks 10,20,50,100,200,500,1000] [--queries 1000] \\
        [--algorithms blockmax,filtered,auto,"auto-fixed:algorithm=auto;max_k_power=0"] [--seed 0] [--cold] [--json OUT.json] [--plot OUT.png]

VECTORS is a vector collection (an ``lsr encode`` directory, e.g. ``~/.cache/lsr-bench/real300k/vectors``;
see :mod:`benchmarks.cache`).
Its documents are put in one seeded random order; the subset of size N is the first N of that order,
so every subset holds the smaller ones and has the same distribution of document shapes. Each subset
is indexed with the default ``IndexConfig`` (8-bit impacts, doc id reordering; built once under
``--work-dir`` and reused). Then, per subset, every query runs at every k through ``Searcher.search``
(one thread, warm after an untimed pass over 20 queries; ``--cold`` writes 64 MB before each call),
the algorithms in a fresh seeded random order for each query and k, each against ``exhaustive`` on the same query. Printed per subset,
algorithm and k: p50 ms, and the paired median time ratio against exhaustive scoring with the number
of queries it was faster on. Then per subset and algorithm the crossover k: where the paired median
ratio reaches 1, interpolated between the measured k on a log scale ("<" when it is above 1 at the
smallest k, ">" when below 1 at the largest), and a power law ``k_cross = a * N^b`` fitted through
the crossovers measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time

import numpy as np

import lsr
from lsr.config import IndexConfig, QuantizationConfig
from lsr.eval.plots import _pyplot
from lsr.eval.report import _table
from lsr.index import build_index
from lsr.eval.benchmark import paired_latency
from lsr.io import iter_vectors
from _common import open_index, read_queries, setting_value


def subset_order(n_total: int, seed: int) -> np.ndarray:
    """rank[i]: document i's place in the seeded random order (document i is in the subset of size N
    exactly when rank[i] < N)."""
    perm = np.random.default_rng(seed).permutation(n_total)
    rank = np.empty(n_total, np.int64)
    rank[perm] = np.arange(n_total)
    return rank


def build_subsets(vectors: str, sizes: list[int], work: str, seed: int) -> dict[int, str]:
    """Index every subset not built yet; returns {size: index path}."""
    paths = {n: os.path.join(work, f"index-s{seed}-n{n}") for n in sizes}
    todo = [n for n in sizes if not os.path.exists(os.path.join(paths[n], "manifest.json"))]
    if not todo:
        return paths
    n_total = sum(1 for _ in iter_vectors(vectors))
    if max(sizes) > n_total:
        raise SystemExit(f"--sizes: the collection has {n_total} documents")
    rank = subset_order(n_total, seed)
    cfg = IndexConfig(quantization=QuantizationConfig(bits=8))
    for n in todo:
        t = time.perf_counter()
        docs = ((doc_id, vec) for i, (doc_id, vec) in enumerate(iter_vectors(vectors)) if rank[i] < n)
        build_index(docs, paths[n], cfg, overwrite=True)
        print(f"built {paths[n]} ({n:,} documents) in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return paths


def crossover(ks: list[int], ratios: list[float]) -> tuple[str, float | None]:
    """(kind, k) where the ratio reaches 1: kind "=" with the k interpolated on log k between the
    first pair of measured k around 1, "<" when the ratio is already >= 1 at the smallest k, ">" when
    it is still below 1 at the largest (k is then that end)."""
    if ratios[0] >= 1:
        return "<", float(ks[0])
    for (k0, r0), (k1, r1) in zip(zip(ks, ratios), zip(ks[1:], ratios[1:])):
        if r1 >= 1 > r0:
            f = (1 - r0) / (r1 - r0)
            return "=", float(math.exp(math.log(k0) + f * (math.log(k1) - math.log(k0))))
    return ">", float(ks[-1])


def variant(spec: str) -> tuple[str, dict]:
    """``blockmax`` -> ("blockmax", {"algorithm": "blockmax"}); ``NAME:key=value,...`` -> (NAME, those
    SearchConfig settings)."""
    if ":" not in spec:
        return spec, {"algorithm": spec}
    name, kv = spec.split(":", 1)
    return name, {k: setting_value(v) for k, v in (x.split("=", 1) for x in kv.split(",") if x)}


def time_subset(path: str, queries, ks: list[int], algorithms: list[str], cold: bool) -> dict:
    ix = open_index(path)
    names = ["exhaustive", *(variant(a)[0] for a in algorithms)]
    searchers = {"exhaustive": lsr.Searcher(ix, algorithm="exhaustive")}
    searchers.update({variant(a)[0]: lsr.Searcher(ix, **variant(a)[1]) for a in algorithms})
    junk = np.zeros(64 << 18, np.float32) if cold else None   # 64 MB
    for qid, q in queries[:20]:   # compile and make the buffers
        for a in names:
            for k in ks:
                searchers[a].search(q, k=k, query_id=qid)
    times = {(a, k): [] for a in names for k in ks}
    gc.collect()
    gc.disable()
    try:
        for i, (qid, q) in enumerate(queries):
            for k in ks:
                # a fresh seeded order per query and k (a fixed rotation lets an algorithm always follow
                # the one that leaves its arrays in cache)
                for j in np.random.default_rng([k, i]).permutation(len(names)):
                    a = names[j]
                    if junk is not None:
                        junk += 1.0
                    t = time.perf_counter()
                    searchers[a].search(q, k=k, query_id=qid)
                    times[(a, k)].append(time.perf_counter() - t)
    finally:
        gc.enable()
    out = {"documents": ix.num_documents, "postings": int(ix.term_offsets[-1]), "rows": []}
    for a in names:
        for k in ks:
            s = np.asarray(times[(a, k)]) * 1e3
            row = {"algorithm": a, "k": k, "p50_ms": float(np.median(s)), "p99_ms": float(np.percentile(s, 99)),
                   "mean_ms": float(s.mean())}
            if a != "exhaustive":
                row["paired"] = paired_latency(times[(a, k)], times[("exhaustive", k)])
            out["rows"].append(row)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("vectors")
    ap.add_argument("queries")
    ap.add_argument("--work-dir", required=True, help="where the subset indexes are built (and reused)")
    ap.add_argument("--sizes", default="37500,75000,150000,300000")
    ap.add_argument("--ks", default="10,20,50,100,200,500,1000")
    ap.add_argument("--queries", dest="n", type=int, default=1000)
    ap.add_argument("--skip", type=int, default=0, help="queries to skip first (default 0)")
    ap.add_argument("--algorithms", default="blockmax,filtered,auto",
                    help="comma-separated algorithms, or variants NAME:key=value;... of SearchConfig settings "
                         "(';' between settings), each timed against exhaustive scoring")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cold", action="store_true", help="write 64 MB before every timed call")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--plot", help="draw the paired ratios against k and k/N here (PNG)")
    args = ap.parse_args(argv)
    sizes = sorted(int(x) for x in args.sizes.split(","))
    ks = sorted(int(x) for x in args.ks.split(","))
    algorithms = [a.replace(";", ",") for a in args.algorithms.split(",") if a and a != "exhaustive"]
    os.makedirs(args.work_dir, exist_ok=True)
    paths = build_subsets(args.vectors, sizes, args.work_dir, args.seed)
    queries = read_queries(args.queries, args.n, args.skip)
    result = {"command": " ".join(sys.argv), "sizes": sizes, "ks": ks,
              "algorithms": [variant(a)[0] for a in algorithms], "variants": dict(map(variant, algorithms)),
              "queries": len(queries), "cold": args.cold, "seed": args.seed, "subsets": {}}
    for n in sizes:
        gc.collect()
        result["subsets"][str(n)] = time_subset(paths[n], queries, ks, algorithms, args.cold)
    print(format_result(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.plot:
        plot_result(result, args.plot)
    return result


def _ratios(sub: dict, algorithm: str, ks: list[int]) -> list[float]:
    by_k = {r["k"]: r for r in sub["rows"] if r["algorithm"] == algorithm}
    return [by_k[k]["paired"]["median_ratio"] for k in ks]


def format_result(result: dict) -> str:
    ks, algorithms = result["ks"], result["algorithms"]
    lines = [f"{result['queries']} queries, Searcher.search, one thread, {'cold' if result['cold'] else 'warm'}; "
             "p50 ms, and paired median ratio to exhaustive (queries faster)"]
    head = ["N", "algorithm"] + [f"k={k}" for k in ks]
    rows = []
    for n, sub in result["subsets"].items():
        by = {(r["algorithm"], r["k"]): r for r in sub["rows"]}
        rows.append([f"{int(n):,}", "exhaustive"] + [f"{by[('exhaustive', k)]['p50_ms']:.3f}" for k in ks])
        for a in algorithms:
            cells = []
            for k in ks:
                r = by[(a, k)]
                p = r["paired"]
                cells.append(f"{r['p50_ms']:.3f} {p['median_ratio']:.3f} ({p['a_faster']})")
            rows.append([f"{int(n):,}", a] + cells)
    lines.append(_table(head, rows))
    lines.append("")
    lines.append("crossover k (paired median ratio reaches 1), and k_cross / N")
    for a in algorithms:
        pts = []
        for n, sub in result["subsets"].items():
            kind, k = crossover(ks, _ratios(sub, a, ks))
            pts.append((int(n), kind, k))
            lines.append(f"  {a:10s} N={int(n):>9,}  k {kind} {k:.0f}  (k/N {k / int(n):.2e})")
        fit = [(n, k) for n, kind, k in pts if kind == "="]
        if len(fit) >= 2:
            b, log_a = np.polyfit(np.log([n for n, _ in fit]), np.log([k for _, k in fit]), 1)
            lines.append(f"  {a:10s} fit k_cross = {math.exp(log_a):.3g} * N^{b:.2f}  "
                         f"(at N = 8.8M: k {math.exp(log_a) * 8.8e6 ** b:.0f}; k = 1000 at N = "
                         f"{math.exp((math.log(1000) - log_a) / b):,.0f})")
    return "\n".join(lines)


def plot_result(result: dict, path: str) -> str:
    plt = _pyplot()
    ks, algorithms = result["ks"], result["algorithms"]
    fig, axes = plt.subplots(2, len(algorithms), figsize=(4.5 * len(algorithms), 7.5), squeeze=False)
    for j, a in enumerate(algorithms):
        for n, sub in result["subsets"].items():
            r = _ratios(sub, a, ks)
            axes[0, j].plot(ks, r, marker="o", label=f"N = {int(n):,}")
            axes[1, j].plot([k / int(n) for k in ks], r, marker="o", label=f"N = {int(n):,}")
        for i, xl in enumerate(("k", "k / N")):
            ax = axes[i, j]
            ax.set_xscale("log")
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            ax.set_xlabel(xl)
            ax.set_ylabel(f"{a} / exhaustive (paired median)")
            ax.grid(alpha=0.3)
        axes[0, j].set_title(a)
        axes[0, j].legend(fontsize=8)
    fig.suptitle(f"time against exhaustive scoring, nested random subsets ({result['queries']} queries, "
                 f"{'cold' if result['cold'] else 'warm'})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
