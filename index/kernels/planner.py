"""The planner (``auto``): exhaustive scoring, block-max traversal or filtered scoring, per query.

Exhaustive term-at-a-time scoring costs about one accumulator update per
posting of the query terms (``sum df``) plus one scan of the accumulator
(less for the terms with a dense row, :mod:`.dense`, which every path adds
in vectorised passes; the tests below still count their postings and pairs);
the block-max traversal (:mod:`.blockmax`) costs one update per (term, range
block) pair of the query terms (``sum pairs``) plus the postings of the
blocks it has to score. The planner reads both sums from the index (O(query
terms)) and

1. scores exhaustively when the query terms' postings show no doc id
   locality: ``sum pairs > locality_ratio * sum E[pairs]``, where
   ``E[pairs] = n_blocks * (1 - exp(-df / n_blocks))`` is the number of range
   blocks ``df`` postings would touch if the doc ids were random: without
   locality the block maxima are about equal and bound nothing;
2. scores exhaustively when ``sum pairs > pair_ratio * sum df``: the upper
   bounds alone would cost a good part of the exhaustive work;
3. scores exhaustively when more than ``max_common`` query terms are common,
   in at least ``common_df`` documents: such terms add about their full
   weight to every block's bound, so the bounds stay far above the k-th
   score and the traversal scores many blocks;
4. when ``k > max_k``, scores exhaustively (a rule of k alone, which
   ``Searcher`` takes before it calls the planner: it then runs the
   exhaustive scorer directly), or runs the filtered term-at-a-time scorer
   (:mod:`.filtered`) if ``filter_large``. The k-th score of a large k is
   low, so the block-max traversal, which pays a bound for every (term,
   block) pair before it scores, loses there. ``Searcher`` scales ``max_k``
   down on small collections (:func:`lsr.index.search.scaled_max_k`).
   Float-impact indexes are scored exhaustively here (the filtered scorer
   adds the terms in another order, which changes float sums);
5. otherwise runs the block-max traversal with a budget of ``budget_ratio``
   times the exhaustive scorer's estimated cost of the query (:mod:`.cost`:
   a cost model in units of one scattered posting), and falls back to
   exhaustive scoring when the traversal gives up: before its bounds pass if
   that alone would pass the budget, once it has spent the budget, or when
   the blocks still above its threshold, at the mean cost of its blocks so
   far, would take it past the budget.

``Searcher.search`` (one query) takes tests 1 to 3 (:func:`plan_one`) and
test 4's k rule before it calls :func:`auto_one`, and calls the exhaustive
scorer directly when they send the query there, so that such a query does
not pay for the planner's buffers.

Every processor is exact, so the choice changes only the time taken, never
the hits.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .blockmax import blockmax_one
from .bundles import AutoWork, FilterBuffers, RangeBuffers
from .cost import exhaustive_cost
from .exhaustive import exhaustive_one
from .filtered import filtered_one


@njit(cache=True)
def plan_one(ix, q_terms, st):
    """(True when the block-max traversal should be tried for this query, sum df).

    Tests 1 to 3 of the module's docstring, with the settings ``st`` (:class:`.bundles.PlannerSettings`):
    ``common_df`` is the document frequency from which a term is common, ``max_common`` the most
    common terms a query may have for the traversal."""
    term_offsets = ix.term_offsets
    range_offsets = ix.range_offsets
    n_blocks = (ix.n_docs + (1 << ix.shift) - 1) >> ix.shift
    sdf = 0
    spairs = 0
    expected = 0.0
    n_common = 0
    for i in range(q_terms.shape[0]):
        t = q_terms[i]
        df = term_offsets[t + 1] - term_offsets[t]
        sdf += df
        spairs += range_offsets[t + 1] - range_offsets[t]
        expected += -n_blocks * np.expm1(-df / n_blocks)
        if df >= st.common_df:
            n_common += 1
    return (sdf > 0 and n_common <= st.max_common and spairs <= st.locality_ratio * expected
            and spairs <= st.pair_ratio * sdf), sdf


@njit(cache=True)
def auto_one(ix, q_terms, q_weights, k, st, work, out_docs, out_scores):
    """Top-k of one query with the planner; returns the hit count and writes the path that answered
    to ``work.paths[0]``: 1 the block-max traversal, 2 the filtered scorer, 0 exhaustive scoring.

    ``ix``: :class:`.bundles.IndexArrays`; ``st``: :class:`.bundles.PlannerSettings`; ``work``:
    :class:`.bundles.AutoWork`."""
    use_bm, _ = plan_one(ix, q_terms, st)
    acc = work.filter.acc
    if use_bm and k <= st.max_k:
        budget = st.budget_ratio * exhaustive_cost(ix.term_offsets, ix.dense_slot, ix.n_docs, q_terms)
        n = blockmax_one(ix, q_terms, q_weights, k, (budget, st.sweep_after), work.range, out_docs, out_scores)
        if n >= 0:
            work.paths[0] = 1
            return n
    elif use_bm and st.filter_large:
        n = filtered_one(ix, q_terms, q_weights, k, (st.full_ratio,), work.filter, out_docs, out_scores)
        if n >= 0:
            work.paths[0] = 2
            return n
    work.paths[0] = 0
    return exhaustive_one(ix, q_terms, q_weights, k, (), acc, out_docs, out_scores)


@njit(cache=True, parallel=True)
def auto_batch(ix, queries, k, st, work, out_docs, out_scores, out_counts):
    """Planner top-k of every query; one parallel loop over the workers' share of the batch (rows of
    the buffers; ``work.paths`` has one entry per query)."""
    q_offsets, q_terms, q_weights = queries
    ubs, locals_, orders, bucket_counts, heads, tails, ent_pos, ent_next, stats = work.range
    accs, bmaxs, f_ubs, keeps, hists, block_lists, pairs = work.filter
    paths = work.paths
    n_queries = q_offsets.shape[0] - 1
    n_workers = ubs.shape[0]
    for wk in prange(n_workers):
        rng = RangeBuffers(ubs[wk], locals_[wk], orders[wk], bucket_counts[wk], heads[wk], tails[wk], ent_pos[wk],
                           ent_next[wk], stats[wk])
        flt = FilterBuffers(accs[wk], bmaxs[wk], f_ubs[wk], keeps[wk], hists[wk], block_lists[wk], pairs[wk])
        for q in range(wk, n_queries, n_workers):
            a = q_offsets[q]
            b = q_offsets[q + 1]
            out_counts[q] = auto_one(ix, q_terms[a:b], q_weights[a:b], k, st, AutoWork(rng, flt, paths[q:q + 1]),
                                     out_docs[q], out_scores[q])


def plan_one_ref(term_offsets, range_offsets, n_docs, shift, q_terms, st):
    """Plain NumPy reference of :func:`plan_one` (the index's offsets, its size and range block shift)."""
    q = np.asarray(q_terms, np.int64)
    n_blocks = (n_docs + (1 << shift) - 1) >> shift
    df = (term_offsets[q + 1] - term_offsets[q]).astype(np.float64)
    pairs = float(np.sum(range_offsets[q + 1] - range_offsets[q]))
    expected = float(np.sum(-n_blocks * np.expm1(-df / n_blocks)))
    sdf = int(df.sum())
    use = (sdf > 0 and int(np.sum(df >= st.common_df)) <= st.max_common and pairs <= st.locality_ratio * expected
           and pairs <= st.pair_ratio * sdf)
    return use, sdf
