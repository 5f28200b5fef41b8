"""Training data (lsr.train.data) and hard-negative mining with lsr's own index (lsr.train.mine, lsr mine).

Real parts only: SciFact's training split from ../shared (through ir_datasets with an IR_DATASETS_HOME
filled by make-irds-home, in a subprocess because ir_datasets reads that variable at import, and as a
local BEIR directory), a small splade-tiny index over real SciFact documents, sentence-transformers'
own losses for the label layout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import lsr
from lsr.cli import main
from lsr.errors import InputError
from lsr.train.data import Group, TrainingData, load_teacher_scores, load_training_data, to_hf_dataset
from lsr.train.mine import MineConfig, mine_negative_hits, mine_negatives, parse_window, write_groups

pytestmark = pytest.mark.slow   # real models encode real text

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LSR_SHARED_DIR", ROOT.parent / "shared"))
SCIFACT = SHARED / "data" / "beir" / "scifact"
SPLADE_TINY = SHARED / "models" / "splade-tiny"
N_MINED = 30   # training queries whose positives are in the small index


def scifact_train_qrels() -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for line in (SCIFACT / "qrels" / "train.tsv").read_text().splitlines()[1:]:
        q, d, r = line.split("\t")
        out.setdefault(q, {})[d] = int(r)
    return out


def scifact_queries() -> dict[str, str]:
    out = {}
    with open(SCIFACT / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            out[rec["_id"]] = rec["text"]
    return out


def corpus_texts(ids) -> dict[str, str]:
    want, out = set(ids), {}
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec["_id"] in want:
                out[rec["_id"]] = f"{rec['title']} {rec['text']}".strip()
    return out


def one_error(capsys, argv) -> str:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("lsr: error: "), err
    return err[0]


# ------------------------------------------------------------------ a small real index
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A splade-tiny index over the first 250 SciFact documents plus the positives of N_MINED training
    queries; the queries (TSV) and their qrels (BEIR TSV) as files."""
    d = tmp_path_factory.mktemp("mine")
    qrels_all = scifact_train_qrels()
    qids = list(qrels_all)[:N_MINED]
    qrels = {q: qrels_all[q] for q in qids}
    want = {doc for q in qids for doc in qrels[q]}
    lines = []
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i < 250 or json.loads(line)["_id"] in want:
                lines.append(line)
    corpus = d / "corpus.jsonl"
    corpus.write_text("".join(lines), encoding="utf-8")
    ix = d / "ix"
    lsr.build_index(str(corpus), ix, encoder="splade-tiny", model_path=str(SPLADE_TINY), store_text=True)
    texts = scifact_queries()
    queries = {q: texts[q] for q in qids}
    qfile = d / "queries.tsv"
    qfile.write_text("".join(f"{q}\t{t}\n" for q, t in queries.items()), encoding="utf-8")
    qrels_file = d / "qrels.tsv"
    qrels_file.write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{doc}\t{r}\n" for q, j in qrels.items() for doc, r in j.items()), encoding="utf-8")
    return {"dir": d, "index": ix, "corpus": corpus, "queries": queries, "qrels": qrels, "qfile": qfile,
            "qrels_file": qrels_file, "n_docs": len(lines)}


# ------------------------------------------------------------------ ir_datasets (subprocess)
IRDS_CHECKS = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
from lsr.errors import LsrError
from lsr.train.data import load_training_data, load_queries_qrels
from lsr.cli import main
out = {}
d = load_training_data("beir/scifact/train")
out["name"] = d.name
out["n_queries"] = len(d.queries)
out["groups"] = [[g.qid, g.positive, list(g.negatives)] for g in d.groups]
out["q0"] = d.queries["0"]
ids = [d.groups[0].positive, d.groups[-1].positive]
out["texts"] = d.docs.texts(ids)
out["prefixed"] = len(load_training_data("irds:beir/scifact/train").groups)
q, r = load_queries_qrels("irds:beir/scifact/train")
out["qq"] = [len(q), sum(len(v) for v in r.values())]
errs = {}
for spec in ("beir/scifact", "beir/scifakt/train", "irds:"):
    try:
        load_training_data(spec)
        errs[spec] = None
    except LsrError as e:
        errs[spec] = str(e)
try:
    load_queries_qrels("beir/scifact")
except LsrError as e:
    errs["mine:beir/scifact"] = str(e)
