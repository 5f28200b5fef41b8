"""The planner's cost model: the block-max traversal's work and exhaustive scoring's, in one unit.

The unit is one posting scattered into the accumulator by the exhaustive
scorer. The planner (:mod:`.planner`) gives the block-max traversal
(:mod:`.blockmax`) a budget of ``budget_ratio`` times the exhaustive scorer's
estimated cost of the query; the traversal adds up its own cost as it goes
and gives up (the planner then scores exhaustively) as soon as it has spent
the budget, or when the blocks still above its threshold, at the mean cost
of the blocks scored so far, would take it past the budget.

The constants are round values near a least-squares fit of per-query
kernel times: the exhaustive scorer's time against the other terms'
postings, the dense rows' elements and a constant; the traversal's against
its pairs, its dense rows' block maxima, the blocks it scored, their dense
row slices and their postings (``benchmarks/scripts/planner_cost.py ... fit``;
the fit is recorded in docs/benchmarks.md and docs/history.md). A scored
block costs many postings' worth: its postings and its dense rows' slices
are read from memory that the traversal's previous block did not touch.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# exhaustive scoring
COST_DENSE_ELEMENT = 0.02   # one element of a dense row's vectorised pass
COST_SELECT_DOC = 0.2       # the selection and the reset of the accumulator, per document (fitted at k=10)
# block-max traversal
COST_PAIR = 2.0             # bounds pass: one (term, block) pair
COST_DENSE_BOUND = 0.15     # bounds pass: one dense row's maximum in one block
COST_BLOCK = 80.0           # scoring one block (its pair list, its offers to the heap)
COST_BLOCK_ROW = 5.0        # one dense row's slice of a scored block
COST_POSTING = 1.5          # one posting of a scored block


@njit(cache=True)
def exhaustive_cost(term_offsets, dense_slot, n_docs, q_terms):
    """The exhaustive scorer's estimated cost of a query (units: one scattered posting)."""
    c = COST_SELECT_DOC * n_docs
    for i in range(q_terms.shape[0]):
        t = q_terms[i]
        if dense_slot[t] >= 0:
            c += COST_DENSE_ELEMENT * n_docs
        else:
            c += term_offsets[t + 1] - term_offsets[t]
    return c


@njit(cache=True)
def bounds_cost(range_offsets, dense_slot, n_blocks, q_terms):
    """The block-max traversal's estimated cost of its bounds pass (the same units)."""
    c = 0.0
    for i in range(q_terms.shape[0]):
        t = q_terms[i]
        if dense_slot[t] >= 0:
            c += COST_DENSE_BOUND * n_blocks
        else:
            c += COST_PAIR * (range_offsets[t + 1] - range_offsets[t])
    return c


def exhaustive_cost_ref(term_offsets, dense_slot, n_docs, q_terms):
    """Plain NumPy reference of :func:`exhaustive_cost`."""
    q = np.asarray(q_terms, np.int64)
    dense = dense_slot[q] >= 0
    return (COST_SELECT_DOC * n_docs + COST_DENSE_ELEMENT * n_docs * int(dense.sum())
            + float(np.sum((term_offsets[q + 1] - term_offsets[q])[~dense])))


def bounds_cost_ref(range_offsets, dense_slot, n_blocks, q_terms):
    """Plain NumPy reference of :func:`bounds_cost`."""
    q = np.asarray(q_terms, np.int64)
    dense = dense_slot[q] >= 0
    return (COST_DENSE_BOUND * n_blocks * int(dense.sum())
            + COST_PAIR * float(np.sum((range_offsets[q + 1] - range_offsets[q])[~dense])))
