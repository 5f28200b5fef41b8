"""A deterministic synthetic collection shaped like SPLADE vectors of MS MARCO.

Used by the benchmark (:mod:`benchmarks.peer_bench`) and by tests; nothing here
claims to reproduce real retrieval quality, only the *shape* that decides the
cost of building and searching an index:

* **Vocabulary**: ``n_terms`` (default 30,522, BERT's WordPiece vocabulary
  size) terms named ``t00000`` ... ``t30521`` (:func:`term_name`). Term ids of
  the index built with ``vocabulary=spec.vocabulary()`` equal these numbers.
* **Document frequencies** are skewed: each document draws terms i.i.d. from a
  Zipf-Mandelbrot distribution ``p(rank) ~ (rank + zipf_offset) ** -zipf_exponent``
  (duplicates collapse). The ranks are assigned to term ids through a fixed
  random permutation, so popularity does not follow the id order. With the
  defaults at 1M documents the most frequent term is in about 32% of the
  documents, about 130 terms are in more than 10%, and the median term is in
  about 0.13%.
* **Non-zeros per document** follow a log-normal around ``mean_terms``
  (default 120, ``terms_sigma`` 0.3: 5%-95% range about 70-190, clipped to
  [8, 600]).
* **Weights** are SPLADE-like positive float32: log-normal, mostly 0.1-1,
  frequent terms a little lower than rare ones, a long tail cut at
  ``max_weight`` (3.0).
* **Queries** (:meth:`SpladeLike.queries`) have about ``query_terms`` (43)
  terms: about 60% picked from one collection document (weighted by that
  document's weights, so every query has real matches), the rest drawn from the
  same skewed distribution (expansion terms), with SPLADE-like float weights.

Everything is a pure function of the spec (its ``seed`` included):
documents are generated in fixed blocks of ``block_docs`` documents, block
``b`` from ``numpy.random.default_rng([seed, 0, b])``, so any block can be
regenerated on its own and a consumer's batch size never changes the data.
Queries use ``default_rng([query_seed, 1, n])``.

Example::

    spec = SpladeLike(n_docs=100_000, seed=0)
    with IndexBuilder("idx", vocabulary=spec.vocabulary()) as b:
        for batch in spec.batches():
            b.add_batch(batch.doc_ids, batch.indptr, batch.term_ids, batch.weights)
    queries = spec.queries(200)          # [(query id, {term: weight}), ...]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator, NamedTuple

import numpy as np

VOCAB_SIZE = 30_522
GENERATOR_VERSION = 1   # bump when the generated data changes (benchmark caches key on it)


def term_name(t: int) -> str:
    """The string of term id ``t`` (``t00042``)."""
    return f"t{t:05d}"


def doc_name(d: int) -> str:
    """The external id of document number ``d`` (``d42``)."""
    return f"d{d}"


class Batch(NamedTuple):
    """Documents ``first .. first + len(doc_ids) - 1`` in CSR form (term ids sorted within a document)."""

    first: int
    doc_ids: list[str]
    indptr: np.ndarray     # int64[n + 1]
    term_ids: np.ndarray   # int32
    weights: np.ndarray    # float32, > 0


@dataclass(frozen=True)
class SpladeLike:
    """Parameters of a synthetic SPLADE-shaped collection (see the module docs)."""

    n_docs: int
    seed: int = 0
    n_terms: int = VOCAB_SIZE
    mean_terms: float = 120.0
    terms_sigma: float = 0.3
    min_terms: int = 8
    max_terms: int = 600
    zipf_exponent: float = 1.0
    zipf_offset: float = 50.0
    max_weight: float = 3.0
    block_docs: int = 10_000
    query_terms: float = 43.0
    query_doc_share: float = 0.6
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.n_docs < 1:
            raise ValueError("n_docs must be positive")
        if not (self.min_terms <= self.mean_terms <= self.max_terms <= self.n_terms // 4):
            raise ValueError("need min_terms <= mean_terms <= max_terms <= n_terms / 4")

    # ------------------------------------------------------------------ model
    def vocabulary(self) -> list[str]:
        return [term_name(t) for t in range(self.n_terms)]

    @property
    def n_blocks(self) -> int:
        return -(-self.n_docs // self.block_docs)

    def _model(self):
        m = self._cache.get("model")
        if m is None:
            rank = np.arange(self.n_terms, dtype=np.float64)
            p = (rank + self.zipf_offset) ** -self.zipf_exponent
            p /= p.sum()
            cdf = np.cumsum(p)
            cdf[-1] = 1.0
            # rank -> term id: a fixed permutation (popularity unrelated to the id)
            perm = np.random.default_rng([self.seed, 2]).permutation(self.n_terms).astype(np.int32)
            # expected distinct terms after m i.i.d. draws: E(m) = sum_t 1 - (1 - p_t)^m
            log1mp = np.log1p(-p)
            ms = np.arange(0, 4 * self.max_terms + 1)
            expected = np.empty(len(ms))
            for a in range(0, len(ms), 256):
                chunk = ms[a:a + 256, None]
                expected[a:a + 256] = (-np.expm1(chunk * log1mp[None, :])).sum(axis=1)
            # weight location per rank: frequent terms a little lower (log-normal mu)
            mu = -1.15 + 0.5 * np.log1p(rank) / np.log(self.n_terms)
            m = self._cache["model"] = (p, cdf, perm, expected, mu)
        return m

    def _draw_terms(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` i.i.d. draws: (term ids int32, ranks int32)."""
        _, cdf, perm, _, _ = self._model()
        ranks = np.searchsorted(cdf, rng.random(n), side="right").astype(np.int32)
        np.minimum(ranks, self.n_terms - 1, out=ranks)
        return perm[ranks], ranks

    def _weights(self, rng: np.random.Generator, ranks: np.ndarray, shift: float = 0.0) -> np.ndarray:
        mu = self._model()[4]
        w = np.exp(mu[ranks] + shift + 0.7 * rng.standard_normal(len(ranks)))
        np.clip(w, 0.01, self.max_weight, out=w)
        return w.astype(np.float32)

    # ------------------------------------------------------------------ documents
    def block(self, b: int) -> Batch:
        """Generation block ``b`` (documents ``b * block_docs`` ...)."""
        if not 0 <= b < self.n_blocks:
            raise IndexError(f"block {b} out of range (0..{self.n_blocks - 1})")
        _, _, perm, expected, _ = self._model()
        first = b * self.block_docs
        n = min(self.block_docs, self.n_docs - first)
        rng = np.random.default_rng([self.seed, 0, b])
        mean_log = np.log(self.mean_terms) - self.terms_sigma ** 2 / 2
        target = np.exp(mean_log + self.terms_sigma * rng.standard_normal(n))
        np.clip(target, self.min_terms, self.max_terms, out=target)
        draws = np.searchsorted(expected, target).astype(np.int64)   # E(draws) ~ target distinct terms
        terms, _ = self._draw_terms(rng, int(draws.sum()))
        doc = np.repeat(np.arange(n, dtype=np.int64), draws)
        key = np.sort(doc * self.n_terms + terms)                    # sorted by (doc, term)
        if len(key) > 1:
            key = key[np.concatenate(([True], key[1:] != key[:-1]))]  # dedupe
        doc_of = key // self.n_terms
        term_ids = (key - doc_of * self.n_terms).astype(np.int32)
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(doc_of, minlength=n), out=indptr[1:])
        inv = np.empty(self.n_terms, dtype=np.int32)
        inv[perm] = np.arange(self.n_terms, dtype=np.int32)
        weights = self._weights(rng, inv[term_ids])
        return Batch(first, [doc_name(d) for d in range(first, first + n)], indptr, term_ids, weights)

    def batches(self) -> Iterator[Batch]:
        """All documents, block by block (memory: one block at a time)."""
        for b in range(self.n_blocks):
            yield self.block(b)

    def documents(self) -> Iterator[tuple[str, dict[str, float]]]:
        """``(doc id, {term: weight})`` pairs (weights are the float32 values as Python floats)."""
        names = self.vocabulary()
        for batch in self.batches():
            ip = batch.indptr
            for i, did in enumerate(batch.doc_ids):
                s, e = ip[i], ip[i + 1]
                yield did, {names[t]: float(w) for t, w in zip(batch.term_ids[s:e].tolist(),
                                                                batch.weights[s:e].tolist())}

    def write_jsonl(self, path: str | os.PathLike) -> int:
        """Write the collection as JSONL (gzipped for ``.gz``) ``{"id", "contents", "vector"}`` lines."""
        from lsr.io import write_vectors

        return write_vectors(path, self.documents())

    # ------------------------------------------------------------------ queries
    def queries(self, n: int, seed: int | None = None) -> list[tuple[str, dict[str, float]]]:
        """``n`` queries ``(f"q{i}", {term: weight})`` with real matches in the collection.

        Each query takes about ``query_doc_share`` of its terms from one
        source document (chosen with probability proportional to the
        document's weights) and the rest from the collection's skewed term
        distribution. Source documents come from at most 8 evenly spaced
        generation blocks, so making queries regenerates at most 8 blocks.
        """
        return [(f"q{i}", vec) for i, (vec, _) in enumerate(self._queries(n, seed))]

    def query_sources(self, n: int, seed: int | None = None) -> list[str]:
        """The source document id of each query of :meth:`queries` (same ``n`` and ``seed``)."""
        return [src for _, src in self._queries(n, seed)]

    def _queries(self, n: int, seed: int | None):
        key = ("queries", n, seed)
        if key in self._cache:
            return self._cache[key]
        _, _, perm, _, _ = self._model()
        inv = np.empty(self.n_terms, dtype=np.int32)
        inv[perm] = np.arange(self.n_terms, dtype=np.int32)
        rng = np.random.default_rng([self.seed if seed is None else seed, 1, n])
        blocks = np.unique(np.linspace(0, self.n_blocks - 1, min(8, self.n_blocks)).round().astype(int))
        src_block = blocks[rng.integers(0, len(blocks), n)]
        cache: dict[int, Batch] = {}
        out = []
        for i in range(n):
            b = int(src_block[i])
            if b not in cache:
                cache[b] = self.block(b)
            batch = cache[b]
            j = int(rng.integers(0, len(batch.doc_ids)))
            s, e = batch.indptr[j], batch.indptr[j + 1]
            d_terms, d_w = batch.term_ids[s:e], batch.weights[s:e].astype(np.float64)
            length = int(np.clip(round(np.exp(np.log(self.query_terms) - 0.045 + 0.3 * rng.standard_normal())),
                                 4, 4 * self.query_terms))
            n_from_doc = min(len(d_terms), max(1, int(round(self.query_doc_share * length))))
            picked = rng.choice(len(d_terms), size=n_from_doc, replace=False, p=d_w / d_w.sum())
            q_terms = [int(t) for t in d_terms[picked]]
            seen = set(q_terms)
            while len(q_terms) < length:
                extra, _ = self._draw_terms(rng, 2 * (length - len(q_terms)))
                for t in extra.tolist():
                    if t not in seen and len(q_terms) < length:
                        seen.add(t)
                        q_terms.append(t)
            ranks = inv[np.asarray(q_terms, dtype=np.int32)]
            # document terms weigh more in the query than expansion terms
            shift = np.where(np.arange(len(q_terms)) < n_from_doc, 0.5, 0.0)
            w = self._weights(rng, ranks, 0.0) * np.exp(shift).astype(np.float32)
            w = np.minimum(w, np.float32(self.max_weight))
            vec = {term_name(t): round(float(x), 4) for t, x in zip(q_terms, w)}
            out.append((vec, batch.doc_ids[j]))
        self._cache[key] = out
        return out
