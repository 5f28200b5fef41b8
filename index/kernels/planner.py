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
   blocks ``df`` postings would touch if the doc ids were random (as in the
   synthetic collection, where the ratio is 1.00): without locality the block
   maxima are about equal and bound nothing;
2. scores exhaustively when ``sum pairs > pair_ratio * sum df``: the upper
   bounds alone would cost a good part of the exhaustive work;
3. scores exhaustively when more than ``max_common`` (default 9) query terms
   are common, in at least ``common_df`` (default 1/16) of the documents:
   such terms add about their full weight to every block's bound, so the
   bounds stay far above the k-th score and the traversal scores many blocks
   (on the 300,000-passage real-encoder collection at k=10, the traversal
   was slower than exhaustive scoring on 28 % of the queries with 7 or 8
   such terms, 41 % with 9 to 11 and 74 % with 12 to 15; sending the queries
   with more than 9 to exhaustive scoring cut the planner's p99 from 2.14 to
   1.41 ms on 1,000 held-out dev/small queries, kernel calls with cold
   caches: docs/benchmarks.md, "The planner's budget");
4. when ``k > max_k`` (default 20), scores exhaustively (a rule of k
   alone, which ``Searcher`` takes before it calls the planner: it then runs
   the exhaustive scorer directly), or runs the
   filtered term-at-a-time scorer (:mod:`.filtered`) if ``filter_large``
   (``SearchConfig.large_k = "filtered"``; off by default: since the
   exhaustive scorer's selection became a histogram bound, the filtered
   scorer no longer measured faster than it at k=1000 on the real-encoder
   collection, docs/benchmarks.md). The k-th score of a large k is low, so
   the block-max traversal, which pays a bound for every (term, block) pair
   before it scores, loses; on the 300,000-passage real-encoder collection
   its median crossed exhaustive scoring's between k=200 and k=400 while
   that scorer was a flat loop, and near k=30 since its dense rows
   (``Searcher.search``, warm: the planner's p50 0.68 against 0.70 ms at
   k=30, 0.99 against 0.76 at k=100; docs/benchmarks.md, "The planner's
   budget"), hence ``max_k`` = 20 (it was 100). ``Searcher`` scales it
   down on collections under ``SearchConfig.max_k_docs`` documents
   (``Searcher.max_k``: the traversal's fixed costs weigh more there; at
   37,500 documents the planner with ``max_k`` = 20 lost to exhaustive
   scoring at every k from 1 to 20, docs/benchmarks.md). The filtered scorer scores the
   query's high-impact terms in full and the others only in the range
   blocks that can still reach the top k (``full_ratio`` of the postings in
   full, default 0.5). Float-impact indexes are scored exhaustively here
   (the filtered scorer adds the terms in another order, which changes
   float sums);
5. otherwise runs the block-max traversal with a budget of ``budget_ratio``
   times the exhaustive scorer's estimated cost of the query (:mod:`.cost`:
   a cost model in units of one scattered posting, fitted to kernel times;
   default 2), and falls back to exhaustive scoring when the traversal gives
   up: before its bounds pass if that alone would pass the budget, once it
   has spent the budget, or when the blocks still above its threshold, at
   the mean cost of its blocks so far, would take it past the budget. (The
   budget was ``budget_ratio * sum df`` scored postings before; that counted
   the postings of the terms with a dense row as if they were scattered, so
   queries with many such terms ran the traversal to several times the
   exhaustive scorer's time: docs/benchmarks.md, "The planner's budget".)

``Searcher.search`` (one query) takes tests 1 to 3 (:func:`plan_one`) and
test 4's k rule before it calls :func:`auto_one`, and calls the exhaustive
scorer directly when they send the query there, so that such a query does
not pay for the planner's buffers and arguments. (A 2 % difference measured
on the 1M synthetic collection, where every query goes there, turned out to
be mostly the searchers' separate accumulators, since shared:
docs/benchmarks.md.)

Every processor is exact, so the choice changes only the time taken, never
the hits.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .blockmax import blockmax_one
from .cost import exhaustive_cost
from .exhaustive import exhaustive_one
from .filtered import filtered_one


