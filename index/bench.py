"""Benchmark: build an index of a synthetic SPLADE-shaped collection and time exhaustive search.

Run ``python -m lsr.index.bench --docs 1000000 --queries 200`` (``--help`` for
the options). Steps:

1. Generate the collection with :class:`lsr.index.synthetic.SpladeLike`, or reuse
   the copy cached under ``--work-dir`` (flat binary CSR files, keyed by size,
   seed and generator version).
2. Build the index in a fresh child process that reads the cached collection
   in batches (``IndexBuilder.add_batch``, the array fast path) and reports the
   build's wall time and its peak resident memory (``ru_maxrss`` of the child,
   which includes memory-mapped pages it touched). The child first builds a
   tiny index so that compiled kernels are loaded before the clock starts.
3. Search latency with :class:`~lsr.index.Searcher` (exhaustive algorithm):
   ``search()`` one query at a time on one thread (median, p99, mean of the
   per-query wall time, which includes preparing the query and making the
   Results), and ``search_batch()`` throughput with each ``--threads`` value
   (median of ``--batch-repeats`` runs over all the queries).
   Kernels are compiled (``Searcher.warmup``) and one untimed pass over the
   queries maps the index's pages in before any timing.
4. The same queries with SciPy: a CSR matrix (documents x terms) of the index's
   own integer impacts times the dense query vector of the integer weights that
   ``Searcher.prepare`` produces, then ``argpartition`` and a tie-exact top k.
   lsr's hits must equal SciPy's (same doc ids, same scores, ties by doc id);
   the check is printed and recorded.

Figures are printed as a table and, with ``--json``, saved.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator, Sequence

import numpy as np

from .synthetic import GENERATOR_VERSION, SpladeLike, doc_name

_CHILD_FLAG = "--_build-child"


# --------------------------------------------------------------------------- collection cache
def collection_dir(work_dir: str, spec: SpladeLike) -> str:
    return os.path.join(work_dir, f"collection-n{spec.n_docs}-s{spec.seed}-g{GENERATOR_VERSION}")


def ensure_collection(spec: SpladeLike, work_dir: str, log=print) -> str:
    """Write the collection as flat binary CSR files under ``work_dir`` unless already there."""
    d = collection_dir(work_dir, spec)
    meta_path = os.path.join(d, "meta.json")
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            if json.load(f).get("spec") == _spec_dict(spec):
                log(f"reusing the cached collection {d}")
                return d
    os.makedirs(work_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(d) + ".tmp-", dir=work_dir)
    t0 = time.perf_counter()
    n_post = 0
    with open(os.path.join(tmp, "indptr.bin"), "wb") as fi, open(os.path.join(tmp, "terms.bin"), "wb") as ft, \
            open(os.path.join(tmp, "weights.bin"), "wb") as fw:
        np.zeros(1, np.int64).tofile(fi)
        for batch in spec.batches():
            (batch.indptr[1:] + n_post).tofile(fi)
            batch.term_ids.tofile(ft)
            batch.weights.tofile(fw)
            n_post += len(batch.term_ids)
    with open(os.path.join(tmp, "meta.json"), "w") as f:
        json.dump({"spec": _spec_dict(spec), "documents": spec.n_docs, "postings": n_post}, f)
    if os.path.exists(d):
        shutil.rmtree(d)
    os.rename(tmp, d)
    log(f"generated {spec.n_docs:,} documents ({n_post:,} postings) in {time.perf_counter() - t0:.1f} s -> {d}")
    return d


def _spec_dict(spec: SpladeLike) -> dict:
    return {"generator_version": GENERATOR_VERSION, **{k: v for k, v in spec.__dict__.items() if k != "_cache"}}


def read_collection(d: str, batch_docs: int) -> Iterator[tuple[list[str], np.ndarray, np.ndarray, np.ndarray]]:
    """CSR batches of a cached collection, read with plain file reads (no memory mapping)."""
    with open(os.path.join(d, "meta.json")) as f:
        n_docs = json.load(f)["documents"]
    with open(os.path.join(d, "indptr.bin"), "rb") as fi, open(os.path.join(d, "terms.bin"), "rb") as ft, \
            open(os.path.join(d, "weights.bin"), "rb") as fw:
        for first in range(0, n_docs, batch_docs):
            n = min(batch_docs, n_docs - first)
            fi.seek(first * 8)
            ip = np.fromfile(fi, dtype=np.int64, count=n + 1)
            ft.seek(int(ip[0]) * 4)
            fw.seek(int(ip[0]) * 4)
            terms = np.fromfile(ft, dtype=np.int32, count=int(ip[-1] - ip[0]))
            weights = np.fromfile(fw, dtype=np.float32, count=int(ip[-1] - ip[0]))
            yield [doc_name(i) for i in range(first, first + n)], ip - ip[0], terms, weights


# --------------------------------------------------------------------------- interference
class CpuWatch:
    """CPU seconds used by *other* processes while a phase ran (Linux ``/proc/stat``; else None).

    Everything the machine's CPUs did minus this process and its waited-for
    children; kernel threads (e.g. writing back the files a build wrote) count
    as other. Timings on a shared machine are only meaningful when this is small.
    """

    @staticmethod
    def _busy() -> float | None:
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        return (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")   # user nice system irq softirq

    @staticmethod
    def _own() -> float:
        a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime

    def __enter__(self) -> "CpuWatch":
        self.b0, self.o0, self.t0 = self._busy(), self._own(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        b1 = self._busy()
        self.wall = time.perf_counter() - self.t0
        self.other = None if b1 is None or self.b0 is None else max(0.0, (b1 - self.b0) - (self._own() - self.o0))


# --------------------------------------------------------------------------- build (child process)
def _build_child(argv: Sequence[str]) -> None:
    coll, out, spec_json, cfg_json, batch_docs = argv
    from lsr.config import IndexConfig
    from lsr.index import IndexBuilder

    spec = SpladeLike(**{k: v for k, v in json.loads(spec_json).items() if k != "generator_version"})
    config = IndexConfig.from_dict(json.loads(cfg_json))
    vocab = spec.vocabulary()
    # load (or compile) the build kernels before the clock starts
    with tempfile.TemporaryDirectory(dir=os.path.dirname(out)) as tmp:
        tiny = SpladeLike(n_docs=300, seed=1, n_terms=spec.n_terms, block_docs=100)
        with IndexBuilder(os.path.join(tmp, "warm"), config, vocabulary=vocab) as b:
            for batch in tiny.batches():
                b.add_batch(batch.doc_ids, batch.indptr, batch.term_ids, batch.weights)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    with IndexBuilder(out, config, vocabulary=vocab, overwrite=True) as b:
        for ids, ip, terms, weights in read_collection(coll, int(batch_docs)):
            b.add_batch(ids, ip, terms, weights)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"build_seconds": seconds, "peak_rss_bytes": peak, "rss_before_build_bytes": base,
                      "runs": len(b.runs)}))


def build_in_child(coll: str, out: str, spec: SpladeLike, config_dict: dict, batch_docs: int) -> dict:
    cmd = [sys.executable, "-m", "lsr.index.bench", _CHILD_FLAG, coll, out, json.dumps(_spec_dict(spec)),
           json.dumps(config_dict), str(batch_docs)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- search
def _stats_ms(seconds: Sequence[float]) -> dict[str, float]:
    a = np.asarray(seconds) * 1e3
    return {"median_ms": float(np.median(a)), "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def topk_exact(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top k positive scores (score desc, doc id asc) of a dense score vector."""
    n = len(scores)
    if k < n:
        kth = scores[np.argpartition(scores, n - k)[n - k:]].min()
        cand = np.flatnonzero(scores >= kth) if kth > 0 else np.flatnonzero(scores > 0)
    else:
        cand = np.flatnonzero(scores > 0)
    sc = scores[cand]
    order = np.lexsort((cand, -sc))[:k]
    return cand[order].astype(np.int32), sc[order]


