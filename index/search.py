"""Search: queries -> term ids and weights -> a query processor -> Results.

The CLI and the Python API share this code path. The query processor comes from
the registry :data:`lsr.index.processors.PROCESSORS`. Single-query search
(:meth:`Searcher.search`) runs one query on the calling thread with reused work
buffers (the latency path); :meth:`Searcher.search_batch` runs a batch with
one parallel loop over the queries.
"""

from __future__ import annotations

import math
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from lsr.config import ALGORITHMS, SearchConfig  # noqa: F401  (ALGORITHMS re-exported)
from lsr.errors import InputError
from lsr.io import Query, check_vector
from lsr.results import Results

from .index import Index
from .kernels.bundles import DocArrays, IndexArrays, PlannerSettings, QueryBatch
from .processors import PROCESSORS, Processor, planner_settings, scaled_max_k  # noqa: F401  (scaled_max_k re-exported)

_INT32_MAX = np.iinfo(np.int32).max

QueryLike = Mapping[str, float] | str | Query


@dataclass
class PreparedQueries:
    """Queries as flat arrays: query q has terms ``terms[offsets[q]:offsets[q+1]]``."""

    ids: list[str]
    offsets: np.ndarray   # int64[n+1]
    terms: np.ndarray     # int32
    weights: np.ndarray   # int32 / int64 for integer indexes, float32 for float ones
    score_dtype: type
    unknown_terms: int    # query terms not in the index (ignored)
    dropped_terms: int    # known terms whose weight rounded to 0
    empty: tuple = ()     # ids of the queries with no terms (empty text or vector): no hits


