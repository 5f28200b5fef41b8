"""lsr.eval datasets from local files: BEIR and flat directories, qrels files, errors.

(The ir_datasets path is tested in test_eval_irds.py, in a subprocess.)
"""

from __future__ import annotations

import gzip
import json
import math
import warnings

import pytest

from lsr import Query, Results
from lsr.errors import InputError
from lsr.eval import Dataset, dataset_family, evaluate, load_dataset, read_qrels


def _beir_dir(root, with_train=True):
    d = root / "mini"
    (d / "qrels").mkdir(parents=True)
    docs = [{"_id": "d1", "title": "Aspirin", "text": "reduces fever."},
            {"_id": "d2", "title": "", "text": "no title here"},
            {"_id": "d3", "text": "missing title key"}]
    (d / "corpus.jsonl").write_text("".join(json.dumps(x) + "\n" for x in docs))
    qs = [{"_id": "1", "text": "what reduces fever", "metadata": {}},
          {"_id": "2", "text": "untitled", "metadata": {}},
          {"_id": "3", "text": "a training query", "metadata": {}}]
    (d / "queries.jsonl").write_text("".join(json.dumps(x) + "\n" for x in qs))
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\td1\t1\n2\td2\t2\n")
    if with_train:
        (d / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n3\td3\t1\n")
    return d


def test_beir_directory(tmp_path):
    d = _beir_dir(tmp_path)
    ds = load_dataset(str(d))
    assert ds.family == "beir" and ds.default_metrics() == ["nDCG@10", "R@100"]
    assert list(ds.docs_iter()) == [("d1", "Aspirin reduces fever."), ("d2", "no title here"),
                                    ("d3", "missing title key")]
    # queries of the split only (as ir_datasets' beir/<name>/test does)
    assert ds.queries() == [Query("1", text="what reduces fever"), Query("2", text="untitled")]
    assert ds.qrels() == {"1": {"d1": 1}, "2": {"d2": 2}}
    train = load_dataset(f"{d}:train")
    assert train.qrels() == {"3": {"d3": 1}} and [q.id for q in train.queries()] == ["3"]
    with pytest.raises(InputError, match="no qrels for split 'dev'"):
        load_dataset(f"{d}:dev")
    (d / "qrels" / "test.tsv").unlink()
    assert load_dataset(str(d)).qrels() == {"3": {"d3": 1}}  # the only split left
    (d / "qrels" / "dev.tsv").write_text("3\td1\t1\n")
    with pytest.raises(InputError, match=r"choose a split .*\(qrels for: dev, train\)"):
        load_dataset(str(d))


def test_relative_paths_are_local(tmp_path, monkeypatch):
    _beir_dir(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert load_dataset("mini").qrels() == {"1": {"d1": 1}, "2": {"d2": 2}}
    assert load_dataset("mini:train").name == "mini:train"
    assert load_dataset("mini/qrels/train.tsv").qrels() == {"3": {"d3": 1}}


def test_flat_directory_and_gzip(tmp_path):
    d = tmp_path / "flat"
    d.mkdir()
    with gzip.open(d / "collection.tsv.gz", "wt") as f:
        f.write("0\tfirst passage\n7\tsecond passage\n")
    (d / "queries.tsv").write_text("q1\twhat passage\n")
    (d / "qrels.txt").write_text("q1 0 7 2\nq1 0 0 0\n")
    ds = load_dataset(str(d))
    assert ds.family == "generic" and ds.default_metrics() == ["nDCG@10", "RR@10", "R@1000"]
    assert list(ds.docs_iter()) == [("0", "first passage"), ("7", "second passage")]
    assert ds.queries() == [Query("q1", text="what passage")]
    assert ds.qrels() == {"q1": {"7": 2, "0": 0}}


def test_from_files_and_tsv_with_title(tmp_path):
    docs = tmp_path / "docs.tsv"
    docs.write_text("a\tThe title\tthe body\nb\tonly body\n")
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": "x", "text": "hello"}\n')
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("x\ta\t1\n")
    ds = Dataset.from_files(docs=docs, queries=queries, qrels=qrels, name="mine", family="beir")
    assert ds.name == "mine" and ds.default_metrics() == ["nDCG@10", "R@100"]
    assert list(ds.docs_iter()) == [("a", "The title the body"), ("b", "only body")]
    assert ds.queries()[0].text == "hello" and ds.qrels() == {"x": {"a": 1}}
    only_q = Dataset.from_files(queries=queries)
    with pytest.raises(InputError, match="has no relevance judgments"):
        only_q.qrels()
    with pytest.raises(InputError, match="has no documents"):
        list(only_q.docs_iter())
    with pytest.raises(InputError, match="qrels file .* does not exist"):
        Dataset.from_files(qrels=tmp_path / "missing.txt")


def test_read_qrels_formats_and_errors(tmp_path):
    p = tmp_path / "q.txt"
    p.write_text("1 0 a 1\n1 Q0 b 0\n2 0 a 3\n")
    assert read_qrels(p) == {"1": {"a": 1, "b": 0}, "2": {"a": 3}}
    p.write_text("query-id\tcorpus-id\tscore\n1\ta\t1\n")
    assert read_qrels(p) == {"1": {"a": 1}}
    p.write_text("1 0 a high\n")
    with pytest.raises(InputError, match=r"q.txt:1: relevance 'high' is not an integer"):
        read_qrels(p)
    p.write_text("1 0 a 1\n1 0 a 2\n")
    with pytest.raises(InputError, match="judged twice"):
        read_qrels(p)
    p.write_text("1 a\n")
    with pytest.raises(InputError, match="q.txt:1: a qrels line has 4 fields"):
        read_qrels(p)
    p.write_text("\n")
    with pytest.raises(InputError, match="has no judgments"):
        read_qrels(p)


def test_missing_paths_and_empty_spec(tmp_path):
    with pytest.raises(InputError, match="no such file or directory"):
        load_dataset(str(tmp_path / "nothing-here"))
    with pytest.raises(InputError, match="no such file or directory"):
        load_dataset("./no/such/dir")
    with pytest.raises(InputError, match="no dataset given"):
        load_dataset("")
    empty = tmp_path / "emptydir"
    empty.mkdir()
    with pytest.raises(InputError, match="no corpus, queries or qrels files"):
        load_dataset(str(empty))


def test_evaluate_against_a_dataset_uses_its_defaults(tmp_path):
    d = _beir_dir(tmp_path)
    run = Results.from_hits([("1", "d1", 3.0, 1), ("2", "d3", 2.0, 1), ("2", "d2", 1.0, 2)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev = evaluate(run, str(d))
    assert ev.dataset == str(d) and ev.metrics == ["nDCG@10", "R@100"]
    # q1: perfect; q2: the grade-2 doc at rank 2 -> 2/log2(3) / 2
    assert ev.per_query["2"]["nDCG@10"] == pytest.approx(1 / math.log2(3))
    assert ev.aggregate["nDCG@10"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert ev.aggregate["R@100"] == 1.0


def test_dataset_families():
    assert dataset_family("msmarco-passage/dev/small") == "msmarco-dev"
    assert dataset_family("irds:msmarco-passage/trec-dl-2019/judged") == "trec-dl"
    assert dataset_family("msmarco-passage/trec-dl-2020/judged") == "trec-dl"
    assert dataset_family("beir/scifact/test") == "beir"
    assert dataset_family("antique/test") == "generic"