out["errors"] = errs
out["rc_mine"] = main(["mine", "-i", sys.argv[1], "--dataset", "beir/scifact/train", "--window", "2:40",
                       "--negatives", "3", "-o", sys.argv[2], "--no-progress"])
out["rc_mine_bad"] = main(["mine", "-i", sys.argv[1], "--dataset", "beir/scifact", "-o", sys.argv[2] + ".x"])
print(json.dumps(out))
"""


def test_ir_datasets_scifact_train_and_errors(tmp_path, small):
    home = tmp_path / "home"
    subprocess.run(["bash", str(SHARED / "tools" / "make-irds-home"), str(home)], check=True, capture_output=True)
    groups_out = tmp_path / "irds-groups.jsonl"
    r = subprocess.run([sys.executable, "-c", IRDS_CHECKS, str(small["index"]), str(groups_out)],
                       capture_output=True, text=True, env=dict(os.environ, IR_DATASETS_HOME=str(home)))
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout)
    qrels = scifact_train_qrels()
    assert got["name"] == "irds:beir/scifact/train"
    assert got["n_queries"] == 809 and len(qrels) == 809
    want = [[q, d, []] for q, j in qrels.items() for d in j]   # every SciFact train judgment is relevance 1
    assert len(want) == 919
    assert sorted(map(tuple, [g[:2] for g in got["groups"]])) == sorted((q, d) for q, d, _ in want)
    assert all(g[2] == [] for g in got["groups"])
    assert got["q0"] == scifact_queries()["0"]
    assert got["texts"] == corpus_texts(got["texts"])
    assert got["prefixed"] == 919 and got["qq"] == [809, 919]
    err = got["errors"]
    assert err["beir/scifact"].startswith("ir_datasets 'beir/scifact' has no training data: no qrels and no "
                                          "docpairs; its subsets with qrels: ")
    assert "beir/scifact/train" in err["beir/scifact"] and "\n" not in err["beir/scifact"]
    assert "unknown dataset 'beir/scifakt/train'" in err["beir/scifakt/train"]
    assert "needs a dataset id" in err["irds:"]
    assert err["mine:beir/scifact"].startswith("ir_datasets 'beir/scifact' has no qrels to mine negatives for")
    # lsr mine --dataset: the queries whose positives are outside the small index still get negatives
    assert got["rc_mine"] == 0 and got["rc_mine_bad"] == 2
    assert "lsr: error: ir_datasets 'beir/scifact' has no qrels" in r.stderr
    lines = [json.loads(x) for x in groups_out.read_text().splitlines()]
    assert len(lines) == 919
    assert all(len(rec["negative_ids"]) == 3 and 2 <= min(rec["negative_ranks"]) and max(rec["negative_ranks"]) < 40
               and not set(rec["negative_ids"]) & set(qrels[rec["qid"]]) for rec in lines)


def test_local_beir_directory_split(small):
    d = load_training_data(f"{SCIFACT}:train")
    qrels = scifact_train_qrels()
    assert len(d.queries) == 809 and len(d.groups) == 919
    assert {(g.qid, g.positive) for g in d.groups} == {(q, doc) for q, j in qrels.items() for doc in j}
    assert d.docs.texts(["4983"]) == corpus_texts(["4983"])
    assert d.positives("0") == set(qrels["0"])
    assert not d.ids_from_text


# ------------------------------------------------------------------ local files
def test_tsv_triples(tmp_path):
    p = tmp_path / "triples.tsv"
    p.write_text("what is a cat\ta cat is an animal\ta car is a vehicle\n"
                 "what is a cat\ta cat is an animal\tthe sky is blue\n"
                 "\n"
                 "who wrote hamlet\tshakespeare wrote hamlet\ta car is a vehicle\n", encoding="utf-8")
    d = load_training_data(p)
    assert d.ids_from_text
    assert d.queries == {"q0": "what is a cat", "q1": "who wrote hamlet"}
    assert d.groups == (Group("q0", "d0", ("d1", "d2")), Group("q1", "d3", ("d1",)))
    assert d.docs.texts(["d1", "d3"]) == {"d1": "a car is a vehicle", "d3": "shakespeare wrote hamlet"}
    assert d.qrels == {"q0": {"d0": 1}, "q1": {"d3": 1}}
    assert load_training_data(p, negatives_per_query=1).groups[0].negatives == ("d1",)
    assert len(load_training_data(p, limit=1).groups) == 1
    bad = tmp_path / "bad.tsv"
    bad.write_text("q\tpos\tneg\nonly two\tfields\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.tsv:2: expected 'query<TAB>positive<TAB>negative', found 2 fields"):
        load_training_data(bad)
    with pytest.raises(InputError, match=r"train.tsv:1: this looks like a qrels line"):
        load_training_data(SCIFACT / "qrels" / "train.tsv")


def test_jsonl_groups_texts_and_ids(tmp_path, small):
    p = tmp_path / "groups.jsonl"
    rows = [{"qid": "a", "query": "what is a cat", "positive": "a cat is an animal",
             "negatives": ["a car", "the sky"], "scores": [9.0, 2.5, 1.0]},
            {"query": "who wrote hamlet", "positive": "shakespeare", "negatives": ["a car"]}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    d = load_training_data(p)
    assert d.queries == {"a": "what is a cat", "q0": "who wrote hamlet"}
    assert d.groups == (Group("a", "d0", ("d1", "d2")), Group("q0", "d3", ("d1",)))
    assert d.scores == {("a", "d0"): 9.0, ("a", "d1"): 2.5, ("a", "d2"): 1.0}
    # ids, with texts from a corpus file, an index with stored text, or a mapping
    ids = tmp_path / "ids.jsonl"
    ids.write_text(json.dumps({"qid": "0", "query": "q zero", "positive_id": "4983", "negative_ids": ["5836"]})
                   + "\n" + json.dumps({"qid": "1", "positive_id": "5836", "negative_ids": []}) + "\n",
                   encoding="utf-8")
    for corpus in (small["corpus"], small["index"]):
        d = load_training_data(ids, corpus=corpus, queries={"1": "q one"})
        assert d.queries == {"0": "q zero", "1": "q one"} and not d.ids_from_text
        assert d.groups == (Group("0", "4983", ("5836",)), Group("1", "5836", ()))
        assert d.docs.texts(["4983", "5836"]) == corpus_texts(["4983", "5836"])
    with pytest.raises(InputError, match="need the documents' texts"):
        load_training_data(ids)
    with pytest.raises(InputError, match=r"query '1' has no text"):
        load_training_data(ids, corpus=small["corpus"])
    for body, message in [
        ({"query": "x", "positive": "p", "negatives": ["n"], "scores": [1.0]}, r"\"scores\" must be 2 finite"),
        ({"query": "x"}, r"needs \"positive\""),
        ({"query": "x", "positive": "p", "negatives": "n"}, r"'negatives' must be a list of strings"),
    ]:
        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps(body) + "\n", encoding="utf-8")
        with pytest.raises(InputError, match=message):
            load_training_data(bad)
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps(rows[1]) + "\n" + json.dumps({"qid": "1", "positive_id": "5836"}) + "\n")
    with pytest.raises(InputError, match=r"mixed.jsonl:2: groups given by ids after groups given by texts"):
        load_training_data(mixed)
    with pytest.raises(InputError, match="no such file or directory"):
        load_training_data(tmp_path / "nothing.jsonl")


def test_teacher_scores_files(tmp_path):
    tsv = tmp_path / "scores.tsv"
    tsv.write_text("q1 d1 3.5\nq1\td2\t-1\n\nq2 Q0 d1 1 0.25 rerank\n", encoding="utf-8")
    assert load_teacher_scores(tsv) == {("q1", "d1"): 3.5, ("q1", "d2"): -1.0, ("q2", "d1"): 0.25}
    js = tmp_path / "scores.jsonl"
    js.write_text('{"qid": "q1", "docid": "d1", "score": 3.5}\n{"qid": 7, "docid": "d2", "score": 2}\n')
    assert load_teacher_scores(js) == {("q1", "d1"): 3.5, ("7", "d2"): 2.0}
    for text, name, message in [
        ("q1 d1 3.5\nq1 d1 4\n", "dup.tsv", r"dup.tsv:2: query 'q1', doc 'd1' is scored twice"),
        ("q1 d1 nan\n", "nan.tsv", "not finite"),
        ("q1 d1\n", "two.tsv", r"two.tsv:1: expected 'qid docid score'"),
        ("q1 d1 high\n", "word.tsv", "'high' is not a number"),
        ('{"qid": "q", "docid": "d", "score": "1"}\n', "str.jsonl", '"score" must be a number'),
        ("", "empty.tsv", "has no scores"),
    ]:
        f = tmp_path / name
        f.write_text(text, encoding="utf-8")
        with pytest.raises(InputError, match=message):
            load_teacher_scores(f)


# ------------------------------------------------------------------ the sentence-transformers layout
def _scored_data() -> TrainingData:
    docs = {"p1": "P one", "n1": "N one", "n2": "N two", "n3": "N three", "p2": "P two", "m1": "M one"}
    groups = [Group("a", "p1", ("n1", "n2", "n3")), Group("b", "p2", ("m1",))]
    scores = {("a", "p1"): 10.0, ("a", "n1"): 4.0, ("a", "n2"): 7.5, ("a", "n3"): 1.0,
              ("b", "p2"): 3.0, ("b", "m1"): 3.5, ("b", "n2"): 0.5, ("b", "p1"): 2.0}
    return TrainingData("hand", {"a": "query A", "b": "query B"}, docs, groups,
                        {"a": {"p1": 1}, "b": {"p2": 2, "p1": 1, "n3": 0}}, scores)


def test_hf_dataset_columns_and_labels_by_hand():
    data = _scored_data()
    ds = to_hf_dataset(data, negatives=1, with_scores=True, label="margins")
    assert ds.column_names == ["query", "positive", "negative_1", "label"]
    assert ds["query"] == ["query A", "query B"] and ds["positive"] == ["P one", "P two"]
    assert ds["negative_1"] == ["N one", "M one"]
    assert ds["label"] == [[10.0 - 4.0], [3.0 - 3.5]]
    ds = to_hf_dataset(data, negatives=2, with_scores=True, label="scores", short="drop")
    assert ds.num_rows == 1 and ds["label"] == [[10.0, 4.0, 7.5]]
    assert ds.column_names == ["query", "positive", "negative_1", "negative_2", "label"]
    # padded from the documents scored for the query, never a judged positive (p1 is relevant for b)
    with pytest.warns(UserWarning, match="1 of 2 groups had fewer than 2 negatives: padded"):
        ds = to_hf_dataset(data, negatives=2, with_scores=True, seed=3)
    assert ds["negative_2"][1] == "N two" and ds["label"][1] == [3.0, 3.5, 0.5]
    plain = to_hf_dataset(data, negatives=0)
    assert plain.column_names == ["query", "positive"] and plain.num_rows == 2
    with pytest.raises(InputError, match="at least one negative"):
        to_hf_dataset(data, negatives=0, with_scores=True)
    unscored = TrainingData("u", data.queries, data.docs, data.groups, data.qrels, {("a", "p1"): 1.0})
    with pytest.raises(InputError, match=r"no teacher score for query 'a', doc 'n1' \(and 2 more pairs\)"):
        to_hf_dataset(unscored, negatives=1, with_scores=True)


@pytest.fixture(scope="module")
def st_model():
    from sentence_transformers.sparse_encoder import SparseEncoder

    return SparseEncoder(str(SPLADE_TINY), device="cpu")


def test_labels_are_what_sentence_transformers_losses_take(st_model):
    """The label column goes through ST's own SparseMarginMSELoss and SparseDistillKLDivLoss computations
    (on hand-made embeddings) and gives the hand-computed losses."""
    from sentence_transformers.sparse_encoder.losses import SparseDistillKLDivLoss, SparseMarginMSELoss

    data = _scored_data()
    margins = torch.tensor(to_hf_dataset(data, negatives=2, with_scores=True, label="margins", short="drop")["label"])
    scores = torch.tensor(to_hf_dataset(data, negatives=2, with_scores=True, label="scores", short="drop")["label"])
    assert margins.tolist() == [[6.0, 2.5]] and scores.tolist() == [[10.0, 4.0, 7.5]]
    # query . positive = 4, query . negative_1 = 2.5, query . negative_2 = 6
    emb = [torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 0.5]]), torch.tensor([[0.5, 1.0]]),
           torch.tensor([[2.0, 2.0]])]
    mse = SparseMarginMSELoss(st_model)
    want = ((4 - 2.5 - 6.0) ** 2 + (4 - 6 - 2.5) ** 2) / 2
    for labels in (margins, scores):   # MarginMSE takes margins or the scores themselves
        assert mse.compute_loss_from_embeddings(emb, labels).item() == pytest.approx(want)
    kl = SparseDistillKLDivLoss(st_model, temperature=1.0)
    teacher = torch.softmax(torch.tensor([10.0, 4.0, 7.5]), 0)
    student = torch.log_softmax(torch.tensor([4.0, 2.5, 6.0]), 0)
    assert kl.compute_loss_from_embeddings(emb, scores).item() == pytest.approx(
        float((teacher * (teacher.log() - student)).sum()), rel=1e-5)


def test_padding_is_seeded_and_never_a_positive():
    groups = [Group(f"q{i}", f"p{i}") for i in range(40)]
    docs = {f"p{i}": f"text {i}" for i in range(40)}
    qrels = {f"q{i}": {f"p{i}": 1, f"p{(i + 1) % 40}": 1} for i in range(40)}
    data = TrainingData("pad", {f"q{i}": f"query {i}" for i in range(40)}, docs, groups, qrels)
    with pytest.warns(UserWarning, match="40 of 40 groups had fewer than 3 negatives"):
        a = to_hf_dataset(data, negatives=3, seed=5)
    with pytest.warns(UserWarning):
        b = to_hf_dataset(data, negatives=3, seed=5)
    with pytest.warns(UserWarning):
        c = to_hf_dataset(data, negatives=3, seed=6)
    assert a.to_dict() == b.to_dict() and a.to_dict() != c.to_dict()
    for i, row in enumerate(a):
        negs = {row[f"negative_{k}"] for k in (1, 2, 3)}
        assert len(negs) == 3 and not negs & {f"text {i}", f"text {(i + 1) % 40}"}
    with pytest.warns(UserWarning, match="40 of 40 groups had fewer than 3 negatives and were dropped"):
        with pytest.raises(InputError, match="no group has 3 negatives"):
            to_hf_dataset(data, negatives=3, short="drop")


# ------------------------------------------------------------------ mining
def test_mined_negatives_skip_positives_come_from_the_window_and_follow_the_seed(small):
    queries, qrels = small["queries"], small["qrels"]
    window = (3, 25)
    full = lsr.Searcher(small["index"]).search_batch(list(queries.items()), k=window[1] - 1).by_query()
    with warnings.catch_warnings(record=True) as in_batches:
        warnings.simplefilter("always")
        hits = mine_negative_hits(small["index"], queries, qrels, window=window, per_query=5, seed=0, batch_size=7)
    assert list(hits) == list(queries)
    for q, hs in hits.items():
        ranked = {h.doc_id: h for h in full[q]}
        assert len(hs) == 5 and len({h.doc_id for h in hs}) == 5
        assert not {h.doc_id for h in hs} & set(qrels[q])
        for h in hs:
            assert window[0] <= h.rank < window[1] and ranked[h.doc_id].rank == h.rank
            assert ranked[h.doc_id].score == h.score
        assert [h.rank for h in hs] == sorted(h.rank for h in hs)
    # some judged positive does rank inside the window, and is skipped
    assert any(h.doc_id in qrels[q] and window[0] <= h.rank < window[1] for q in queries for h in full[q])
    with warnings.catch_warnings(record=True) as at_once:
        warnings.simplefilter("always")
        again = mine_negatives(small["index"], queries, qrels, window=window, per_query=5, seed=0)
    # the search's warnings (terms unknown to this small index) come once, summed over the batches
    notes = sorted(str(w.message) for w in in_batches)
    assert notes == sorted(str(w.message) for w in at_once)
    assert any("unknown to the index" in n for n in notes) and len(notes) == len(set(notes))
    assert again == {q: [h.doc_id for h in hs] for q, hs in hits.items()}
    other = mine_negatives(lsr.Searcher(small["index"]), queries, qrels, window=window, per_query=5, seed=1)
    assert other != again
    one = list(queries)[4]   # a query's negatives do not depend on the other queries
    assert mine_negatives(small["index"], {one: queries[one]}, qrels, window=window, per_query=5, seed=0) == {
        one: again[one]}
    with pytest.warns(UserWarning, match=f"{N_MINED} of {N_MINED} queries have fewer than 30 unjudged hits"):
        many = mine_negatives(small["index"], queries, qrels, window=(1, 20), per_query=30, seed=0)
    assert all(len(v) == 19 - len(set(qrels[q]) & {h.doc_id for h in full[q][:19]}) for q, v in many.items())


def test_mined_groups_round_trip_into_training_data(small, tmp_path):
    hits = mine_negative_hits(small["index"], small["queries"], small["qrels"], window=(2, 30), per_query=4, seed=0)
    out = tmp_path / "g.jsonl"
    n = write_groups(out, hits, small["queries"], small["qrels"])
    assert n == sum(len(j) for j in small["qrels"].values())
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        write_groups(out, hits, small["queries"], small["qrels"])
    assert write_groups(out, hits, small["queries"], small["qrels"], overwrite=True) == n
    assert [p.name for p in tmp_path.iterdir()] == ["g.jsonl"]   # no temporary file left
    data = load_training_data(out, corpus=small["index"])
    assert {g.qid: list(g.negatives) for g in data.groups} == {q: [h.doc_id for h in hs] for q, hs in hits.items()}
    ds = to_hf_dataset(data, negatives=4)
    assert ds.num_rows == n
    g0 = data.groups[0]
    assert ds[0]["negative_1"] == corpus_texts([g0.negatives[0]])[g0.negatives[0]]
    # with_negatives: what lsr train --negatives-from does with qrels groups
    plain = load_training_data(f"{SCIFACT}:train")
    mined = mine_negatives(small["index"], small["queries"], small["qrels"], window=(2, 30), per_query=4, seed=0)
    filled = plain.with_negatives(mined)
    assert sum(1 for g in filled.groups if g.negatives) == n
    assert all(list(g.negatives) == mined[g.qid] for g in filled.groups if g.qid in mined)


def test_mine_config_and_window():
    assert parse_window("10:100") == (10, 100)
    assert MineConfig(window="5:50").window == (5, 50)
    for bad, message in [("10-100", "expected LO:HI"), ("a:b", "expected LO:HI")]:
        with pytest.raises(InputError, match=message):
            parse_window(bad)
    for window in ((0, 10), (10, 10), (20, 10)):
        with pytest.raises(InputError, match="ranks start at 1 and lo < hi"):
            MineConfig(window=window)
    with pytest.raises(InputError, match="negatives must be an integer >= 1"):
        MineConfig(negatives=0)


def test_lsr_mine_cli(small, tmp_path, capsys):
    out = tmp_path / "groups.jsonl"
    base = ["mine", "-i", small["index"], "--queries", small["qfile"], "--qrels", small["qrels_file"]]
    rc = main([str(a) for a in base + ["--window", "3:25", "--negatives", "5", "--seed", "0", "-o", out,
                                       "--no-progress"]])
    assert rc == 0, capsys.readouterr().err
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    mined = mine_negatives(small["index"], small["queries"], small["qrels"], window=(3, 25), per_query=5, seed=0)
    assert {(r["qid"], r["positive_id"]) for r in lines} == {(q, d) for q, j in small["qrels"].items() for d in j}
    assert all(r["negative_ids"] == mined[r["qid"]] and r["query"] == small["queries"][r["qid"]] for r in lines)
    before = out.read_bytes()
    capsys.readouterr()
    assert "exists; pass --overwrite" in one_error(capsys, base + ["-o", out])
    assert out.read_bytes() == before
    assert main([str(a) for a in base + ["--seed", "1", "-o", out, "--overwrite", "--no-progress"]]) == 0
    assert out.read_bytes() != before
    capsys.readouterr()
    new = tmp_path / "new.jsonl"
    for argv, message in [
        (base + ["--window", "10-100", "-o", new], "window '10-100': expected LO:HI"),
        (base + ["--window", "50:10", "-o", new], "window 50:10: ranks start at 1 and lo < hi"),
        (base + ["--negatives", "0", "-o", new], "negatives must be an integer >= 1"),
        (["mine", "-i", tmp_path / "no-index", "--queries", small["qfile"], "--qrels", small["qrels_file"],
          "-o", new], "no-index"),
        (["mine", "-i", small["index"], "--queries", small["qfile"], "-o", new], "--queries FILE --qrels FILE"),
        (base + ["--dataset", "beir/scifact/train", "-o", new], "not both"),
        (base + ["-o", tmp_path / "no-dir" / "x.jsonl"], "does not exist"),
    ]:
        assert message in one_error(capsys, argv)
        assert not new.exists()