class QuerySide:
    """The query side every searcher shares: text encoding, term mapping and weight scaling
    (:meth:`prepare`), the k check, the warnings and the making of :class:`~lsr.results.Results`.

    A subclass sets ``index`` (anything with the :class:`Index` attributes these use: ``encoder``,
    ``vocab``, ``terms``, ``is_float``, ``term_max``, ``num_documents``, ``doc_ids``), ``config`` (a
    :class:`~lsr.config.SearchConfig`) and ``_query_encoder`` (None: the index's recorded one, made on
    first use). :class:`Searcher`, :class:`~lsr.index.sharded.ShardedSearcher` and
    :class:`~lsr.distributed.search.RayShardedSearcher` are its subclasses.
    """

    index: Any
    config: SearchConfig
    _query_encoder: Any = None

    # ------------------------------------------------------------------ queries
    def _encode_texts(self, texts: list[str]) -> list[dict]:
        if self._query_encoder is None:
            info = self.index.encoder
            if not info:
                raise InputError("text queries need the index's query encoder, but this index records "
                                 "none (it was built from term weights); give term:weight queries")
            from lsr.encoders import load_query_encoder

            self._query_encoder = load_query_encoder(info)
        return self._query_encoder.encode_queries(texts)

    def prepare(self, queries: Sequence[tuple[str, QueryLike]]) -> PreparedQueries:
        """Map terms to ids and weights to the index's query weight type."""
        texts = [(i, q.text if isinstance(q, Query) else q) for i, (_, q) in enumerate(queries)
                 if isinstance(q, str) or (isinstance(q, Query) and q.vector is None)]
        encoded: dict[int, dict] = {i: {} for i, text in texts if not (text or "").strip()}   # empty: no terms
        texts = [(i, text) for i, text in texts if (text or "").strip()]
        if texts:
            for (i, text), vec in zip(texts, self._encode_texts([t for _, t in texts])):
                encoded[i] = vec
        vocab = self.index.vocab
        is_float = self.index.is_float
        scale = self.config.query_scale
        ids: list[str] = []
        offsets = [0]
        all_terms: list[int] = []
        all_weights: list[float] = []
        unknown = dropped = 0
        empty: list[str] = []
        for i, (qid, q) in enumerate(queries):
            qid = str(qid)
            if isinstance(q, Query):
                vec = q.vector if q.vector is not None else encoded[i]
            elif isinstance(q, str):
                vec = encoded[i]
            elif isinstance(q, Mapping):
                vec = q
            else:
                raise InputError(f"query {qid!r}: expected a {{term: weight}} mapping or a text string, "
                                 f"got {type(q).__name__}")
            vec = check_vector(dict(vec), f"query {qid!r}")
            if not vec:
                empty.append(qid)
            # integer weights are used as they are; otherwise all are scaled
            # (decided on the query as given, whatever the index knows of it)
            scaled = not is_float and not all(float(w).is_integer() for w in vec.values())
            tids, ws = [], []
            for term, w in vec.items():
                t = vocab.get(term)
                if t is None:
                    unknown += 1
                elif w > 0:
                    tids.append(t)
                    x = w * scale + 0.5 if scaled else w
                    if not math.isfinite(x):
                        raise InputError(f"query {qid!r}: weight of term {term!r} ({w:.6g}) is too large "
                                         f"for integer scoring at query_scale {scale:g}")
                    ws.append(math.floor(x) if scaled else w)
            keep = [j for j, w in enumerate(ws) if w > 0]
            dropped += len(ws) - len(keep)
            for j in keep:
                if not is_float and ws[j] > _INT32_MAX:
                    raise InputError(f"query {qid!r}: weight of term {self.index.terms[tids[j]]!r} "
                                     f"({ws[j]}) is too large for integer scoring")
                all_terms.append(tids[j])
                all_weights.append(ws[j])
            ids.append(qid)
            offsets.append(len(all_terms))
        offs = np.asarray(offsets, dtype=np.int64)
        terms = np.asarray(all_terms, dtype=np.int32)
        if is_float:
            with np.errstate(over="ignore"):
                weights = np.asarray(all_weights, dtype=np.float32)
            # checked as used: a weight beyond float32's range, or one whose scores would be, is an error
            bound = np.zeros(len(ids), dtype=np.float64)
            if len(terms):
                contrib = np.asarray(all_weights, np.float64) * self.index.term_max[terms].astype(np.float64)
                np.add.at(bound, np.repeat(np.arange(len(ids)), np.diff(offs)), contrib)
            f32_max = float(np.finfo(np.float32).max)
            if not np.all(np.isfinite(weights)):
                i = int(np.flatnonzero(~np.isfinite(weights))[0])
                q = int(np.searchsorted(offs, i, side="right")) - 1
                raise InputError(f"query {ids[q]!r}: weight of term {self.index.terms[terms[i]]!r} "
                                 f"({all_weights[i]:.6g}) is beyond float32's range (at most {f32_max:.4g})")
            if len(bound) and not bound.max() <= f32_max:
                q = int(np.argmax(bound))
                raise InputError(f"query {ids[q]!r}: its scores could reach {bound[q]:.4g}, beyond float32's "
                                 f"range (at most {f32_max:.4g}); give smaller weights")
            score_dtype: type = np.float32
        else:
            weights = np.asarray(all_weights, dtype=np.int64)
            # the largest score any query can reach decides the accumulator width
            bound = np.zeros(len(ids), dtype=np.float64)
            if len(terms):
                contrib = weights.astype(np.float64) * self.index.term_max[terms].astype(np.float64)
                np.add.at(bound, np.repeat(np.arange(len(ids)), np.diff(offs)), contrib)
            if len(bound) and bound.max() > 2.0 ** 62:
                q = int(np.argmax(bound))
                raise InputError(f"query {ids[q]!r}: its scores could reach {bound[q]:.4g}, too large for "
                                 "integer scoring; give smaller weights")
            score_dtype = np.int32 if (len(bound) == 0 or bound.max() <= _INT32_MAX) else np.int64
            weights = weights.astype(score_dtype)
        return PreparedQueries(ids, offs, terms, weights, score_dtype, unknown, dropped, tuple(empty))

    @staticmethod
    def _warn(p: PreparedQueries) -> None:
        if p.empty:
            n = len(p.empty)
            shown = ", ".join(repr(q) for q in p.empty[:5]) + (", ..." if n > 5 else "")
            warnings.warn(f"{n} empty quer{'y' if n == 1 else 'ies'} (no terms) got no hits: {shown}",
                          stacklevel=3)
        if p.unknown_terms:
            warnings.warn(f"{p.unknown_terms} query term(s) unknown to the index were ignored", stacklevel=3)
        if p.dropped_terms:
            warnings.warn(f"{p.dropped_terms} query term weight(s) rounded to 0 at query_scale and were ignored",
                          stacklevel=3)

    def _check_k(self, k: int | None) -> int:
        k = self.config.k if k is None else k
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"k must be a positive integer, got {k!r}")
        return int(min(k, self.index.num_documents))

    def _results(self, qids: list[str], docs: np.ndarray, scores: np.ndarray, counts: np.ndarray,
                 names: Mapping[int, str] | None = None) -> Results:
        """Results from ``docs[q, :counts[q]]`` / ``scores``; doc ids from the index, or from ``names``
        (doc number -> id) where the caller has them and the index does not (Ray's driver)."""
        mask = np.arange(docs.shape[1])[None, :] < counts[:, None]
        flat_docs = docs[mask]
        flat_scores = scores[mask]
        ranks = (np.cumsum(mask, axis=1)[mask]).astype(np.int64)
        q: list[str] = []
        for qid, c in zip(qids, counts.tolist()):
            q.extend([qid] * c)
        ids = self.index.doc_ids(flat_docs) if names is None else [names[d] for d in flat_docs.tolist()]
        return Results(q, ids, flat_scores, ranks)

    def __rshift__(self, reranker):
        """``searcher >> reranker``: a :class:`lsr.rerank.Pipeline` with the reranker's default depth."""
        from lsr.rerank.pipeline import Pipeline

        return Pipeline(self, reranker)


