"""Search: queries -> term ids and weights -> a query processor -> Results.

The CLI and the Python API share this code path. Single-query search
(:meth:`Searcher.search`) runs one query on the calling thread with a reused
accumulator (the latency path); :meth:`Searcher.search_batch` runs a batch with
one parallel loop over the queries.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from lsr.config import ALGORITHMS, SearchConfig  # noqa: F401  (ALGORITHMS re-exported)
from lsr.errors import InputError
from lsr.io import Query, check_vector
from lsr.results import Results

from .index import Index
from .kernels.blockmax import N_BUCKETS, blockmax_batch, blockmax_one, query_pairs
from .kernels.exhaustive import exhaustive_batch, exhaustive_one
from .kernels.filtered import HIST_BITS, filtered_batch, filtered_one
from .kernels.planner import auto_batch, auto_one, plan_one
from .kernels.maxscore import maxscore_batch, maxscore_one
from .kernels.wand import wand_batch, wand_one

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



class PlannerSettings(NamedTuple):
    """The planner's settings, in the order :func:`~lsr.index.kernels.planner.auto_one` and
    ``auto_batch`` take them after k (so a value unpacks into their arguments)."""

    max_k: int              # SearchConfig.max_k scaled to the collection's size (scaled_max_k)
    locality_ratio: float
    pair_ratio: float
    common_df: int          # a document frequency: SearchConfig.common_df of the documents, at least 1
    max_common: int
    budget_ratio: float
    sweep_after: int
    full_ratio: float
    filter_large: bool      # SearchConfig.large_k == "filtered"


def scaled_max_k(max_k: int, n_docs: int, max_k_docs: int, max_k_power: float) -> int:
    """The largest k at which the planner tries the block-max traversal on a collection of ``n_docs``
    documents: ``max_k`` from ``max_k_docs`` documents on, ``floor(max_k * (n_docs / max_k_docs) **
    max_k_power)`` below (:class:`~lsr.config.SearchConfig`). Never scaled up: above ``max_k_docs``
    nothing was measured."""
    if n_docs >= max_k_docs:
        return max_k
    return int(math.floor(max_k * (n_docs / max_k_docs) ** max_k_power))


class Searcher:
    """Exact top-k search over an :class:`Index`.

    ``index`` is an Index or a path. Settings come from ``config`` (a
    :class:`~lsr.config.SearchConfig`) with keyword overrides, e.g.
    ``Searcher("idx", k=100, threads=2)``. ``max_k`` is the largest k at
    which the ``auto`` planner tries the block-max traversal on this index:
    ``SearchConfig.max_k`` scaled to the collection's size (:func:`scaled_max_k`).
    """

    def __init__(self, index: Index | str | os.PathLike, config: SearchConfig | None = None, **overrides: Any):
        self.index = index if isinstance(index, Index) else Index.open(index)
        cfg = config or SearchConfig()
        self.config = replace(cfg, **overrides) if overrides else cfg
        # the single-query path's work buffers: the index's, per thread, so that searchers of one index
        # (e.g. one per algorithm) share one accumulator instead of each holding its own; a call on
        # one thread runs to its end before the next, and every kernel leaves its buffers clean
        self._local = self.index._scratch
        self._query_encoder = None
        # the planner's k limit for this collection's size (SearchConfig.max_k, max_k_docs, max_k_power)
        self.max_k = scaled_max_k(self.config.max_k, self.index.num_documents, self.config.max_k_docs,
                                  self.config.max_k_power)

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
        for i, text in texts:
            if not text.strip():
                raise InputError(f"query {str(queries[i][0])!r} is empty")
        encoded: dict[int, dict] = {}
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
                raise InputError(f"query {qid!r} is empty (no terms)")
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
                    ws.append(math.floor(w * scale + 0.5) if scaled else w)
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
            weights = np.asarray(all_weights, dtype=np.float32)
            score_dtype: type = np.float32
        else:
            weights = np.asarray(all_weights, dtype=np.int64)
            # the largest score any query can reach decides the accumulator width
            bound = np.zeros(len(ids), dtype=np.float64)
            if len(terms):
                contrib = weights.astype(np.float64) * self.index.term_max[terms].astype(np.float64)
                np.add.at(bound, np.repeat(np.arange(len(ids)), np.diff(offs)), contrib)
            score_dtype = np.int32 if (len(bound) == 0 or bound.max() <= _INT32_MAX) else np.int64
            weights = weights.astype(score_dtype)
        return PreparedQueries(ids, offs, terms, weights, score_dtype, unknown, dropped)

    @staticmethod
    def _warn(p: PreparedQueries) -> None:
        if p.unknown_terms:
            warnings.warn(f"{p.unknown_terms} query term(s) unknown to the index were ignored", stacklevel=3)
        if p.dropped_terms:
            warnings.warn(f"{p.dropped_terms} query term weight(s) rounded to 0 at query_scale and were ignored",
                          stacklevel=3)

    # ------------------------------------------------------------------ search
    def _check_k(self, k: int | None) -> int:
        k = self.config.k if k is None else k
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"k must be a positive integer, got {k!r}")
        return int(min(k, self.index.num_documents))

    def _acc(self, dtype) -> np.ndarray:
        return self._buffer("acc", self.index.num_documents, dtype)

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

    def _n_range_blocks(self) -> int:
        return (self.index.num_documents + (1 << self.index.range_shift) - 1) >> self.index.range_shift

    def _range_buffers(self, dtype, n_pairs: int, workers: int | None = None):
        """Work buffers of the block-max traversal for queries of up to ``n_pairs`` (term, block) pairs:
        (ub, local, order, bucket_counts, head, tail, ent_pos, ent_next); one set, or ``workers`` rows."""
        ix = self.index
        n_blocks = self._n_range_blocks()
        R = 1 << ix.range_shift
        n_pairs = max(int(n_pairs), 1)
        if workers is None:
            ent = getattr(self._local, "ent", None)
            if ent is None or ent[0].shape[0] < n_pairs:
                cap = max(n_pairs, 2 * (ent[0].shape[0] if ent is not None else 0))
                ent = self._local.ent = (np.empty(cap, np.int64), np.empty(cap, np.int32))
            head = getattr(self._local, "head", None)
            if head is None:
                head = self._local.head = np.full(n_blocks, -1, np.int32)
            return (self._buffer("ub", n_blocks, dtype), self._buffer("local", R, dtype),
                    self._buffer("order", n_blocks, np.int32), self._buffer("buckets", N_BUCKETS + 1, np.int64),
                    head, self._buffer("tail", n_blocks, np.int32), ent[0], ent[1])
        return (np.zeros((workers, n_blocks), dtype), np.zeros((workers, R), dtype),
                np.zeros((workers, n_blocks), np.int32), np.zeros((workers, N_BUCKETS + 1), np.int64),
                np.full((workers, n_blocks), -1, np.int32), np.zeros((workers, n_blocks), np.int32),
                np.empty((workers, n_pairs), np.int64), np.empty((workers, n_pairs), np.int32))

    def _filter_buffers(self, dtype, workers: int | None = None):
        """Work buffers of the filtered scorer, besides the block-max traversal's:
        (bmax, keep, hist, blocks); one set, or ``workers`` rows."""
        n_blocks = self._n_range_blocks()
        if workers is None:
            return (self._buffer("bmax", n_blocks, dtype), self._buffer("keep", n_blocks, np.uint8),
                    self._buffer("hist", 1 << HIST_BITS, np.int64), self._buffer("blocks", n_blocks, np.int32))
        return (np.zeros((workers, n_blocks), dtype), np.zeros((workers, n_blocks), np.uint8),
                np.zeros((workers, 1 << HIST_BITS), np.int64), np.zeros((workers, n_blocks), np.int32))

    def _algorithm(self, k: int) -> str:
        """The processor for top-k: the configured one, except that ``auto`` above :attr:`max_k` (the
        configured ``max_k`` scaled to the collection's size, :func:`scaled_max_k`) is exhaustive
        scoring (unless ``large_k`` is "filtered"). That rule of the planner depends on k alone, so it
        is taken here, before any of the planner's buffers are made, and the exhaustive scorer runs
        directly."""
        cfg = self.config
        if cfg.algorithm == "auto" and k > self.max_k and cfg.large_k != "filtered":
            return "exhaustive"
        return cfg.algorithm

    def planner_settings(self) -> PlannerSettings:
        """The planner's settings from this searcher's config; ``max_k`` is scaled to the collection's
        size (:attr:`max_k`), ``common_df`` becomes a document frequency (``SearchConfig.common_df`` of
        the documents, rounded up, at least 1)."""
        cfg = self.config
        common_df = max(1, math.ceil(cfg.common_df * self.index.num_documents))
        return PlannerSettings(self.max_k, cfg.locality_ratio, cfg.pair_ratio, common_df, cfg.max_common,
                               cfg.budget_ratio, cfg.sweep_after, cfg.full_ratio, cfg.large_k == "filtered")

    def dense_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(slot, rows, row_max): the index's dense rows (:meth:`Index.dense_rows`) for this searcher's
        ``dense_df`` and ``dense_mb``, made on first use and shared by every searcher of the index."""
        return self.index.dense_rows(self.config.dense_df, self.config.dense_mb << 20)

    def _range_arrays(self):
        ix = self.index
        return (ix.term_offsets, ix.range_offsets, ix.range_max, ix.range_code_offsets, ix.range_codes,
                ix.postings_low, ix.postings_impacts, ix.range_shift, ix.num_documents)

    def _max_pairs(self, p: PreparedQueries) -> int:
        n = query_pairs(self.index.range_offsets, p.offsets, p.terms)
        return int(n.max()) if len(n) else 0

    def search(self, query: QueryLike, k: int | None = None, query_id: str = "0") -> Results:
        """Top-k of one query (a ``{term: weight}`` mapping, or text for encoder-built indexes)."""
        k = self._check_k(k)
        p = self.prepare([(query_id, query)])
        self._warn(p)
        ix = self.index
        out_docs = np.empty(k, dtype=np.int32)
        out_scores = np.empty(k, dtype=p.score_dtype)
        algo = self._algorithm(k)
        cfg = self.config
        st = self.planner_settings() if algo == "auto" else None
        if algo == "auto" and not plan_one(ix.term_offsets, ix.range_offsets, self._n_range_blocks(), p.terms,
                                           st.locality_ratio, st.pair_ratio, st.common_df, st.max_common)[0]:
            algo = "exhaustive"   # the planner's own first test, taken before its buffers are made
        if algo == "auto":
            n, _ = auto_one(*self._range_arrays(), *self.dense_rows(), ix.term_max, p.terms, p.weights, k,
                            *st, self._acc(p.score_dtype),
                            *self._range_buffers(p.score_dtype, self._max_pairs(p)),
                            *self._filter_buffers(p.score_dtype), out_docs, out_scores)
        elif algo == "blockmax":
            n = blockmax_one(*self._range_arrays(), *self.dense_rows(), p.terms, p.weights, k, -1.0, cfg.sweep_after,
                             *self._range_buffers(p.score_dtype, self._max_pairs(p)), out_docs, out_scores,
                             np.empty(3, np.int64))
            if n < 0:   # more query terms than the traversal takes: the same top k, exhaustively
                n = exhaustive_one(*ix.postings_arrays, *self.dense_rows()[:2], p.terms, p.weights, k,
                                   self._acc(p.score_dtype), out_docs, out_scores)
        elif algo == "filtered":
            n = -1
            if not ix.is_float:
                ub, *_, ent_pos, _ = self._range_buffers(p.score_dtype, self._max_pairs(p))
                bmax, keep, hist, blocks = self._filter_buffers(p.score_dtype)
                n = filtered_one(*self._range_arrays(), *self.dense_rows()[:2], ix.term_max, p.terms, p.weights, k,
                                 cfg.full_ratio, self._acc(p.score_dtype), bmax, ub, keep, hist, blocks, ent_pos,
                                 out_docs, out_scores)
            if n < 0:   # float impacts: the same top k, exhaustively
                n = exhaustive_one(*ix.postings_arrays, *self.dense_rows()[:2], p.terms, p.weights, k,
                                   self._acc(p.score_dtype), out_docs, out_scores)
        elif algo in ("wand", "bmw"):
            n = wand_one(ix.term_offsets, ix.postings_docs, ix.postings_impacts, ix.term_max, ix.block_offsets,
                         ix.block_max, ix.block_last_doc, ix.block_size, algo == "bmw", p.terms, p.weights, k,
                         out_docs, out_scores)
        elif algo in ("maxscore", "bmm"):
            n = maxscore_one(ix.term_offsets, ix.postings_docs, ix.postings_impacts, ix.term_max, ix.block_offsets,
                             ix.block_max, ix.block_last_doc, ix.block_size, algo == "bmm", p.terms, p.weights, k,
                             out_docs, out_scores)
        else:
            n = exhaustive_one(*ix.postings_arrays, *self.dense_rows()[:2], p.terms, p.weights, k,
                               self._acc(p.score_dtype), out_docs, out_scores)
        return self._results(p.ids, out_docs[None, :], out_scores[None, :], np.array([n]))

    def search_batch(self, queries: Mapping[str, QueryLike] | Iterable[tuple[str, QueryLike]] | Iterable[Query],
                     k: int | None = None, threads: int | None = None) -> Results:
        """Top-k of every query, in parallel; hits come back in query order."""
        items = _query_items(queries)
        k = self._check_k(k)
        if not items:
            return Results()
        p = self.prepare(items)
        self._warn(p)
        nq = len(p.ids)
        threads = self.config.threads if threads is None else threads
        workers = _set_threads(threads, nq)
        ix = self.index
        cfg = self.config
        out_docs = np.empty((nq, k), dtype=np.int32)
        out_scores = np.empty((nq, k), dtype=p.score_dtype)
        counts = np.zeros(nq, dtype=np.int64)
        algo = self._algorithm(k)
        if algo == "auto":
            accs = np.zeros((workers, ix.num_documents), dtype=p.score_dtype)
            used = np.zeros(nq, dtype=np.int8)
            auto_batch(*self._range_arrays(), *self.dense_rows(), ix.term_max, p.offsets, p.terms, p.weights, k,
                       *self.planner_settings(), accs,
                       *self._range_buffers(p.score_dtype, self._max_pairs(p), workers),
                       *self._filter_buffers(p.score_dtype, workers), out_docs, out_scores, counts, used)
        elif algo == "blockmax":
            blockmax_batch(*self._range_arrays(), *self.dense_rows(), p.offsets, p.terms, p.weights, k, cfg.sweep_after,
                           *self._range_buffers(p.score_dtype, self._max_pairs(p), workers),
                           out_docs, out_scores, counts)
            acc = None
            for q in np.flatnonzero(counts < 0):   # more query terms than the traversal takes
                acc = self._acc(p.score_dtype) if acc is None else acc
                a, b = p.offsets[q], p.offsets[q + 1]
                counts[q] = exhaustive_one(*ix.postings_arrays, *self.dense_rows()[:2], p.terms[a:b], p.weights[a:b], k,
                                           acc, out_docs[q], out_scores[q])
        elif algo == "filtered" and not ix.is_float:
            ub, *_, ent_pos, _ = self._range_buffers(p.score_dtype, self._max_pairs(p), workers)
            bmax, keep, hist, blocks = self._filter_buffers(p.score_dtype, workers)
            filtered_batch(*self._range_arrays(), *self.dense_rows()[:2], ix.term_max, p.offsets, p.terms, p.weights, k,
                           cfg.full_ratio, np.zeros((workers, ix.num_documents), dtype=p.score_dtype), bmax, ub, keep,
                           hist, blocks, ent_pos, out_docs, out_scores, counts)
        elif algo in ("wand", "bmw"):
            wand_batch(ix.term_offsets, ix.postings_docs, ix.postings_impacts, ix.term_max, ix.block_offsets,
                       ix.block_max, ix.block_last_doc, ix.block_size, algo == "bmw", p.offsets, p.terms,
                       p.weights, k, out_docs, out_scores, counts)
        elif algo in ("maxscore", "bmm"):
            maxscore_batch(ix.term_offsets, ix.postings_docs, ix.postings_impacts, ix.term_max, ix.block_offsets,
                           ix.block_max, ix.block_last_doc, ix.block_size, algo == "bmm", p.offsets, p.terms,
                           p.weights, k, out_docs, out_scores, counts)
        else:
            accs = np.zeros((workers, ix.num_documents), dtype=p.score_dtype)
            exhaustive_batch(*ix.postings_arrays, *self.dense_rows()[:2], p.offsets, p.terms, p.weights, k, accs,
                             out_docs, out_scores, counts)
        return self._results(p.ids, out_docs, out_scores, counts)

    def _results(self, qids: list[str], docs: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> Results:
        mask = np.arange(docs.shape[1])[None, :] < counts[:, None]
        flat_docs = docs[mask]
        flat_scores = scores[mask]
        ranks = (np.cumsum(mask, axis=1)[mask]).astype(np.int64)
        q: list[str] = []
        for qid, c in zip(qids, counts.tolist()):
            q.extend([qid] * c)
        return Results(q, self.index.doc_ids(flat_docs), flat_scores, ranks)

    def warmup(self) -> None:
        """Compile the kernels for this index's dtypes (cached on disk after the first run)."""
        term = self.index.terms[int(np.argmax(np.diff(self.index.term_offsets)))]
        weight = 1.0 if self.index.is_float else 1
        self.search({term: weight}, k=1)
        self.search_batch([("w", {term: weight})], k=1, threads=1)


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


def _set_threads(threads: int, n_queries: int) -> int:
    import numba

    avail = numba.config.NUMBA_NUM_THREADS
    n = avail if threads == 0 else min(threads, avail)
    numba.set_num_threads(n)
    return max(1, min(n, n_queries))
