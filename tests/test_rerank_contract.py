"""The reranking contract (lsr.rerank.base), the text sources, Pipeline and the CLI around them.

The rerankers themselves (maxsim, icr, sft) are tested against plain references in their own files;
here a small word-overlap reranker defined below exercises what every reranker inherits.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import lsr
from lsr.cli import main
from lsr.rerank import Pipeline, Reranker, RerankerConfig, open_docs, query_texts, register_reranker
from lsr.rerank.base import RERANKERS, reranker_config
from lsr.rerank.pipeline import top_k

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LSR_SHARED_DIR", ROOT.parent / "shared"))


@dataclass(frozen=True)
class OverlapConfig(RerankerConfig):
    model: str = "word-overlap"
    bonus: float = 0.0


class Overlap(Reranker):
    """Score = number of query words in the document (+ bonus): a reference simple enough to check by hand."""

    name = "overlap"
    config_class = OverlapConfig

    def __init__(self, config):
        super().__init__(config)
        self.stats = {"calls": 0, "docs": 0}

    def score(self, query, docs):
        self.stats["calls"] += 1
        self.stats["docs"] += len(docs)
        words = set(query.lower().split())
        return np.array([sum(w in words for w in d.lower().split()) + self.config.bonus for d in docs], float)


@pytest.fixture(autouse=True)
def _registered():
    register_reranker("overlap", Overlap, overwrite=True)
    yield
    RERANKERS.pop("overlap", None)


DOCS = {"a": "red apple pie", "b": "green apple", "c": "red red car", "d": "blue sky", "e": "apple red car"}


def run_of(rows):
    """Results from (qid, docid, score) rows, ranked per query in the order given."""
    q, d, s, r = [], [], [], []
    rank: dict[str, int] = {}
    for qid, did, sc in rows:
        rank[qid] = rank.get(qid, 0) + 1
        q.append(qid); d.append(did); s.append(sc); r.append(rank[qid])
    return lsr.Results(q, d, np.array(s, float), np.array(r))


def test_top_depth_reranked_the_rest_kept_below_in_first_stage_order():
    run = run_of([("q", "d", 9.0), ("q", "b", 8.0), ("q", "a", 7.0), ("q", "c", 6.5), ("q", "e", 1.0),
                  ("p", "c", 3.0), ("p", "a", 2.0)])
    out = Overlap(OverlapConfig(depth=3)).rerank({"q": "red apple", "p": "car"}, run, DOCS)
    hits = out.by_query()
    # q: d (0 overlap), b (1: apple), a (2: red apple) reranked -> a, b, d; c and e follow in first-stage order
    assert [h.doc_id for h in hits["q"]] == ["a", "b", "d", "c", "e"]
    assert [h.score for h in hits["q"]][:3] == [2.0, 1.0, 0.0]
    # the tail keeps its score gaps (6.5 - 1.0) and lies TAIL_GAP below the lowest reranked score
    assert hits["q"][3].score == pytest.approx(-1.0) and hits["q"][4].score == pytest.approx(-6.5)
    assert [h.doc_id for h in hits["p"]] == ["c", "a"]
    assert [h.rank for h in out] == [1, 2, 3, 4, 5, 1, 2]
    assert out.query_order() == ["q", "p"]
    for qid, hs in hits.items():
        s = [h.score for h in hs]
        assert s == sorted(s, reverse=True)


def test_ties_keep_the_first_stage_order_and_depth_covers_short_lists():
    run = run_of([("q", "c", 5.0), ("q", "a", 4.0), ("q", "e", 3.0), ("q", "d", 2.0)])
    out = Overlap(OverlapConfig(depth=100)).rerank({"q": "car"}, run, DOCS)
    assert out.doc_ids == ["c", "e", "a", "d"]        # c and e tie at 1, a and d at 0: first-stage order
    assert len(out) == 4


def test_batching_does_not_change_the_result():
    rows = [(f"q{i}", d, 10.0 - j) for i in range(7) for j, d in enumerate("abcde")]
    queries = {f"q{i}": ["red", "apple", "car sky", "green blue"][i % 4] for i in range(7)}
    outs = [Overlap(OverlapConfig(depth=4, batch_size=bs)).rerank(queries, run_of(rows), DOCS) for bs in (1, 3, 8)]
    for o in outs[1:]:
        assert o.doc_ids == outs[0].doc_ids and np.array_equal(o.scores, outs[0].scores)


def test_input_errors_name_what_is_wrong():
    r = Overlap(OverlapConfig())
    run = run_of([("q", "a", 1.0), ("q", "zz", 0.5)])
    with pytest.raises(lsr.InputError, match="empty"):
        r.rerank({"q": "x"}, lsr.Results(), DOCS)
    with pytest.raises(lsr.InputError, match="query id 'q' of the run is not among the queries"):
        r.rerank({"other": "x"}, run, DOCS)
    with pytest.raises(lsr.InputError, match="doc id 'zz' is not in"):
        r.rerank({"q": "x"}, run, DOCS)
    split = lsr.Results(["q", "p", "q"], ["a", "b", "c"], np.array([3.0, 2.0, 1.0]), np.array([1, 1, 2]))
    with pytest.raises(lsr.InputError, match="not contiguous"):
        r.rerank({"q": "x", "p": "y"}, split, DOCS)
    with pytest.raises(lsr.InputError, match="depth"):
        r.rerank({"q": "x"}, run, DOCS, depth=0)
    with pytest.raises(lsr.InputError, match="depth"):
        OverlapConfig(depth=0)
    with pytest.raises(lsr.InputError, match="dtype"):
        OverlapConfig(dtype="int8")


def test_config_from_yaml_mapping_and_overrides(tmp_path):
    y = tmp_path / "r.yaml"
    y.write_text("reranker: overlap\ndepth: 7\nbonus: 0.5\n")
    name, cfg = reranker_config(str(y))
    assert name == "overlap" and cfg == OverlapConfig(depth=7, bonus=0.5)
    name, cfg = reranker_config(str(y), depth=3, batch_size=None)
    assert cfg.depth == 3 and cfg.batch_size == 8
    assert reranker_config({"depth": 2}, "overlap")[1].depth == 2
    with pytest.raises(lsr.InputError, match="unknown setting"):
        reranker_config({"reranker": "overlap", "nope": 1})
    with pytest.raises(lsr.InputError, match="unknown reranker 'nosuch'"):
        reranker_config({"reranker": "nosuch"})
    with pytest.raises(lsr.InputError, match="configures the 'overlap' reranker, not 'sft'"):
        reranker_config(str(y), "sft")
    with pytest.raises(lsr.InputError, match="neither a reranker config file nor a preset"):
        reranker_config("no-such-preset")


def test_shipped_presets_name_hub_ids_and_load():
    from lsr.rerank import available_presets

    names = available_presets()
    assert {n.split("-")[0] for n in names} >= {"maxsim", "icr", "sft"}, names
    for n in names:
        kind, cfg = reranker_config(n)
        assert kind in ("maxsim", "icr", "sft")
        assert "/" in cfg.model and not os.path.exists(cfg.model), (n, cfg.model)   # a hub id, not a local path


# ------------------------------------------------------------------ sources
def test_document_sources_files_index_and_mapping(tmp_path):
    beir = tmp_path / "corpus.jsonl.gz"
    with gzip.open(beir, "wt") as f:
        f.write(json.dumps({"_id": "a", "title": "Pies", "text": "red apple pie"}) + "\n")
        f.write(json.dumps({"_id": "b", "title": "", "text": "green apple"}) + "\n")
    tsv = tmp_path / "docs.tsv"
    tsv.write_text("a\tred apple pie\nb\tgreen apple\n")
    assert open_docs(str(beir)).texts(["b", "a"]) == {"a": "Pies red apple pie", "b": "green apple"}
    assert open_docs(str(tsv)).texts(["b"]) == {"b": "green apple"}
    with pytest.raises(lsr.InputError, match=r"doc id 'x' is not in .*docs.tsv \(and 1 more\)"):
        open_docs(str(tsv)).texts(["a", "x", "y"])
    with lsr.IndexBuilder(tmp_path / "ix", store_text=True) as b:
        for did, text in DOCS.items():
            b.add(did, {w: 1.0 for w in text.split()}, text=text)
    for src in (str(tmp_path / "ix"), lsr.Index.open(tmp_path / "ix")):
        assert open_docs(src).texts(["e", "a"]) == {"e": DOCS["e"], "a": DOCS["a"]}
    with pytest.raises(lsr.InputError, match="doc id 'x' is not in the index"):
        open_docs(str(tmp_path / "ix")).texts(["x"])
    lsr.build_index([("a", {"x": 1.0})], tmp_path / "plain")
    with pytest.raises(lsr.InputError, match="stores no document text"):
        open_docs(str(tmp_path / "plain"))
    with pytest.raises(lsr.InputError, match="no such file"):
        open_docs(str(tmp_path / "missing.jsonl"))
    assert open_docs(DOCS).texts(["c"]) == {"c": "red red car"}


def test_query_sources(tmp_path):
    tsv = tmp_path / "q.tsv"
    tsv.write_text("1\tred apple\n2\tcar\n")
    jl = tmp_path / "q.jsonl"
    jl.write_text('{"_id": "1", "text": "red apple"}\n{"_id": "2", "text": "car"}\n')
    want = {"1": "red apple", "2": "car"}
    assert query_texts(str(tsv)) == want == query_texts(str(jl))
    assert query_texts([("1", "red apple"), ("2", "car")]) == want
    assert query_texts(lsr.read_queries(str(tsv), "text")) == want
    with pytest.raises(lsr.InputError, match="term-weight query"):
        query_texts([lsr.Query("1", vector={"a": 1.0})])
    dup = tmp_path / "d.tsv"
    dup.write_text("1\ta\n1\tb\n")
    with pytest.raises(lsr.InputError, match="duplicate query id '1'"):
        query_texts(str(dup))


IRDS_CHECK = r"""
import json, sys
from lsr.rerank import open_docs, query_texts
docs = open_docs("irds:beir/scifact").texts(["4983", "5836"])
q = query_texts("irds:beir/scifact/test")
try:
    open_docs("irds:beir/scifact").texts(["no-such-doc"])
    err = None