class Searcher(QuerySide):
    """Exact top-k search over an :class:`Index`.

    ``index`` is an Index or a path. Settings come from ``config`` (a
    :class:`~lsr.config.SearchConfig`) with keyword overrides, e.g.
    ``Searcher("idx", k=100, threads=2)``; the planner's settings
    (:class:`~lsr.config.PlannerConfig`) may be overridden by name too, e.g.
    ``Searcher("idx", max_k=50)``. The query processor is
    ``config.algorithm``, dispatched through :data:`lsr.index.processors.PROCESSORS`.
    Text queries are encoded by the query encoder the index records, or by
    ``query_encoder``: a loaded encoder (anything with ``encode_queries``) or a spec that
    :func:`lsr.encoders.load_encoder` loads, e.g. the ``lsr onnx export`` directory of the
    index's model. A spec is checked against the index's record: the query tokenizer must be the
    recorded one, and where both name the weights (SHA-256; an ONNX export names those it was
    exported from) they must agree.
    ``max_k`` is the largest k at which the ``auto`` planner tries the block-max
    traversal on this index: ``PlannerConfig.max_k`` scaled to the collection's
    size (:func:`~lsr.index.processors.scaled_max_k`).
    """

    def __new__(cls, index: Any = None, *args: Any, **kwargs: Any):
        """A sharded index (:mod:`lsr.index.sharded`) gets a :class:`~lsr.index.sharded.ShardedSearcher`."""
        if cls is Searcher and not isinstance(index, Index) and index is not None:
            from .sharded import ShardedLayout, ShardedSearcher, is_sharded

            if isinstance(index, ShardedLayout) or (isinstance(index, (str, os.PathLike)) and is_sharded(index)):
                return ShardedSearcher(index, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, index: Index | str | os.PathLike, config: SearchConfig | None = None,
                 query_encoder: Any = None, **overrides: Any):
        self.index = index if isinstance(index, Index) else Index.open(index)
        cfg = config or SearchConfig()
        self.config = cfg.with_overrides(**overrides) if overrides else cfg
        # the single-query path's work buffers: the index's, per thread, so that searchers of one index
        # (e.g. one per algorithm) share one accumulator instead of each holding its own; a call on
        # one thread runs to its end before the next, and every kernel leaves its buffers clean
        self._local = self.index._scratch
        self._query_encoder = _own_query_encoder(query_encoder, self.index.encoder)
        self._settings = planner_settings(self.config, self.index.num_documents)
        self.max_k = self._settings.max_k
        self._index_arrays: IndexArrays | None = None

    # ------------------------------------------------------------------ search
    def _buffer(self, name: str, n: int, dtype) -> np.ndarray:
        """A zeroed per-thread work array, reused by the single-query path."""
        bufs = getattr(self._local, "bufs", None)
        if bufs is None:
            bufs = self._local.bufs = {}
        key = (name, np.dtype(dtype))
        a = bufs.get(key)
        if a is None:
            a = bufs[key] = np.zeros(n, dtype=dtype)
        return a

    def planner_settings(self) -> PlannerSettings:
        """The planner's settings for this index (:func:`~lsr.index.processors.planner_settings`):
        ``max_k`` scaled to the collection's size (:attr:`max_k`), ``common_df`` a document frequency."""
        return self._settings

    def dense_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(slot, rows, row_max): the index's dense rows (:meth:`Index.dense_rows`) for this searcher's
        ``dense_df`` and ``dense_mb``, made on first use and shared by every searcher of the index."""
        return self.index.dense_rows(self.config.dense_df, self.config.dense_mb << 20)

    def index_arrays(self) -> IndexArrays:
        """The term-at-a-time processors' index bundle, with this searcher's dense rows (made once)."""
        if self._index_arrays is None:
            ix = self.index
            self._index_arrays = IndexArrays(ix.term_offsets, ix.range_offsets, ix.range_max, ix.range_code_offsets,
                                             ix.range_codes, ix.postings_low, ix.postings_impacts, ix.range_shift,
                                             ix.num_documents, ix.term_max, *self.dense_rows())
        return self._index_arrays

    def doc_arrays(self) -> DocArrays:
        """The document-at-a-time processors' index bundle (decodes the doc ids once per index)."""
        ix = self.index
        return DocArrays(ix.term_offsets, ix.postings_docs, ix.postings_impacts, ix.term_max, ix.block_offsets,
                         ix.block_max, ix.block_last_doc, ix.block_size)

    def processor(self, k: int, p: PreparedQueries | None = None) -> Processor:
        """The processor that runs a call at top-k: the configured one, after its ``route`` (the
        planner's rules that need no buffers: with ``p`` of one query, its tests too) and, for an index
        it never takes, its fallback."""
        proc = PROCESSORS[self.config.algorithm]
        while True:
            nxt = proc.route(self, p if p is not None else _NO_QUERIES, k) if proc.route else None
            if nxt is None and not proc.takes(self.index):
                nxt = proc.fallback
            if nxt is None:
                return proc
            proc = PROCESSORS[nxt]

    def _run_one(self, proc: Processor, p: PreparedQueries, q: int, k: int, out_docs: np.ndarray,
                 out_scores: np.ndarray) -> int:
        """Query q of ``p`` by ``proc`` (its fallbacks answering where it returns -1); the hit count."""
        a, b = p.offsets[q], p.offsets[q + 1]
        terms, weights = p.terms[a:b], p.weights[a:b]
        while True:
            n = proc.one(proc.arrays(self), terms, weights, k, proc.params(self, k), proc.work(self, p, None),
                         out_docs, out_scores)
            if n >= 0 or proc.fallback is None:
                return n
            proc = PROCESSORS[proc.fallback]

    def search(self, query: QueryLike, k: int | None = None, query_id: str = "0") -> Results:
        """Top-k of one query (a ``{term: weight}`` mapping, or text for encoder-built indexes)."""
        k = self._check_k(k)
        p = self.prepare([(query_id, query)])
        self._warn(p)
        out_docs = np.empty(k, dtype=np.int32)
        out_scores = np.empty(k, dtype=p.score_dtype)
        n = self._run_one(self.processor(k, p), p, 0, k, out_docs, out_scores)
        return self._results(p.ids, out_docs[None, :], out_scores[None, :], np.array([n]))

    def search_batch(self, queries: Mapping[str, QueryLike] | Iterable[tuple[str, QueryLike]] | Iterable[Query],
                     k: int | None = None, threads: int | None = None) -> Results:
        """Top-k of every query, in parallel; hits come back in query order. A query with no terms
        (an empty text or vector) gets no hits; one warning counts them. Numba's thread count is
        set for the call and put back when it returns."""
        items = _query_items(queries)
        k = self._check_k(k)
        if not items:
            return Results()
        p = self.prepare(items)
        self._warn(p)
        nq = len(p.ids)
        out_docs = np.empty((nq, k), dtype=np.int32)
        out_scores = np.empty((nq, k), dtype=p.score_dtype)
        counts = np.zeros(nq, dtype=np.int64)
        proc = self.processor(k, p)
        with _threads(self.config.threads if threads is None else threads, nq) as workers:
            proc.batch(proc.arrays(self), QueryBatch(p.offsets, p.terms, p.weights), k, proc.params(self, k),
                       proc.work(self, p, workers), out_docs, out_scores, counts)
        if proc.fallback is not None:
            for q in np.flatnonzero(counts < 0):   # queries the processor does not take
                counts[q] = self._run_one(PROCESSORS[proc.fallback], p, int(q), k, out_docs[q], out_scores[q])
        return self._results(p.ids, out_docs, out_scores, counts)

    def warmup(self) -> None:
        """Compile the kernels for this index's dtypes (cached on disk after the first run)."""
        term = self.index.terms[int(np.argmax(np.diff(self.index.term_offsets)))]
        weight = 1.0 if self.index.is_float else 1
        self.search({term: weight}, k=1)
        self.search_batch([("w", {term: weight})], k=1, threads=1)