def scipy_matrix(index, score_dtype):
    """The index as a SciPy CSR matrix (documents x terms) of its impacts in ``score_dtype``."""
    import scipy.sparse as sp

    idx_dtype = np.int32 if index.num_postings < 2**31 else np.int64
    csc = sp.csc_matrix((np.asarray(index.postings_impacts).astype(score_dtype),
                         np.asarray(index.postings_docs).astype(idx_dtype, copy=False),
                         np.asarray(index.term_offsets).astype(idx_dtype)),
                        shape=(index.num_documents, index.num_terms))
    return csc.tocsr()


def run_search(index_path: str, queries: list, ks: Sequence[int], threads: Sequence[int], scipy: bool,
               log=print, batch_repeats: int = 3, interference: dict | None = None) -> tuple[list[dict], dict]:
    from lsr.index import Index, Searcher

    index = Index.open(index_path, verify=False)
    searcher = Searcher(index, threads=1, algorithm="exhaustive")
    searcher.warmup()
    for qid, q in queries:   # untimed: first touches of the memory-mapped postings
        searcher.search(q, k=max(ks), query_id=qid)
    rows: list[dict] = []
    single: dict[int, list] = {}
    batch_equal = True
    interference = {} if interference is None else interference
    watch = CpuWatch().__enter__()
    for k in ks:
        lat, hits = [], []
        for qid, q in queries:
            t = time.perf_counter()
            r = searcher.search(q, k=k, query_id=qid)
            lat.append(time.perf_counter() - t)
            hits.append((r.doc_ids, r.scores))
        single[k] = hits
        rows.append({"engine": "lsr", "k": k, "mode": "search()", "threads": 1, **_stats_ms(lat),
                     "qps": len(lat) / sum(lat)})
        for th in threads:
            times = []
            for _ in range(batch_repeats):
                t = time.perf_counter()
                rb = searcher.search_batch(queries, k=k, threads=th)
                times.append(time.perf_counter() - t)
            rows.append({"engine": "lsr", "k": k, "mode": "search_batch()", "threads": th,
                         "qps": len(queries) / float(np.median(times)), "repeats": batch_repeats})
            by_q = rb.by_query()
            for (qid, _), (docs, scores) in zip(queries, hits):
                got = by_q.get(qid, [])
                if [h.doc_id for h in got] != docs or [h.score for h in got] != scores.tolist():
                    batch_equal = False
        log(f"lsr k={k}: search() median {rows[-1 - len(threads)]['median_ms']:.2f} ms")
    watch.__exit__()
    interference["lsr_search"] = watch.other
    check: dict[str, Any] = {"batch_equals_single": batch_equal}
    if scipy:
        p = searcher.prepare(queries)
        t = time.perf_counter()
        D = scipy_matrix(index, p.score_dtype)
        log(f"SciPy CSR matrix {D.shape} with {D.nnz:,} non-zeros ({D.data.dtype}) in {time.perf_counter() - t:.1f} s")
        qvecs = []
        for i in range(len(p.ids)):
            a, b = p.offsets[i], p.offsets[i + 1]
            qvecs.append((p.terms[a:b], p.weights[a:b]))
        mismatches = {}
        watch = CpuWatch().__enter__()
        for k in ks:
            lat, bad = [], 0
            for i, (terms, weights) in enumerate(qvecs):
                t = time.perf_counter()
                qv = np.zeros(index.num_terms, dtype=p.score_dtype)
                qv[terms] = weights
                docs, scores = topk_exact(D @ qv, k)
                lat.append(time.perf_counter() - t)
                ref_docs, ref_scores = single[k][i]
                if index.doc_ids(docs) != ref_docs or scores.tolist() != ref_scores.tolist():
                    bad += 1
            mismatches[k] = bad
            rows.append({"engine": "scipy", "k": k, "mode": "D @ q + top-k", "threads": 1, **_stats_ms(lat),
                         "qps": len(lat) / sum(lat)})
            log(f"SciPy k={k}: median {rows[-1]['median_ms']:.2f} ms, {bad} mismatching queries")
        watch.__exit__()
        interference["scipy_search"] = watch.other
        del D
        check.update(queries=len(queries), mismatches=mismatches,
                     lsr_equals_scipy=all(v == 0 for v in mismatches.values()))
    return rows, check