@njit(cache=True)
def plan_one(term_offsets, range_offsets, n_blocks, q_terms, locality_ratio, pair_ratio, common_df, max_common):
    """(True when the block-max traversal should be tried for this query, sum df).

    Tests 1 to 3 of the module's docstring. ``common_df`` is the document frequency from which a
    term is common, ``max_common`` the most common terms a query may have for the traversal."""
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
        if df >= common_df:
            n_common += 1
    return (sdf > 0 and n_common <= max_common and spairs <= locality_ratio * expected
            and spairs <= pair_ratio * sdf), sdf


@njit(cache=True)
def auto_one(term_offsets, range_offsets, range_max, code_offsets, codes, low, impacts, shift, n_docs, dense_slot,
             dense, dense_max, term_max, q_terms, q_weights, k, max_k, locality_ratio, pair_ratio, common_df,
             max_common, budget_ratio, sweep_after, full_ratio, filter_large, acc, ub, local, order, bucket_counts,
             head, tail, ent_pos, ent_next, bmax, keep, hist, blocks, out_docs, out_scores):
    """Top-k of one query with the planner; returns (hit count, path): path 1 when the block-max
    traversal answered, 2 for the filtered scorer, 0 for exhaustive scoring."""
    use_bm, _ = plan_one(term_offsets, range_offsets, ub.shape[0], q_terms, locality_ratio, pair_ratio, common_df,
                         max_common)
    if use_bm and k <= max_k:
        budget = budget_ratio * exhaustive_cost(term_offsets, dense_slot, n_docs, q_terms)
        n = blockmax_one(term_offsets, range_offsets, range_max, code_offsets, codes, low, impacts, shift, n_docs,
                         dense_slot, dense, dense_max, q_terms, q_weights, k, budget, sweep_after, ub, local, order,
                         bucket_counts, head, tail, ent_pos, ent_next, out_docs, out_scores, np.empty(3, np.int64))
        if n >= 0:
            return n, 1
    elif use_bm and filter_large:
        n = filtered_one(term_offsets, range_offsets, range_max, code_offsets, codes, low, impacts, shift, n_docs,
                         dense_slot, dense, term_max, q_terms, q_weights, k, full_ratio, acc, bmax, ub, keep, hist,
                         blocks, ent_pos, out_docs, out_scores)
        if n >= 0:
            return n, 2
    return exhaustive_one(term_offsets, code_offsets, codes, low, impacts, shift, dense_slot, dense, q_terms,
                          q_weights, k, acc, out_docs, out_scores), 0


@njit(cache=True, parallel=True)
def auto_batch(term_offsets, range_offsets, range_max, code_offsets, codes, low, impacts, shift, n_docs, dense_slot,
               dense, dense_max, term_max, q_offsets, q_terms, q_weights, k, max_k, locality_ratio, pair_ratio,
               common_df, max_common, budget_ratio, sweep_after, full_ratio, filter_large, accs, ubs, locals_, orders,
               bucket_counts, heads, tails, ent_pos, ent_next, bmaxs, keeps, hists, block_lists, out_docs, out_scores,
               out_counts, out_used):
    """Planner top-k of every query; one parallel loop over the workers' share of the batch."""
    n_queries = q_offsets.shape[0] - 1
    n_workers = ubs.shape[0]
    for wk in prange(n_workers):
        for q in range(wk, n_queries, n_workers):
            a = q_offsets[q]
            b = q_offsets[q + 1]
            n, used = auto_one(term_offsets, range_offsets, range_max, code_offsets, codes, low, impacts, shift, n_docs,
                               dense_slot, dense, dense_max, term_max, q_terms[a:b], q_weights[a:b], k, max_k,
                               locality_ratio, pair_ratio, common_df, max_common, budget_ratio, sweep_after,
                               full_ratio, filter_large, accs[wk], ubs[wk], locals_[wk], orders[wk],
                               bucket_counts[wk], heads[wk], tails[wk], ent_pos[wk], ent_next[wk], bmaxs[wk], keeps[wk],
                               hists[wk], block_lists[wk], out_docs[q], out_scores[q])
            out_counts[q] = n
            out_used[q] = used