def _own_query_encoder(spec: Any, recorded: Mapping[str, Any] | None):
    """``Searcher(query_encoder=...)``: None, a loaded encoder, or a spec loaded and checked against
    the index's encoder record (see :class:`Searcher`)."""
    if spec is None:
        return None
    if hasattr(spec, "encode_queries"):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        raise InputError(f"query_encoder: expected an encoder or an encoder spec (a name, a checkpoint or an "
                         f"ONNX export directory), got {type(spec).__name__}")
    from lsr.encoders import load_encoder
    from lsr.encoders.errors import IncompatibleModelError

    enc = load_encoder(str(spec))
    if not recorded:
        return enc
    mine = enc.describe_query()
    theirs = recorded.get("query") if isinstance(recorded.get("query"), Mapping) else {}
    if theirs.get("tokenizer_hash") and mine.get("tokenizer_hash") != theirs["tokenizer_hash"]:
        raise IncompatibleModelError(f"query encoder {spec}: its tokenizer differs from the one the index "
                                     "records, so its terms would not match the index's")
    source = (mine.get("onnx") or {}).get("source") or {}
    sha = source.get("sha256") or mine.get("sha256")
    if sha and theirs.get("sha256") and sha != theirs["sha256"]:
        raise IncompatibleModelError(f"query encoder {spec}: its weights (SHA-256 {sha[:12]}...) are not "
                                     f"the index's query model's ({theirs['sha256'][:12]}...)")
    return enc


def _query_items(queries) -> list[tuple[str, QueryLike]]:
    if isinstance(queries, Mapping):
        return list(queries.items())
    items = []
    for i, q in enumerate(queries):
        if isinstance(q, Query):
            items.append((q.id, q))
        elif isinstance(q, tuple) and len(q) == 2:
            items.append((str(q[0]), q[1]))
        else:
            raise InputError(f"query {i}: expected (query id, query) pairs or Query objects")
    ids = [qid for qid, _ in items]
    if len(set(ids)) != len(ids):
        raise InputError("duplicate query ids in the batch")
    return items


@contextmanager
def _threads(threads: int, n_queries: int) -> Iterator[int]:
    """Numba's thread count set to ``threads`` (0 = all) for the block, put back after it (also on
    error); yields the number of workers a batch of ``n_queries`` uses."""
    import numba

    before = numba.get_num_threads()
    avail = numba.config.NUMBA_NUM_THREADS
    n = avail if threads == 0 else min(threads, avail)
    numba.set_num_threads(n)
    try:
        yield max(1, min(n, n_queries))
    finally:
        numba.set_num_threads(before)


_NO_QUERIES = PreparedQueries([], np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32), np.int32, 0, 0)
