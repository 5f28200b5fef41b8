"""A first stage followed by a reranker: :class:`Pipeline`.

``Pipeline(searcher, reranker, depth=100)`` (or ``searcher >> reranker``)
retrieves ``max(depth, k)`` candidates per query with the searcher, re-scores
the top ``depth`` with the reranker (document text from the index's docstore,
or from ``docs``) and returns the top ``k``. Queries are text: the searcher
encodes them with the index's recorded query encoder, the reranker reads the
same text. The time spent in each stage of the last call is in
:attr:`Pipeline.last_timings`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import numpy as np

from lsr.errors import InputError
from lsr.io import Query
from lsr.results import Results

from .base import Reranker
from .sources import open_docs


class Pipeline:
    """First-stage retrieval, then reranking of the top ``depth`` candidates."""

    def __init__(self, searcher, reranker: Reranker, depth: int | None = None, docs=None,
                 k: int | None = None) -> None:
        if not isinstance(reranker, Reranker):
            raise InputError(f"a pipeline's second stage is a Reranker, not a {type(reranker).__name__}")
        self.searcher = searcher
        self.reranker = reranker
        self.depth = reranker.config.depth if depth is None else depth
        if not isinstance(self.depth, int) or isinstance(self.depth, bool) or self.depth < 1:
            raise InputError(f"depth must be a positive integer, got {self.depth!r}")
        self.k = k if k is not None else searcher.config.k
        self.docs = open_docs(searcher.index if docs is None else docs)
        self.last_timings: dict[str, float] = {}

    def search(self, query: str, k: int | None = None, query_id: str = "0") -> Results:
        """Top ``k`` of one text query after reranking."""
        return self.search_batch([(query_id, query)], k=k)

    def search_batch(self, queries: Mapping[str, str] | Iterable[tuple[str, str]] | Iterable[Query],
                     k: int | None = None) -> Results:
        """Top ``k`` (default: the searcher's k) of every text query after reranking, in query order."""
        k = self.k if k is None else k
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InputError(f"k must be a positive integer, got {k!r}")
        items = list(queries.items()) if isinstance(queries, Mapping) else [
            (q.id, q.text) if isinstance(q, Query) else (str(q[0]), q[1]) for q in queries]
        for qid, text in items:
            if not isinstance(text, str):
                raise InputError(f"query {qid!r}: a pipeline with a reranker takes text queries")
        t0 = time.perf_counter()
        first = self.searcher.search_batch(items, k=max(k, self.depth))
        t1 = time.perf_counter()
        reranked = self.reranker.rerank(dict(items), first, self.docs, depth=self.depth) if len(first) else first
        t2 = time.perf_counter()
        self.last_timings = {"retrieval_s": t1 - t0, "rerank_s": t2 - t1}
        return top_k(reranked, k)

    def __repr__(self) -> str:
        return f"Pipeline({self.searcher!r} >> {self.reranker!r}, depth={self.depth})"


def top_k(results: Results, k: int) -> Results:
    """The hits of rank ``k`` or better (ranks are per query, 1-based)."""
    keep = np.flatnonzero(results.ranks <= k)
    if len(keep) == len(results):
        return results
    return Results([results.query_ids[i] for i in keep], [results.doc_ids[i] for i in keep],
                   results.scores[keep], results.ranks[keep])