# --------------------------------------------------------------------------- report
def _gib(b: float) -> str:
    return f"{b / 2**30:.2f} GiB"


def format_table(result: dict) -> str:
    b = result["build"]
    size = f"index size {_gib(result['index_bytes'])} ({result['impact_dtype']} impacts)"
    lines = [
        f"collection: {result['documents']:,} documents, {result['postings']:,} postings, "
        f"{result['terms']:,} terms; {result['queries']} queries, {result['query_terms_mean']:.1f} terms "
        f"and {result['query_postings_mean']:,.0f} postings each on average",
        f"build: reused an earlier index (not timed); {size}" if b.get("reused") else
        f"build: {b['build_seconds']:.1f} s, peak RSS {_gib(b['peak_rss_bytes'])} "
        f"(child before build {_gib(b['rss_before_build_bytes'])}), {b['runs']} runs; {size}",
    ]
    head = ["engine", "k", "mode", "threads", "median ms", "p99 ms", "mean ms", "QPS"]
    body = []
    for r in result["search"]:
        body.append([r["engine"], str(r["k"]), r["mode"], str(r["threads"]),
                     *(f"{r[c]:.2f}" if c in r else "" for c in ("median_ms", "p99_ms", "mean_ms")),
                     f"{r['qps']:.1f}"])
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    right = {1, 3, 4, 5, 6, 7}

    def fmt(row):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))

    lines += ["", fmt(head), fmt(["-" * w for w in widths]), *map(fmt, body), ""]
    c = result["check"]
    if "lsr_equals_scipy" in c:
        ks = ", ".join(f"k={k}: {m} mismatching" for k, m in c["mismatches"].items())
        lines.append(f"check: lsr top-k == SciPy top-k (doc ids, scores, ties by doc id): "
                     f"{'PASS' if c['lsr_equals_scipy'] else 'FAIL'} ({c['queries']} queries; {ks})")
    lines.append(f"check: search_batch() hits == search() hits: {'PASS' if c['batch_equals_single'] else 'FAIL'}")
    other = {k: v for k, v in result.get("other_processes_cpu_seconds", {}).items() if v is not None}
    if other:
        lines.append("CPU seconds used meanwhile by other processes and kernel threads: "
                     + ", ".join(f"{k} {v:.1f}" for k, v in other.items()))
    return "\n".join(lines)


