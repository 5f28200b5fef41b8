"""The query processors: one registry entry each, which :class:`~lsr.index.search.Searcher` dispatches on.

A :class:`Processor` names its single-query and batch kernels (:mod:`lsr.index.kernels`; both take the
bundles of :mod:`lsr.index.kernels.bundles` in one layout), how to build their arguments from a searcher
(the index bundle, the scalar settings, the work buffers), and its fallback: the processor that answers
a query this one does not take (its kernel returns -1, or the index is of a kind it never takes).

Adding a processor: a kernel module with ``name_one`` and ``name_batch`` in that layout, and one line in
:data:`PROCESSORS` (plus its name in :data:`lsr.config.ALGORITHMS`, which is checked against this registry).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from lsr.config import ALGORITHMS

from .kernels.approx import approx_batch, approx_one
from .kernels.blockmax import N_BUCKETS, blockmax_batch, blockmax_one, query_pairs
from .kernels.bundles import AutoWork, FilterBuffers, PlannerSettings, RangeBuffers
from .kernels.exhaustive import exhaustive_batch, exhaustive_one
from .kernels.filtered import HIST_BITS, filtered_batch, filtered_one
from .kernels.maxscore import maxscore_batch, maxscore_one
from .kernels.planner import auto_batch, auto_one, plan_one
from .kernels.wand import wand_batch, wand_one

if TYPE_CHECKING:
    from .search import PreparedQueries, Searcher


@dataclass(frozen=True)
class Processor:
    """One query processor.

    ``one(arrays, q_terms, q_weights, k, params, work, out_docs, out_scores)`` and
    ``batch(arrays, queries, k, params, work, out_docs, out_scores, out_counts)`` are its kernels;
    ``arrays(searcher)`` gives the index bundle, ``params(searcher, k)`` the scalar settings and
    ``work(searcher, prepared, workers)`` the work buffers (``workers`` None: one set, from the
    searcher's per-thread scratch; else one row per worker). A kernel returns -1 for a query it does
    not take; ``fallback`` answers it. ``takes(index)`` False sends every query to ``fallback``
    directly. ``route(searcher, prepared, k)``, where given, may name another processor to run the
    whole call instead (the planner's rules that need no buffers).
    """

    name: str
    one: Callable[..., Any]
    batch: Callable[..., Any]
    arrays: Callable[["Searcher"], tuple]
    params: Callable[["Searcher", int], tuple]
    work: Callable[["Searcher", "PreparedQueries", "int | None"], Any]
    fallback: str | None = None
    takes: Callable[[Any], bool] = lambda index: True
    route: Callable[["Searcher", "PreparedQueries", int], "str | None"] | None = None


# ---------------------------------------------------------------------- work buffers
def n_range_blocks(index) -> int:
    return (index.num_documents + (1 << index.range_shift) - 1) >> index.range_shift


def max_pairs(s: "Searcher", p: "PreparedQueries") -> int:
    """The largest number of (term, block) pairs of any of the queries (their pair buffers' size)."""
    ro = s.index.range_offsets
    if len(p.ids) == 1:
        return max(int(ro[p.terms + 1].sum() - ro[p.terms].sum()), 1)
    n = query_pairs(ro, p.offsets, p.terms)
    return max(int(n.max()) if len(n) else 0, 1)


def _bundles(s: "Searcher") -> dict:
    """The single-query path's work bundles, per thread (kept with the searcher's per-thread scratch)."""
    cache = getattr(s._local, "bundles", None)
    if cache is None:
        cache = s._local.bundles = {}
    return cache


def acc_buffer(s: "Searcher", p: "PreparedQueries", workers: int | None) -> np.ndarray:
    """The exhaustive scorer's accumulator (zeros): one per document, one row per worker."""
    if workers is None:
        return s._buffer("acc", s.index.num_documents, p.score_dtype)
    return np.zeros((workers, s.index.num_documents), p.score_dtype)


def range_buffers(s: "Searcher", p: "PreparedQueries", workers: int | None) -> RangeBuffers:
    """The block-max traversal's buffers (:class:`~lsr.index.kernels.bundles.RangeBuffers`); one set
    (kept, its pair buffers grown when a query needs more) or one row per worker."""
    dtype = np.dtype(p.score_dtype)
    n_blocks = n_range_blocks(s.index)
    R = 1 << s.index.range_shift
    n_pairs = max_pairs(s, p)
    if workers is None:
        cache = _bundles(s)
        rb = cache.get(("range", dtype))
        if rb is None or rb.ent_pos.shape[0] < n_pairs:
            cap = max(n_pairs, 2 * (rb.ent_pos.shape[0] if rb is not None else 0))
            rb = cache[("range", dtype)] = RangeBuffers(
                s._buffer("ub", n_blocks, dtype), s._buffer("local", R, dtype), s._buffer("order", n_blocks, np.int32),
                s._buffer("buckets", N_BUCKETS + 1, np.int64), np.full(n_blocks, -1, np.int32),
                s._buffer("tail", n_blocks, np.int32), np.empty(cap, np.int64), np.empty(cap, np.int32),
                s._buffer("stats", 3, np.int64))
        return rb
    return RangeBuffers(np.zeros((workers, n_blocks), dtype), np.zeros((workers, R), dtype),
                        np.zeros((workers, n_blocks), np.int32), np.zeros((workers, N_BUCKETS + 1), np.int64),
                        np.full((workers, n_blocks), -1, np.int32), np.zeros((workers, n_blocks), np.int32),
                        np.empty((workers, n_pairs), np.int64), np.empty((workers, n_pairs), np.int32),
                        np.zeros((workers, 3), np.int64))


def filter_buffers(s: "Searcher", p: "PreparedQueries", workers: int | None,
                   rb: RangeBuffers | None = None) -> FilterBuffers:
    """The filtered scorer's buffers (:class:`~lsr.index.kernels.bundles.FilterBuffers`); their ``ub``
    and pair buffer are the traversal's (``rb``; the planner runs one or the other)."""
    dtype = np.dtype(p.score_dtype)
    n_blocks = n_range_blocks(s.index)
    if rb is None:
        rb = range_buffers(s, p, workers)
    if workers is None:
        cache = _bundles(s)
        fb = cache.get(("filter", dtype))
        if fb is None or fb.ub is not rb.ub or fb.pairs is not rb.ent_pos:
            fb = cache[("filter", dtype)] = FilterBuffers(
                acc_buffer(s, p, None), s._buffer("bmax", n_blocks, dtype), rb.ub, s._buffer("keep", n_blocks, np.uint8),
                s._buffer("hist", 1 << HIST_BITS, np.int64), s._buffer("blocks", n_blocks, np.int32), rb.ent_pos)
        return fb
    return FilterBuffers(acc_buffer(s, p, workers), np.zeros((workers, n_blocks), dtype), rb.ub,
                         np.zeros((workers, n_blocks), np.uint8), np.zeros((workers, 1 << HIST_BITS), np.int64),
                         np.zeros((workers, n_blocks), np.int32), rb.ent_pos)


def auto_work(s: "Searcher", p: "PreparedQueries", workers: int | None) -> AutoWork:
    """The planner's buffers (:class:`~lsr.index.kernels.bundles.AutoWork`); ``paths``: one per query."""
    rb = range_buffers(s, p, workers)
    fb = filter_buffers(s, p, workers, rb)
    if workers is None:
        cache = _bundles(s)
        aw = cache.get(("auto", fb.acc.dtype))
        if aw is None or aw.range is not rb or aw.filter is not fb:
            aw = cache[("auto", fb.acc.dtype)] = AutoWork(rb, fb, np.zeros(1, np.int8))
        return aw
    return AutoWork(rb, fb, np.zeros(len(p.ids), np.int8))


def no_work(s: "Searcher", p: "PreparedQueries", workers: int | None) -> tuple:
    return ()


# ---------------------------------------------------------------------- the planner's rules
def auto_route(s: "Searcher", p: "PreparedQueries", k: int) -> str | None:
    """Exhaustive scoring for the whole call when the planner's rules that need no buffers send every
    query there: k above the (scaled) ``max_k`` unless ``large_k`` is "filtered"; for a single query,
    its tests 1 to 3 (:func:`~lsr.index.kernels.planner.plan_one`)."""
    st = s.planner_settings()
    if k > st.max_k and not st.filter_large:
        return "exhaustive"
    if len(p.ids) == 1 and not plan_one(s.index_arrays(), p.terms, st)[0]:
        return "exhaustive"
    return None


def _taat(s: "Searcher") -> tuple:
    return s.index_arrays()


def _daat(s: "Searcher") -> tuple:
    return s.doc_arrays()


PROCESSORS: dict[str, Processor] = {proc.name: proc for proc in (
    Processor("auto", auto_one, auto_batch, _taat, lambda s, k: s.planner_settings(), auto_work,
              route=auto_route),
    Processor("exhaustive", exhaustive_one, exhaustive_batch, _taat, lambda s, k: (), acc_buffer),
    Processor("blockmax", blockmax_one, blockmax_batch, _taat,
              lambda s, k: (-1.0, s.config.planner.sweep_after), range_buffers, fallback="exhaustive"),
    Processor("filtered", filtered_one, filtered_batch, _taat, lambda s, k: (s.config.planner.full_ratio,),
              filter_buffers, fallback="exhaustive", takes=lambda index: not index.is_float),
    Processor("maxscore", maxscore_one, maxscore_batch, _daat, lambda s, k: (False,), no_work),
    Processor("bmm", maxscore_one, maxscore_batch, _daat, lambda s, k: (True,), no_work),
    Processor("wand", wand_one, wand_batch, _daat, lambda s, k: (False,), no_work),
    Processor("bmw", wand_one, wand_batch, _daat, lambda s, k: (True,), no_work),
    Processor("approx", approx_one, approx_batch, _taat, lambda s, k: approx_params(s.config.approx), range_buffers,
              fallback="exhaustive"),
)}

if tuple(PROCESSORS) != ALGORITHMS:   # a programming error: the two lists must name the same processors
    raise RuntimeError(f"lsr.config.ALGORITHMS {ALGORITHMS} does not match the registry {tuple(PROCESSORS)}")


def approx_params(ac) -> tuple:
    """The ``approx`` kernels' settings from an :class:`~lsr.config.ApproxConfig`: ``(alpha, query_cut,
    query_mass, max_blocks)`` with 0 for no query cut and -1 for no block budget."""
    return (float(ac.alpha), int(ac.query_cut or 0), float(ac.query_mass),
            -1 if ac.max_blocks is None else int(ac.max_blocks))


def planner_settings(config, n_docs: int) -> PlannerSettings:
    """The planner's settings for a collection of ``n_docs`` documents from a
    :class:`~lsr.config.SearchConfig`: ``max_k`` scaled to the size (:func:`scaled_max_k`),
    ``common_df`` as a document frequency (of the documents, rounded up, at least 1)."""
    pc = config.planner
    return PlannerSettings(scaled_max_k(pc.max_k, n_docs, pc.max_k_docs, pc.max_k_power), pc.locality_ratio,
                           pc.pair_ratio, max(1, math.ceil(pc.common_df * n_docs)), pc.max_common, pc.budget_ratio,
                           pc.sweep_after, pc.full_ratio, pc.large_k == "filtered")


def scaled_max_k(max_k: int, n_docs: int, max_k_docs: int, max_k_power: float) -> int:
    """The largest k at which the planner tries the block-max traversal on a collection of ``n_docs``
    documents: ``max_k`` from ``max_k_docs`` documents on, ``floor(max_k * (n_docs / max_k_docs) **
    max_k_power)`` below (:class:`~lsr.config.PlannerConfig`). Never scaled up above ``max_k_docs``."""
    if n_docs >= max_k_docs:
        return max_k
    return int(math.floor(max_k * (n_docs / max_k_docs) ** max_k_power))
