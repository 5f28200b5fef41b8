"""lsr.eval metrics: hand-computed values, the tie rule, TREC round trip, comparison, errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from lsr import Results
from lsr.errors import InputError
from lsr.eval import EvalWarning, compare, evaluate, parse_metrics

# Graded judgments: q1 has grades 3, 2, 1 and a judged non-relevant doc;
# q3's only relevant doc is never retrieved.
QRELS = {
    "q1": {"d1": 3, "d2": 1, "d3": 0, "d5": 2},
    "q2": {"d7": 1},
    "q3": {"d9": 2},
}
RUN = Results.from_hits([
    ("q1", "d3", 9.0, 1), ("q1", "d2", 8.0, 2), ("q1", "d4", 7.0, 3), ("q1", "d1", 6.0, 4),
    ("q2", "d6", 3.0, 1), ("q2", "d8", 2.0, 2), ("q2", "d7", 1.0, 3),
    ("q3", "d4", 1.0, 1),
])
log2 = math.log2


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # these runs must not warn
        return fn(*a, **kw)


def test_hand_computed_values_with_graded_qrels():
    ev = _quiet(evaluate, RUN, QRELS, ["RR@10", "RR@2", "nDCG@10", "nDCG@3", "R@1000", "R@3",
                                       "R(rel=2)@1000", "AP", "P@2"])
    pq = ev.per_query
    # RR: first doc with rel >= 1. q1: d2 at rank 2; q2: d7 at rank 3; q3: none.
    assert pq["q1"]["RR@10"] == pytest.approx(1 / 2)
    assert pq["q2"]["RR@10"] == pytest.approx(1 / 3)
    assert pq["q3"]["RR@10"] == 0.0
    assert ev.aggregate["RR@10"] == pytest.approx((1 / 2 + 1 / 3 + 0) / 3)
    assert pq["q2"]["RR@2"] == 0.0  # d7 is below the cutoff
    assert ev.aggregate["RR@2"] == pytest.approx((1 / 2) / 3)
    # nDCG (trec_eval): gain = grade, discount log2(rank + 1), ideal order 3, 2, 1.
    idcg_q1 = 3 / log2(2) + 2 / log2(3) + 1 / log2(4)
    ndcg10_q1 = (1 / log2(3) + 3 / log2(5)) / idcg_q1  # d2 (1) at rank 2, d1 (3) at rank 4
    assert pq["q1"]["nDCG@10"] == pytest.approx(ndcg10_q1)
    assert pq["q1"]["nDCG@3"] == pytest.approx((1 / log2(3)) / idcg_q1)
    assert pq["q2"]["nDCG@10"] == pytest.approx(1 / log2(4))
    assert ev.aggregate["nDCG@10"] == pytest.approx((ndcg10_q1 + 0.5 + 0) / 3)
    # Recall: rel >= 1 (q1: d1, d2, d5), and rel >= 2 (q1: d1, d5; q2: none).
    assert pq["q1"]["R@1000"] == pytest.approx(2 / 3)
    assert pq["q1"]["R@3"] == pytest.approx(1 / 3)
    assert ev.aggregate["R@1000"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert ev.aggregate["R@3"] == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert pq["q1"]["R(rel=2)@1000"] == pytest.approx(1 / 2)
    assert pq["q2"]["R(rel=2)@1000"] == 0.0
    assert ev.aggregate["R(rel=2)@1000"] == pytest.approx(1 / 6)
    # AP q1: relevant at ranks 2 and 4 -> (1/2 + 2/4) / 3 relevant; q2: (1/3) / 1.
    assert pq["q1"]["AP"] == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert ev.aggregate["AP"] == pytest.approx(((1 / 2 + 2 / 4) / 3 + 1 / 3) / 3)
    assert ev.aggregate["P@2"] == pytest.approx((1 / 2 + 0 + 0) / 3)
    assert ev.metrics == ["RR@10", "RR@2", "nDCG@10", "nDCG@3", "R@1000", "R@3", "R(rel=2)@1000",
                          "AP", "P@2"]
    assert list(pq["q1"]) == ev.metrics and ev.queries == ["q1", "q2", "q3"]


def test_metric_names_and_default_metrics():
    ms = [str(m) for m in parse_metrics("nDCG@10, R(rel=2)@1000 ndcg_cut_10 recall.1000")]
    assert ms == ["nDCG@10", "R(rel=2)@1000", "R@1000"]  # trec_eval names map; duplicates dropped
    assert [str(m) for m in parse_metrics(["P(rel=2)@10", "AP"])] == ["P(rel=2)@10", "AP"]
    ev = _quiet(evaluate, RUN, QRELS)  # plain qrels: nDCG@10, RR@10, R@1000
    assert ev.metrics == ["nDCG@10", "RR@10", "R@1000"]
    with pytest.raises(InputError, match="unknown metric 'Foo@10'"):
        parse_metrics(["Foo@10"])
    with pytest.raises(InputError, match="unknown metric"):
        evaluate(RUN, QRELS, ["nDCG@x"])


# --------------------------------------------------------------------------- ties
def _tied_run():
    # lsr's engine ranks equal scores by collection order: here "10", "9", "2".
    return Results.from_hits([("q", "10", 5.0, 1), ("q", "9", 5.0, 2), ("q", "2", 5.0, 3)])


def test_ties_are_evaluated_in_rank_order():
    qrels = {"q": {"10": 1}}
    ev = _quiet(evaluate, _tied_run(), qrels, ["RR@10", "nDCG@10", "P@1"])
    assert ev.aggregate == {"RR@10": 1.0, "nDCG@10": 1.0, "P@1": 1.0}
    # the ranks decide, not the position of the hits in the Results
    shuffled = Results.from_hits([("q", "2", 5.0, 3), ("q", "10", 5.0, 1), ("q", "9", 5.0, 2)])
    assert _quiet(evaluate, shuffled, qrels, ["RR@10", "nDCG@10", "P@1"]).aggregate == ev.aggregate
    qrels2 = {"q": {"2": 1}}  # the last of the tied docs
    ev2 = _quiet(evaluate, _tied_run(), qrels2, ["RR@10", "nDCG@10"])
    assert ev2.aggregate["RR@10"] == pytest.approx(1 / 3)
    assert ev2.aggregate["nDCG@10"] == pytest.approx(1 / log2(4))


def test_trec_eval_tie_rule_is_doc_id_descending():
    # trec_eval sorts equal scores by strcmp(doc id) descending: "9", "2", "10".
    qrels = {"q": {"10": 1}}
    ev = _quiet(evaluate, _tied_run(), qrels, ["RR@10", "nDCG@10", "P@1"], ties="trec_eval")
    assert ev.aggregate["RR@10"] == pytest.approx(1 / 3)
    assert ev.aggregate["nDCG@10"] == pytest.approx(1 / log2(4))
    assert ev.aggregate["P@1"] == 0.0
    # and that is what pytrec_eval (through ir-measures) does with the raw scores
    import ir_measures
    raw = ir_measures.calc_aggregate([ir_measures.parse_measure("nDCG@10")], qrels,
                                     {"q": {"10": 5.0, "9": 5.0, "2": 5.0}})
    assert next(iter(raw.values())) == pytest.approx(1 / log2(4))
    with pytest.raises(InputError, match="tie rule"):
        evaluate(_tied_run(), qrels, ["RR@10"], ties="docid")


def test_ties_survive_the_trec_round_trip(tmp_path):
    res = _tied_run()
    path = tmp_path / "tied.trec"
    res.write_trec(path, tag="t")
    assert path.read_text().splitlines() == ["q Q0 10 1 5 t", "q Q0 9 2 5 t", "q Q0 2 3 5 t"]
    back = Results.read_trec(path)
    assert back.doc_ids == ["10", "9", "2"] and back.ranks.tolist() == [1, 2, 3]
    qrels = {"q": {"10": 1}}
    assert _quiet(evaluate, path, qrels, ["RR@10"]).aggregate["RR@10"] == 1.0


def test_trec_round_trip_gives_the_same_evaluation(tmp_path):
    path = tmp_path / "run.trec"
    RUN.write_trec(path)
    back = Results.read_trec(path)
    assert back.query_ids == RUN.query_ids and back.doc_ids == RUN.doc_ids
    assert np.array_equal(back.ranks, RUN.ranks) and np.allclose(back.scores, RUN.scores)
    ms = ["RR@10", "nDCG@10", "R@1000", "R(rel=2)@1000"]
    a = _quiet(evaluate, RUN, QRELS, ms)
    b = _quiet(evaluate, path, QRELS, ms)
    assert a.aggregate == b.aggregate and a.per_query == b.per_query
    assert b.run == str(path)


# --------------------------------------------------------------------------- mismatches
def test_judged_query_without_hits_scores_zero_and_warns():
    run = Results.from_hits([("q1", "d1", 2.0, 1)])
    with pytest.warns(EvalWarning, match=r"2 of 3 judged queries have no hits .* q2, q3"):
        ev = evaluate(run, QRELS, ["RR@10", "nDCG@10"])
    assert ev.missing == ["q2", "q3"] and ev.num_queries == 3
    assert ev.aggregate["RR@10"] == pytest.approx(1 / 3)  # trec_eval -c: divided by 3 queries


def test_run_queries_not_in_qrels_warn_or_fail_when_strict():
    run = Results.concat([RUN, Results.from_hits([("q99", "d1", 1.0, 1)])])
    with pytest.warns(EvalWarning, match="1 of 4 query ids of run run are not in the qrels.*q99"):
        ev = evaluate(run, QRELS, ["RR@10"])
    assert ev.unjudged == ["q99"] and ev.queries == ["q1", "q2", "q3"]
    assert ev.aggregate["RR@10"] == pytest.approx((1 / 2 + 1 / 3) / 3)
    with pytest.raises(InputError, match="not in the qrels.*q99"):
        evaluate(run, QRELS, ["RR@10"], strict=True)


def test_run_with_only_unknown_query_ids_is_an_error():
    run = Results.from_hits([("1", "d1", 1.0, 1), ("2", "d1", 1.0, 1)])
    with pytest.raises(InputError, match=r"none of the 2 query ids of run run \(1, 2\) is in the "
                                         r"qrels \(3 queries: q1, q2, q3\); wrong dataset"):
        evaluate(run, QRELS, ["RR@10"])


def test_empty_run_is_an_error(tmp_path):
    with pytest.raises(InputError, match="run run is empty"):
        evaluate(Results(), QRELS, ["RR@10"])
    empty = tmp_path / "empty.trec"
    empty.write_text("")
    with pytest.raises(InputError, match=f"run {empty} is empty"):
        evaluate(empty, QRELS, ["RR@10"])
    with pytest.raises(InputError, match="does not exist"):
        evaluate(tmp_path / "nope.trec", QRELS, ["RR@10"])


def test_other_input_errors():
    dup = Results.from_hits([("q1", "d1", 2.0, 1), ("q1", "d1", 1.0, 2)])
    with pytest.raises(InputError, match="document 'd1' twice for query 'q1'"):
        evaluate(dup, QRELS, ["RR@10"])
    with pytest.raises(InputError, match="qrels are empty"):
        evaluate(RUN, {}, ["RR@10"])
    with pytest.raises(InputError, match="must be an integer"):
        evaluate(RUN, {"q1": {"d1": 0.5}}, ["RR@10"])
    with pytest.raises(InputError, match="no qrels"):
        evaluate(RUN, None, ["RR@10"])
    foreign = Results.from_hits([("q1", "x1", 1.0, 1)])
    with pytest.warns(EvalWarning, match="no document retrieved by run run is judged"):
        evaluate(foreign, {"q1": {"d1": 1}}, ["RR@10"])


# --------------------------------------------------------------------------- comparison
def test_compare_paired_tests_match_scipy():
    qrels = {f"q{i}": {"rel": 1} for i in range(6)}
    # run A finds "rel" at ranks 1,1,2,1,3,1; baseline at 2,3,2,4,1,5 (per-query RR known).
    ranks_a = [1, 1, 2, 1, 3, 1]
    ranks_b = [2, 3, 2, 4, 1, 5]

    def run_with(ranks):
        hits = []
        for i, r in enumerate(ranks):
            docs = [f"n{j}" for j in range(1, 6)]
            docs.insert(r - 1, "rel")
            hits += [(f"q{i}", d, float(10 - k), k + 1) for k, d in enumerate(docs)]
        return Results.from_hits(hits)

    c = _quiet(compare, run_with(ranks_a), run_with(ranks_b), qrels, ["RR@10"], test="both")
    (row,) = c.rows
    rr_a = [1 / r for r in ranks_a]
    rr_b = [1 / r for r in ranks_b]
    assert row.run == pytest.approx(sum(rr_a) / 6) and row.baseline == pytest.approx(sum(rr_b) / 6)
    assert row.delta == pytest.approx(row.run - row.baseline)
    assert (row.wins, row.losses, row.n) == (4, 1, 6)
    assert row.t_p == pytest.approx(stats.ttest_rel(rr_a, rr_b).pvalue)
    assert row.wilcoxon_p == pytest.approx(stats.wilcoxon(rr_a, rr_b).pvalue)
    only_t = compare(c.run, c.baseline, test="t").rows[0]
    assert only_t.t_p == row.t_p and only_t.wilcoxon_p is None
    same = compare(c.run, c.run).rows[0]
    assert same.delta == 0 and same.t_p == 1.0 and same.wilcoxon_p == 1.0
    with pytest.raises(InputError, match="significance test"):
        compare(c.run, c.baseline, test="sign")
