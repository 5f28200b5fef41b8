"""lsr.pyterrier: lsr's retriever, indexer, encoders and rerankers as PyTerrier 1.x transformers.

Every transformer is checked against the lsr call it wraps (Searcher.search_batch, IndexBuilder /
build_index, encode_queries / encode_documents, Reranker.rerank) on real indexes and models, and the
operators (``>>``, ``%``, ``+``, ``*``) against the same computation done by hand on the frames.
The acceptance test (marked slow) runs ``pt.Experiment`` on SciFact test and compares its nDCG@10
with ``lsr search`` + ``lsr eval`` on the same index. No test may start Java.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

import pandas as pd  # noqa: E402
import pyterrier as pt  # noqa: E402

import lsr  # noqa: E402
import lsr.pyterrier as lp  # noqa: E402
from lsr.cli import main  # noqa: E402
from lsr.rerank import Reranker, RerankerConfig  # noqa: E402

# the tiny test indexes do not hold every term of the text queries, and lsr warns of those, as it should;
# PyTerrier 1.1.2's own add_ranks uses a keyword that pandas 3 deprecates
pytestmark = [pytest.mark.filterwarnings("ignore:.*query term.* unknown to the index:UserWarning"),
              pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.drop")]

QUERIES = [("q1", "cancer cells in mice"), ("q2", "protein folding and misfolding"),
           ("q3", "vitamin D deficiency"), ("q4", "antibiotic resistance of bacteria")]


# ------------------------------------------------------------------------------ fixtures
def synthetic_docs(seed: int, n: int = 60) -> list[dict]:
    """Documents with integer term weights over a 12-term vocabulary (many equal scores)."""
    rng = np.random.default_rng(seed)
    vocab = [f"t{i}" for i in range(12)]
    docs = []
    for i in range(n):
        terms = rng.choice(vocab, size=int(rng.integers(1, 6)), replace=False)
        docs.append({"docno": f"d{i:03d}", "toks": {str(t): int(rng.integers(1, 4)) for t in terms},
                     "text": f"document {i} " + " ".join(terms)})
    return docs


TOPICS_TOKS = [("a", {"t1": 2, "t3": 1}), ("b", {"t0": 1, "t5": 1, "t7": 3}), ("c", {"t11": 1}),
               ("d", {"t2": 1, "t4": 1, "t6": 1, "t8": 1})]


def toks_topics() -> pd.DataFrame:
    return pd.DataFrame({"qid": [q for q, _ in TOPICS_TOKS], "query_toks": [v for _, v in TOPICS_TOKS],
                         "query": [" ".join(v) for _, v in TOPICS_TOKS], "extra": [10, 11, 12, 13]})


@pytest.fixture(scope="module")
def toks_indexes(tmp_path_factory):
    """Two integer-impact indexes of the same 60 documents with different weights (the first stores text)."""
    d = tmp_path_factory.mktemp("toks")
    one = lp.LsrIndexer(d / "one", store_text=True).index(iter(synthetic_docs(1)))
    two = lp.LsrIndexer(d / "two").index(iter(synthetic_docs(2)))
    return one, two


@pytest.fixture(scope="module")
def encoder(splade_tiny):
    from lsr.encoders import load_encoder

    return load_encoder("splade-tiny", model_path=str(splade_tiny))


@pytest.fixture(scope="module")
def scifact_small(scifact_dir) -> list[dict]:
    """The first 48 SciFact documents as PyTerrier's BEIR corpus gives them: docno, title, text."""
    docs = []
    with open(scifact_dir / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            docs.append({"docno": rec["_id"], "title": rec["title"], "text": rec["text"]})
            if len(docs) == 48:
                break
    return docs


def joined(doc: dict) -> str:
    return " ".join(p for p in (doc["title"], doc["text"]) if p)


@pytest.fixture(scope="module")
def text_index(tmp_path_factory, encoder, scifact_small):
    """48 SciFact documents (title and text) indexed from text by LsrIndexer with splade-tiny, text stored."""
    out = tmp_path_factory.mktemp("text") / "ix"
    return lp.LsrIndexer(out, encoder, text_field=["title", "text"], store_text=True,
                         chunk_docs=20).index(iter(scifact_small))


def text_topics() -> pd.DataFrame:
    return pd.DataFrame({"qid": [q for q, _ in QUERIES], "query": [t for _, t in QUERIES]})


def same_index(a: lsr.Index, b: lsr.Index) -> None:
    """Equal documents, terms, postings and impacts (term ids may be numbered differently)."""
    assert a.num_documents == b.num_documents and a.num_postings == b.num_postings
    assert a.doc_ids(np.arange(a.num_documents)) == b.doc_ids(np.arange(b.num_documents))
    assert sorted(a.terms) == sorted(b.terms)
    assert a.manifest["impact_dtype"] == b.manifest["impact_dtype"]
    assert a.quantization == b.quantization
    for t in a.terms:
        da, ia = a.postings(t)
        db, ib = b.postings(t)
        assert np.array_equal(da, db) and np.array_equal(ia, ib), t


def results_frame(res: lsr.Results) -> list[tuple]:
    return list(zip(res.query_ids, res.doc_ids, res.scores.astype(float).tolist(), (res.ranks - 1).tolist()))


def frame_rows(df) -> list[tuple]:
    return list(zip(df["qid"].astype(str), df["docno"], df["score"].tolist(), df["rank"].tolist()))


def test_import_lsr_does_not_import_pyterrier():
    code = ("import sys, lsr, lsr.encoders, lsr.rerank; "
            "assert not any(m == 'pyterrier' or m.startswith(('pyterrier.', 'lsr.pyterrier')) for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------ retrieval
def test_retriever_is_search_batch_in_pyterrier_columns(toks_indexes):
    ix, _ = toks_indexes
    topics = toks_topics()
    got = lp.LsrRetriever(ix, k=7)(topics)
    want = lsr.Searcher(ix).search_batch(TOPICS_TOKS, k=7)
    assert frame_rows(got) == results_frame(want)
    assert list(got.columns) == ["qid", "query_toks", "query", "extra", "docno", "score", "rank"]
    assert got["score"].dtype == np.float64 and got["rank"].dtype == np.int64
    # each row carries its query's input columns
    by_qid = dict(zip(topics["qid"], topics["extra"]))
    assert all(by_qid[q] == e for q, e in zip(got["qid"], got["extra"]))
    # equal scores are in collection order, and PyTerrier's own rank rule keeps these ranks
    assert any(got.duplicated(["qid", "score"]))
    for _, g in got.groupby("qid"):
        s, d = g["score"].to_numpy(), g["docno"].tolist()
        assert all(s[i] > s[i + 1] or (s[i] == s[i + 1] and d[i] < d[i + 1]) for i in range(len(s) - 1))
    again = pt.model.add_ranks(got.drop(columns=["rank"]).copy())
    assert again["rank"].tolist() == got["rank"].tolist()
    # a path, a Searcher and an Index give the same frame; so does transform_iter (list of dicts in and out)
    assert frame_rows(lp.LsrRetriever(ix.path, k=7)(topics)) == frame_rows(got)
    assert frame_rows(lp.LsrRetriever(lsr.Searcher(ix, algorithm="exhaustive"), k=7)(topics)) == frame_rows(got)
    recs = lp.LsrRetriever(ix, k=7)(topics.to_dict(orient="records"))
    assert [(r["qid"], r["docno"], r["score"], r["rank"]) for r in recs] == frame_rows(got)
    # an empty frame gives an empty result frame with the result columns
    empty = lp.LsrRetriever(ix)(topics.iloc[:0])
    assert len(empty) == 0 and {"docno", "score", "rank"} <= set(empty.columns)
    assert not pt.java.started()


def test_text_queries_equal_query_toks_from_the_encoder(text_index, encoder):
    topics = text_topics()
    by_text = lp.LsrRetriever(text_index, k=10)(topics)
    toks = encoder.query_encoder()(topics)
    by_toks = lp.LsrRetriever(text_index, k=10)(toks)
    pipe = (encoder.query_encoder() >> lp.LsrRetriever(text_index, k=10))(topics)
    assert len(by_text) == 40
    assert frame_rows(by_text) == frame_rows(by_toks) == frame_rows(pipe)
    want = lsr.Searcher(text_index).search_batch(QUERIES, k=10)
    assert frame_rows(by_text) == results_frame(want)
    assert "query_toks" in pipe.columns and list(pipe["query"]) == list(by_text["query"])


# ------------------------------------------------------------------------------ encoders
def test_encoder_transformers_equal_encode_methods(encoder, scifact_small):
    topics = text_topics().assign(extra=1)
    q = encoder.query_encoder()(topics)
    assert q["query_toks"].tolist() == encoder.encode_queries([t for _, t in QUERIES])
    assert list(q.columns) == ["qid", "query", "extra", "query_toks"]
    docs = pd.DataFrame(scifact_small[:6])
    d = encoder.doc_encoder()(docs)
    assert d["toks"].tolist() == encoder.encode_documents(docs["text"].tolist())
    assert list(d.columns) == ["docno", "title", "text", "toks"]
    both = encoder.doc_encoder(text_field=["title", "text"])(docs)
    assert both["toks"].tolist() == encoder.encode_documents([joined(x) for x in scifact_small[:6]])
    assert encoder.doc_encoder(text_field="body")(docs.rename(columns={"text": "body"}))["toks"].tolist() == \
        d["toks"].tolist()


def test_indexer_over_text_equals_lsr_index_from_text(text_index, encoder, scifact_small, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": d["docno"], "title": d["title"], "text": d["text"]}) + "\n"
                              for d in scifact_small))
    ref = lsr.build_index(str(corpus), tmp_path / "ref", encoder=encoder)   # what `lsr index --encoder` builds
    same_index(text_index, ref)
    assert text_index.terms == ref.terms   # numbered alike, too
    assert text_index.encoder["name"] == "splade-tiny" and text_index.encoder["runtime"]["batch_size"] == 32
    assert text_index.doc_text(scifact_small[5]["docno"]) == joined(scifact_small[5])
    # doc_encoder >> indexer (PyTerrier's indexing pipeline, in batches through transform_iter) gives it too
    piped = (encoder.doc_encoder(text_field=["title", "text"]) >> lp.LsrIndexer(tmp_path / "piped")).index(
        iter(scifact_small))
    same_index(piped, ref)
    assert piped.encoder is None   # toks alone do not say which encoder made them
    told = (encoder.doc_encoder(text_field=["title", "text"]) >> lp.LsrIndexer(tmp_path / "told", encoder)).index(
        iter(scifact_small))
    same_index(told, ref)
    assert told.encoder["name"] == "splade-tiny"
    assert frame_rows(lp.LsrRetriever(told)(text_topics())) == frame_rows(lp.LsrRetriever(text_index)(text_topics()))


def test_indexer_over_toks_equals_build_index(toks_indexes, tmp_path):
    one, _ = toks_indexes
    docs = synthetic_docs(1)
    ref = lsr.build_index([(d["docno"], d["toks"]) for d in docs], tmp_path / "ref")
    same_index(one, ref)
    assert one.encoder is None
    assert one.doc_texts(["d000", "d059"]) == [docs[0]["text"], docs[59]["text"]]
    # a generator is consumed once, streaming; overwrite replaces the index
    again = lp.LsrIndexer(tmp_path / "ref", overwrite=True).index(d for d in synthetic_docs(2))
    same_index(again, lsr.build_index([(d["docno"], d["toks"]) for d in synthetic_docs(2)], tmp_path / "r2"))
    # float weights are quantised as lsr index quantises them
    fl = [{"docno": d["docno"], "toks": {t: w / 3 for t, w in d["toks"].items()}} for d in docs]
    same_index(lp.LsrIndexer(tmp_path / "fl").index(fl), lsr.build_index([(d["docno"], d["toks"]) for d in fl],
                                                                          tmp_path / "fl-ref"))
    assert lp.LsrIndexer(tmp_path / "x").index_inputs() == [["docno", "toks"]]


def test_text_loader_gets_the_stored_text(toks_indexes):
    ix, _ = toks_indexes
    retr = lp.LsrRetriever(ix, k=5)
    res = (retr >> pt.text.get_text(retr))(toks_topics())
    assert res["text"].tolist() == ix.doc_texts(res["docno"].tolist())
    assert res["docno"].tolist() == retr(toks_topics())["docno"].tolist()


# ------------------------------------------------------------------------------ operators
def test_rank_cutoff_is_the_first_ranks_and_fuses_into_k(toks_indexes):
    ix, _ = toks_indexes
    topics = toks_topics()
    full = lp.LsrRetriever(ix, k=20)(topics)
    cut = (lp.LsrRetriever(ix, k=20) % 4)(topics)
    want = full[full["rank"] < 4].reset_index(drop=True)
    assert frame_rows(cut) == frame_rows(want)
    fused = (lp.LsrRetriever(ix, k=20) % 4).compile()
    assert isinstance(fused, lp.LsrRetriever) and fused.k == 4
    assert frame_rows(fused(topics)) == frame_rows(want)
    small = (lp.LsrRetriever(ix, k=3) % 4).compile()   # no fusion: the cutoff is above k
    assert frame_rows(small(topics)) == frame_rows(want[want["rank"] < 3])


def _fused_by_hand(frames_weights) -> dict:
    total: dict = defaultdict(float)
    for frame, w in frames_weights:
        for q, d, s in zip(frame["qid"], frame["docno"], frame["score"]):
            total[(q, d)] += w * s
    return dict(total)


def _check_ranked(df) -> None:
    for _, g in df.groupby("qid"):
        g = g.sort_values("rank")
        assert g["rank"].tolist() == list(range(len(g)))
        assert np.all(np.diff(g["score"].to_numpy()) <= 0)


def test_sum_and_linear_fusion_equal_the_hand_computation(toks_indexes):
    one, two = toks_indexes
    topics = toks_topics()
    r1, r2 = lp.LsrRetriever(one, k=10), lp.LsrRetriever(two, k=10)
    a, b = r1(topics), r2(topics)
    got = (r1 + r2)(topics)
    assert dict(zip(zip(got["qid"], got["docno"]), got["score"])) == _fused_by_hand([(a, 1.0), (b, 1.0)])
    _check_ranked(got)
    lin = (0.25 * r1 + 2 * r2)(topics)
    want = _fused_by_hand([(a, 0.25), (b, 2.0)])
    got_lin = dict(zip(zip(lin["qid"], lin["docno"]), lin["score"]))
    assert got_lin.keys() == want.keys()
    assert all(got_lin[k] == pytest.approx(want[k], rel=1e-12) for k in want)
    _check_ranked(lin)


# ------------------------------------------------------------------------------ reranking
@pytest.fixture(scope="module")
def maxsim(tmp_path_factory):
    """A real MaxSim reranker: a Stanford-layout ColBERT checkpoint from MiniLM with a seeded projection
    (as tests/test_rerank_maxsim.py builds it)."""
    from encoders_helpers import stanford_colbert
    from lsr.rerank.maxsim import MaxSimConfig, MaxSimReranker

    d = stanford_colbert(tmp_path_factory.mktemp("colbert"), dim=32, seed=1)
    return MaxSimReranker(MaxSimConfig(model=str(d), depth=6, batch_size=8, query_length=16, doc_length=48))


def test_reranker_transformer_equals_rerank(text_index, maxsim):
    topics = text_topics()
    retr = lp.LsrRetriever(text_index, k=10)
    first = lsr.Searcher(text_index).search_batch(QUERIES, k=10)
    want = maxsim.rerank(dict(QUERIES), first, text_index, depth=6)
    pipe = retr >> pt.text.get_text(retr) >> maxsim.as_transformer()
    got = pipe(topics)
    assert [r[:2] for r in frame_rows(got)] == [r[:2] for r in results_frame(want)]
    assert np.array_equal(got["score"].to_numpy(), want.scores) and got["rank"].tolist() == (want.ranks - 1).tolist()
    assert "text" in got.columns and list(got["query"]) == [dict(QUERIES)[q] for q in got["qid"]]
    # texts from the index's docstore instead of a column; a shuffled input frame gives the same
    from_store = (retr >> lp.LsrReranker(maxsim, docs=text_index))(topics)
    assert frame_rows(from_store) == frame_rows(got)
    shuffled = retr(topics).pipe(pt.text.get_text(retr)).sample(frac=1.0, random_state=3)
    assert sorted(frame_rows(lp.LsrReranker(maxsim, depth=6)(shuffled))) == sorted(frame_rows(got))
    assert not pt.java.started()


def test_experiment_runs_without_java(text_index, toks_indexes, maxsim):
    from ir_measures import RR, nDCG

    from lsr.eval.metrics import evaluate

    topics = text_topics()
    qrels = pd.DataFrame({"qid": ["q1", "q1", "q2", "q3", "q4"],
                          "docno": [text_index.doc_id(i) for i in (0, 5, 9, 17, 30)], "label": [1, 2, 1, 1, 1]})
    retr = lp.LsrRetriever(text_index, k=20)
    rerank = retr % 8 >> pt.text.get_text(retr) >> lp.LsrReranker(maxsim, depth=4)
    fused = retr + 0.5 * lp.LsrRetriever(text_index, k=5)
    ex = pt.Experiment([retr, rerank, fused], topics, qrels, eval_metrics=[nDCG @ 10, RR], names=["lsr", "rr", "sum"])
    assert list(ex["name"]) == ["lsr", "rr", "sum"]
    judged: dict = defaultdict(dict)
    for q, d, r in qrels.itertuples(index=False):
        judged[q][d] = int(r)
    ev = evaluate(lsr.Searcher(text_index).search_batch(QUERIES, k=20), dict(judged), ["nDCG@10", "RR"])
    assert ex.loc[0, "nDCG@10"] == pytest.approx(ev.aggregate["nDCG@10"], abs=1e-12)
    assert ex.loc[0, "RR"] == pytest.approx(ev.aggregate["RR"], abs=1e-12)
    assert not pt.java.started()


def test_experiment_orders_equal_scores_as_trec_eval_does(toks_indexes):
    """PyTerrier evaluates the score column (ir-measures), so equal scores are ordered by trec_eval's rule,
    not by lsr's rank: pt.Experiment equals `lsr eval --ties trec_eval` on an index with many ties."""
    from ir_measures import RR, P, nDCG

    from lsr.eval.metrics import evaluate

    ix, _ = toks_indexes
    rng = np.random.default_rng(0)
    judged: dict = defaultdict(dict)
    for q, _ in TOPICS_TOKS:
        for d in rng.choice(60, 12, replace=False):
            judged[q][f"d{d:03d}"] = int(rng.integers(1, 3))
    qrels = pd.DataFrame([(q, d, r) for q, docs in judged.items() for d, r in docs.items()],
                         columns=["qid", "docno", "label"])
    ex = pt.Experiment([lp.LsrRetriever(ix, k=30)], toks_topics(), qrels, eval_metrics=[nDCG @ 10, RR, P @ 5])
    run = lsr.Searcher(ix).search_batch(TOPICS_TOKS, k=30)
    trec = evaluate(run, dict(judged), ["nDCG@10", "RR", "P@5"], ties="trec_eval").aggregate
    ours = evaluate(run, dict(judged), ["nDCG@10", "RR", "P@5"], ties="rank").aggregate
    for m in ("nDCG@10", "RR", "P@5"):
        assert ex.loc[0, m] == pytest.approx(trec[m], abs=1e-12)
    assert ours != trec   # the ties here do change the measures


# ------------------------------------------------------------------------------ bad input
class Const(Reranker):
    """Scores every candidate 0 (never reached: the frame is refused first)."""

    name = "const"

    def score(self, query, docs):
        return np.zeros(len(docs))


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert "\n" not in msg and msg
    return msg


def test_bad_input_raises_one_line_lsr_errors(toks_indexes, encoder, tmp_path):
    ix, _ = toks_indexes
    retr = lp.LsrRetriever(ix)
    for frame in (pd.DataFrame({"qid": ["1"]}), pd.DataFrame({"query": ["x"]}),
                  pd.DataFrame({"qid": ["1"], "query": ["x"], "docno": ["d000"]})):
        with pytest.raises(lsr.InputError) as e:
            retr(frame)
        assert isinstance(e.value, pt.validate.InputValidationError)
        assert "LsrRetriever needs a frame with the columns" in _one_line(e.value)
    # PyTerrier's inspection reads the accepted columns from the error, and the output columns from an empty frame
    assert pt.inspect.transformer_inputs(retr) == [["qid", "query_toks"], ["qid", "query"]]
    assert pt.inspect.transformer_outputs(retr, ["qid", "query"]) == ["qid", "query", "docno", "score", "rank"]
    with pytest.raises(pt.validate.InputValidationError):
        pt.inspect.transformer_outputs(retr, ["qid"])
    with pytest.raises(lsr.LsrError) as e:
        lp.LsrRetriever(tmp_path / "no-such-index")
    assert "no-such-index" in _one_line(e.value)
    with pytest.raises(lsr.InputError, match="k must be a positive integer"):
        lp.LsrRetriever(ix, k=0)
    with pytest.raises(lsr.InputError, match="not a {term: weight} dict"):
        retr(pd.DataFrame({"qid": ["1"], "query_toks": ["t1 t2"]}))
    with pytest.raises(lsr.InputError, match="qid '1' is on more than one row"):
        retr(pd.DataFrame({"qid": ["1", "1"], "query_toks": [{"t1": 1}, {"t2": 1}]}))
    with pytest.raises(lsr.InputError, match="records none"):   # text on an index built from toks
        retr(pd.DataFrame({"qid": ["1"], "query": ["some text"]}))
    with pytest.raises(lsr.InputError, match="LsrReranker needs a frame with the columns"):
        lp.LsrReranker(Const(RerankerConfig(model="none")))(retr(toks_topics()))   # no text column
    with pytest.raises(lsr.InputError, match="stores no document text"):
        lp.LsrTextLoader(lp.LsrIndexer(tmp_path / "nt").index([{"docno": "a", "toks": {"x": 1}}]))
    # indexer: no documents, neither toks nor text, bad toks, an existing path, a missing parent
    with pytest.raises(lsr.InputError, match="no documents"):
        lp.LsrIndexer(tmp_path / "e").index([])
    with pytest.raises(lsr.InputError, match="give an encoder to index text"):
        lp.LsrIndexer(tmp_path / "e").index([{"docno": "a", "text": "hello"}])
    with pytest.raises(lsr.InputError, match=r"document 'b' needs 'toks'"):
        lp.LsrIndexer(tmp_path / "e").index([{"docno": "a", "toks": {"x": 1}}, {"docno": "b", "toks": "x"}])
    with pytest.raises(lsr.InputError, match="document 1 has no docno"):
        lp.LsrIndexer(tmp_path / "e").index([{"docno": "a", "toks": {"x": 1}}, {"toks": {"x": 1}}])
    with pytest.raises(lsr.InputError, match="document 'b' has no 'title' field"):
        lp.LsrIndexer(tmp_path / "e", encoder, text_field=["title", "text"]).index(
            [{"docno": "a", "title": "T", "text": "x"}, {"docno": "b", "text": "y"}])
    with pytest.raises(lsr.InputError, match="text_field must be a column name"):
        lp.LsrIndexer(tmp_path / "e", text_field=[])
    with pytest.raises(lsr.InputError, match="already exists"):
        lp.LsrIndexer(ix.path).index([{"docno": "a", "toks": {"x": 1}}])
    with pytest.raises(lsr.InputError, match="does not exist"):
        lp.LsrIndexer(tmp_path / "no" / "ix").index([{"docno": "a", "toks": {"x": 1}}])
    assert not (tmp_path / "e").exists()


# ------------------------------------------------------------------------------ acceptance (SciFact test)
def scifact_test_frames(scifact_dir: Path):
    rel = pd.read_csv(scifact_dir / "qrels" / "test.tsv", sep="\t", dtype=str)
    qrels = pd.DataFrame({"qid": rel["query-id"], "docno": rel["corpus-id"], "label": rel["score"].astype(int)})
    judged = set(qrels["qid"])
    rows = []
    with open(scifact_dir / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec["_id"] in judged:
                rows.append({"qid": rec["_id"], "query": rec["text"]})
    return pd.DataFrame(rows), qrels


@pytest.mark.slow
def test_experiment_on_scifact_equals_lsr_search_and_eval(scifact_splade_index, scifact_dir, tmp_path, capsys):
    from ir_measures import nDCG

    topics, qrels = scifact_test_frames(scifact_dir)
    assert len(topics) == 300
    ex = pt.Experiment([lp.LsrRetriever(scifact_splade_index, k=1000)], topics, qrels,
                       eval_metrics=[nDCG @ 10], names=["lsr"])
    assert not pt.java.started()
    qfile = tmp_path / "test-queries.jsonl"
    qfile.write_text("".join(json.dumps({"id": q, "text": t}) + "\n" for q, t in zip(topics["qid"], topics["query"])))
    run = tmp_path / "run.trec"
    assert main(["search", "-i", str(scifact_splade_index), "-q", str(qfile), "-k", "1000", "-o", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--dataset", f"{scifact_dir}:test", "-m", "nDCG@10", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)["runs"][0]["aggregate"]["nDCG@10"]
    assert ex.loc[0, "nDCG@10"] == pytest.approx(cli, abs=1e-12)
    assert 0.6 < cli < 0.7
    # and the frame is the run file's hits, rank for rank
    frame = lp.LsrRetriever(scifact_splade_index, k=1000)(topics)
    file_rows = [ln.split() for ln in run.read_text().splitlines()]
    assert [(r[0], r[2], int(r[3]) - 1) for r in file_rows] == list(
        zip(frame["qid"], frame["docno"], frame["rank"].tolist()))
    assert [float(r[4]) for r in file_rows] == frame["score"].tolist()