except Exception as e:
    err = str(e)
print(json.dumps({"docs": docs, "n_queries": len(q), "q1": q["1"], "err": err}))
"""


def test_ir_datasets_sources(tmp_path):
    home = tmp_path / "home"
    subprocess.run(["bash", str(SHARED / "tools" / "make-irds-home"), str(home)], check=True, capture_output=True)
    r = subprocess.run([sys.executable, "-c", IRDS_CHECK], capture_output=True, text=True,
                       env=dict(os.environ, IR_DATASETS_HOME=str(home)))
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    corpus = {}
    with open(SHARED / "data" / "beir" / "scifact" / "corpus.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            if rec["_id"] in ("4983", "5836"):
                corpus[rec["_id"]] = (rec["title"] + " " + rec["text"]).strip()
    assert got["docs"] == corpus
    assert got["n_queries"] == 300 and got["q1"].startswith("0-dimensional biomaterials")
    assert "doc id 'no-such-doc' is not in irds:beir/scifact" in got["err"]


# ------------------------------------------------------------------ pipeline and CLI
@pytest.fixture(scope="module")
def text_index(tmp_path_factory, splade_tiny, scifact_dir):
    out = tmp_path_factory.mktemp("pipe") / "ix"
    docs = []
    with open(scifact_dir / "corpus.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            docs.append({"_id": rec["_id"], "title": rec["title"], "text": rec["text"]})
            if len(docs) == 120:
                break
    corpus = out.parent / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    lsr.build_index(str(corpus), out, encoder="splade-tiny", model_path=str(splade_tiny), store_text=True)
    return out, corpus


def test_pipeline_is_search_then_rerank_then_top_k(text_index):
    ix, _ = text_index
    searcher = lsr.Searcher(ix, k=5)
    reranker = Overlap(OverlapConfig(depth=20))
    queries = {"a": "cancer cells in mice", "b": "protein folding", "c": "vitamin D deficiency"}
    got = Pipeline(searcher, reranker).search_batch(queries)
    first = searcher.search_batch(list(queries.items()), k=20)
    want = top_k(reranker.rerank(queries, first, ix), 5)
    assert got.query_ids == want.query_ids and got.doc_ids == want.doc_ids
    assert np.array_equal(got.scores, want.scores)
    assert max(got.ranks) == 5
    p2 = searcher >> reranker
    assert isinstance(p2, Pipeline) and p2.depth == 20
    one = p2.search("protein folding", query_id="b")
    assert one.doc_ids == [h.doc_id for h in got if h.query_id == "b"]
    assert set(p2.last_timings) == {"retrieval_s", "rerank_s"}
    with pytest.raises(lsr.InputError, match="text queries"):
        p2.search_batch([("x", {"cancer": 1.0})])


def test_cli_rerank_and_search_with_rerank(text_index, tmp_path, capsys):
    ix, corpus = text_index
    q = tmp_path / "q.tsv"
    q.write_text("a\tcancer cells in mice\nb\tprotein folding\n")
    run = tmp_path / "run.trec"
    assert main(["search", "-i", str(ix), "-q", str(q), "-k", "20", "--query-format", "text", "-o", str(run)]) == 0
    out = tmp_path / "rr.trec"
    assert main(["rerank", "--reranker", "overlap", "--model", "word-overlap", "--run", str(run), "--queries", str(q),
                 "--docs", str(corpus), "--depth", "10", "-o", str(out), "--set", "bonus=1.5"]) == 0
    got = lsr.Results.read_trec(out)
    want = Overlap(OverlapConfig(depth=10, bonus=1.5)).rerank(str(q), lsr.Results.read_trec(run), str(corpus))
    assert got.doc_ids == want.doc_ids and np.allclose(got.scores, want.scores)
    err = capsys.readouterr().err
    assert "lsr rerank: 2 queries, depth 10, overlap" in err and "calls" in err
    # the same from the index's stored text, and both stages in one command
    y = tmp_path / "rr.yaml"
    y.write_text("reranker: overlap\nmodel: word-overlap\ndepth: 10\nbonus: 1.5\n")
    both = tmp_path / "both.trec"
    assert main(["search", "-i", str(ix), "-q", str(q), "-k", "20", "--query-format", "text", "--rerank", str(y),
                 "-o", str(both)]) == 0
    b = lsr.Results.read_trec(both)
    assert b.doc_ids == got.doc_ids


def _cli(args, capsys):
    rc = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


def test_cli_bad_input_one_line_exit_2(text_index, tmp_path, capsys):
    ix, corpus = text_index
    q = tmp_path / "q.tsv"
    q.write_text("a\tcancer\n")
    run = tmp_path / "run.trec"
    run.write_text("a Q0 4983 1 3.0 x\nzz Q0 5836 1 2.0 x\n")
    empty = tmp_path / "empty.trec"
    empty.write_text("")
    badid = tmp_path / "bad.trec"
    badid.write_text("a Q0 no-such-doc 1 3.0 x\n")
    base = ["rerank", "--reranker", "overlap", "--model", "m", "--queries", str(q), "--docs", str(corpus)]
    cases = [
        (base + ["--run", str(run)], "query id 'zz' of the run is not among the queries"),
        (base + ["--run", str(empty)], "the run is empty"),
        (base + ["--run", str(badid)], "doc id 'no-such-doc' is not in"),
        (["rerank", "--config", str(tmp_path / "nope.yaml"), "--run", str(run), "--queries", str(q), "--docs",
          str(corpus)], "cannot read reranker config"),
        (base + ["--run", str(run), "--set", "nosetting=3"], "unknown setting(s) nosetting"),
    ]
    for args, msg in cases:
        rc, err = _cli(args, capsys)
        assert rc == 2 and len(err) == 1 and err[0].startswith("lsr: error: ") and msg in err[0], (args, err)
    y = tmp_path / "u.yaml"
    y.write_text("reranker: colbertish\nmodel: x\n")
    rc, err = _cli(["rerank", "--config", str(y), "--run", str(run), "--queries", str(q), "--docs", str(corpus)],
                   capsys)
    assert rc == 2 and err == ["lsr: error: unknown reranker 'colbertish' (known: icr, maxsim, overlap, sft)"]
