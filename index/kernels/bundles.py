"""The typed argument bundles the query kernels take.

Every query processor has one kernel for a single query and one for a batch, with the same layout::

    name_one(ix, q_terms, q_weights, k, params, work, out_docs, out_scores) -> hit count (-1: not taken)
    name_batch(ix, queries, k, params, work, out_docs, out_scores, out_counts)

``ix`` is :class:`IndexArrays` (term-at-a-time processors) or :class:`DocArrays` (document-at-a-time
ones); ``queries`` a :class:`QueryBatch`; ``params`` a tuple of the processor's scalar settings;
``work`` its work buffers (one set for a single query; for a batch, one row per worker in every
array). Bundles are named tuples of flat, C-contiguous arrays and scalars, which Numba takes as
they are; a parallel kernel reads a nested bundle's fields into locals before its ``prange`` loop
(Numba passes no nested tuple into a parallel loop).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class IndexArrays(NamedTuple):
    """The pair-coded postings (:mod:`.postings`), their maxima and the dense rows (:mod:`.dense`)."""

    term_offsets: np.ndarray   # int64[n_terms + 1]: term t's postings are p in [term_offsets[t], term_offsets[t + 1])
    range_offsets: np.ndarray  # int64[n_terms + 1]: term t's (term, block) pairs
    range_max: np.ndarray      # impact dtype, one per pair: the term's largest impact in the block
    code_offsets: np.ndarray   # int64[n_terms + 1]: term t's pair codes in ``codes``
    codes: np.ndarray          # uint8: the pairs' varints
    low: np.ndarray            # uint8: the postings' low doc id bits
    impacts: np.ndarray        # impact dtype, one per posting
    shift: int                 # range blocks hold 1 << shift documents
    n_docs: int
    term_max: np.ndarray       # impact dtype, one per term: its largest impact
    dense_slot: np.ndarray     # int32[n_terms]: a term's dense row, or -1
    dense: np.ndarray          # (n_dense, n_docs) impact dtype: the dense rows
    dense_max: np.ndarray      # (n_dense, n_blocks) impact dtype: each dense row's maximum per range block


class DocArrays(NamedTuple):
    """What the document-at-a-time processors read: decoded doc ids and posting-block maxima."""

    term_offsets: np.ndarray
    docs: np.ndarray             # int32, one per posting
    impacts: np.ndarray
    term_max: np.ndarray
    block_offsets: np.ndarray    # int64[n_terms + 1]: term t's posting blocks
    block_max: np.ndarray        # impact dtype, one per posting block
    block_last_doc: np.ndarray   # int32, one per posting block
    block_size: int              # postings per block


class QueryBatch(NamedTuple):
    """Queries as flat arrays: query q has terms ``terms[offsets[q]:offsets[q + 1]]``."""

    offsets: np.ndarray   # int64[n_queries + 1]
    terms: np.ndarray     # int32
    weights: np.ndarray   # score dtype


class RangeBuffers(NamedTuple):
    """Work buffers of the block-max traversal (:mod:`.blockmax`)."""

    ub: np.ndarray             # score dtype, one per range block, all zeros
    local: np.ndarray          # score dtype, 1 << shift, all zeros
    order: np.ndarray          # int32, one per range block
    bucket_counts: np.ndarray  # int64[N_BUCKETS + 1]
    head: np.ndarray           # int32, one per range block, all -1
    tail: np.ndarray           # int32, one per range block
    ent_pos: np.ndarray        # int64, at least the query's pair count
    ent_next: np.ndarray       # int32, as long as ent_pos
    stats: np.ndarray          # int64[3], written: blocks scored, their postings, pairs read


class FilterBuffers(NamedTuple):
    """Work buffers of the filtered scorer (:mod:`.filtered`)."""

    acc: np.ndarray      # score dtype, one per document, all zeros
    bmax: np.ndarray     # score dtype, one per range block, all zeros
    ub: np.ndarray       # score dtype, one per range block, all zeros
    keep: np.ndarray     # uint8, one per range block
    hist: np.ndarray     # int64[2**HIST_BITS], all zeros
    blocks: np.ndarray   # int32, one per range block
    pairs: np.ndarray    # int64, at least the query's pair count


class AutoWork(NamedTuple):
    """Work buffers of the planner (:mod:`.planner`): the traversal's and the filtered scorer's
    buffers (they may share ``ub`` and ``ent_pos``/``pairs``; exhaustive scoring uses ``filter.acc``),
    and ``paths`` (int8, one per query, written: 0 exhaustive scoring, 1 the block-max traversal, 2 the
    filtered scorer)."""

    range: RangeBuffers
    filter: FilterBuffers
    paths: np.ndarray


class PlannerSettings(NamedTuple):
    """The planner's settings as its kernels take them (:class:`~lsr.config.PlannerConfig`, resolved
    for one index by :meth:`lsr.index.Searcher.planner_settings`)."""

    max_k: int              # the largest k at which the traversal is tried, scaled to the collection
    locality_ratio: float
    pair_ratio: float
    common_df: int          # a document frequency: from it on a term is common (at least 1)
    max_common: int
    budget_ratio: float
    sweep_after: int
    full_ratio: float
    filter_large: bool      # above max_k: the filtered scorer (True) or exhaustive scoring