# --------------------------------------------------------------------------- main
def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m lsr.index.bench",
        description="Build an index of a synthetic SPLADE-shaped collection (lsr.index.synthetic) and time "
                    "exhaustive search against SciPy's sparse matrix-vector product.")
    ap.add_argument("--docs", type=int, default=100_000, help="documents (default 100000)")
    ap.add_argument("--queries", type=int, default=200, help="queries (default 200)")
    ap.add_argument("--seed", type=int, default=0, help="collection seed (default 0)")
    ap.add_argument("--query-seed", type=int, default=None, help="query seed (default: the collection seed)")
    ap.add_argument("--k", type=_ints, default=[10, 1000], help="comma-separated k values (default 10,1000)")
    ap.add_argument("--threads", type=_ints, default=[1, 2],
                    help="comma-separated thread counts for search_batch (default 1,2)")
    ap.add_argument("--batch-repeats", type=int, default=3,
                    help="timed search_batch() runs per setting; the median is reported (default 3)")
    ap.add_argument("--bits", type=int, default=8, choices=(8, 16), help="impact bits (default 8)")
    ap.add_argument("--run-postings", type=int, default=None, help="builder run size (default: IndexConfig's)")
    ap.add_argument("--batch-docs", type=int, default=10_000, help="documents per add_batch call (default 10000)")
    ap.add_argument("--work-dir", default="./.bench-cache",
                    help="where the generated collection is cached and the index is built (default ./.bench-cache)")
    ap.add_argument("--reuse-index", action="store_true",
                    help="search an index left by an earlier run instead of building (no build figures)")
    ap.add_argument("--no-scipy", action="store_true", help="skip the SciPy comparison")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--quiet", action="store_true", help="print only the table")
    return ap


def main(argv: Sequence[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [_CHILD_FLAG]:
        _build_child(argv[1:])
        return {}
    args = parser().parse_args(argv)
    log = (lambda *a, **kw: None) if args.quiet else (lambda *a, **kw: print(*a, file=sys.stderr, flush=True))
    from lsr.config import IndexConfig, QuantizationConfig
    from lsr.index import Index

    spec = SpladeLike(n_docs=args.docs, seed=args.seed)
    work = os.path.abspath(args.work_dir)
    coll = ensure_collection(spec, work, log)
    out = os.path.join(work, f"index-n{spec.n_docs}-s{spec.seed}-b{args.bits}")
    cfg = IndexConfig(quantization=QuantizationConfig(bits=args.bits),
                      **({"run_postings": args.run_postings} if args.run_postings else {}))
    if args.reuse_index and os.path.exists(os.path.join(out, "manifest.json")):
        log(f"reusing the index {out}")
        m = Index.open(out, verify=False).manifest
        build = {"reused": True, "manifest_build_seconds": m["build_seconds"]}
    else:
        log(f"building {out} in a child process ...")
        with CpuWatch() as w:
            build = build_in_child(coll, out, spec, cfg.to_dict(), args.batch_docs)
        build["other_cpu_seconds"] = w.other
        log(f"built in {build['build_seconds']:.1f} s, peak RSS {_gib(build['peak_rss_bytes'])}")
    index = Index.open(out, verify=False)
    t = time.perf_counter()
    queries = spec.queries(args.queries, args.query_seed)
    log(f"made {len(queries)} queries in {time.perf_counter() - t:.1f} s")
    tdf = np.diff(index.term_offsets)
    q_post = [sum(int(tdf[index.vocab[t]]) for t in q) for _, q in queries]
    interference: dict[str, Any] = {"build": build.get("other_cpu_seconds")}
    rows, check = run_search(out, queries, args.k, args.threads, not args.no_scipy, log, args.batch_repeats,
                             interference)
    import numba

    result = {
        "command": "python -m lsr.index.bench " + " ".join(argv),
        "documents": index.num_documents, "postings": index.num_postings, "terms": index.num_terms,
        "impact_dtype": index.manifest["impact_dtype"], "index_bytes": index.size_bytes(),
        "queries": len(queries), "query_terms_mean": float(np.mean([len(q) for _, q in queries])),
        "query_postings_mean": float(np.mean(q_post)),
        "build": build, "search": rows, "check": check, "other_processes_cpu_seconds": interference,
        "environment": {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
                        "machine": platform.machine(), "cpus": os.cpu_count()},
    }
    try:
        import scipy

        result["environment"]["scipy"] = scipy.__version__
    except ImportError:
        pass
    print(format_table(result), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return result


if __name__ == "__main__":
    main()
