"""``Results`` to and from pandas in PyTerrier's convention, and to ir-measures records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lsr
from lsr.errors import InputError
from lsr.eval.metrics import evaluate


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    rng = np.random.default_rng(7)
    docs = [(f"d{i}", {f"t{j}": float(rng.integers(1, 5)) for j in rng.choice(12, 4, replace=False)})
            for i in range(60)]
    index = lsr.build_index(docs, tmp_path_factory.mktemp("ix") / "index")
    queries = {f"q{i}": {f"t{j}": 1.0 for j in rng.choice(12, 2, replace=False)} for i in range(8)}
    res = lsr.Searcher(index).search_batch(queries, k=15)
    assert len(set(res.scores.tolist())) < len(res)         # integer weights: ties are present
    return res


def test_to_pandas_is_pyterriers_convention(run):
    df = run.to_pandas()
    assert list(df.columns) == ["qid", "docno", "score", "rank"]
    assert df["qid"].tolist() == run.query_ids and df["docno"].tolist() == run.doc_ids
    assert (df["rank"].to_numpy() == run.ranks - 1).all() and df.groupby("qid")["rank"].min().eq(0).all()
    np.testing.assert_array_equal(df["score"].to_numpy(), run.scores)


def test_from_pandas_round_trips_and_reranks_a_shuffled_frame(run):
    back = lsr.Results.from_pandas(run.to_pandas())
    assert back.query_ids == run.query_ids and back.doc_ids == run.doc_ids
    np.testing.assert_array_equal(back.ranks, run.ranks)
    np.testing.assert_array_equal(back.scores, run.scores)
    shuffled = run.to_pandas().sample(frac=1.0, random_state=3)
    again = lsr.Results.from_pandas(shuffled)
    assert again.by_query() == run.by_query()                # ties follow the frame's rank column
    plain = shuffled.drop(columns=["rank"]).sort_values("score", ascending=False, kind="stable")
    ranked = lsr.Results.from_pandas(plain)
    for qid, hits in ranked.by_query().items():
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
        assert {h.doc_id for h in hits} == {h.doc_id for h in run.by_query()[qid]}


def test_from_pandas_errors_are_one_line():
    with pytest.raises(InputError, match="missing: docno"):
        lsr.Results.from_pandas(pd.DataFrame({"qid": ["1"], "score": [1.0]}))
    with pytest.raises(InputError, match="NaN"):
        lsr.Results.from_pandas(pd.DataFrame({"qid": ["1"], "docno": ["d"], "score": [float("nan")]}))
    with pytest.raises(InputError, match="non-numbers"):
        lsr.Results.from_pandas(pd.DataFrame({"qid": ["1"], "docno": ["d"], "score": ["high"]}))


def test_to_ir_measures_feeds_calc_aggregate(run):
    import ir_measures

    qrels = {q: {d: 1 for d in docs[:2]} for q, docs in
             ((q, [h.doc_id for h in hits]) for q, hits in run.by_query().items())}
    qrels["q0"] = {"d59": 1}
    recs = run.to_ir_measures()
    assert len(recs) == len(run) and recs[0] == ir_measures.ScoredDoc(run.query_ids[0], run.doc_ids[0],
                                                                       float(run.scores[0]))
    measures = [ir_measures.parse_measure("R@15"), ir_measures.parse_measure("P@5")]
    theirs = ir_measures.calc_aggregate(measures, [ir_measures.Qrel(q, d, r) for q, ds in qrels.items()
                                                   for d, r in ds.items()], recs)
    ours = evaluate(run, qrels, ["R@15", "P@5"]).aggregate
    # set-based measures at the full depth do not depend on how ties are ordered
    assert theirs[measures[0]] == pytest.approx(ours["R@15"])
    assert set(theirs) == set(measures)
