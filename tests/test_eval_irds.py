"""The real ir_datasets path, offline, through an IR_DATASETS_HOME filled by make-irds-home.

ir_datasets fixes its cache paths from IR_DATASETS_HOME when it is first
imported, so everything that touches it runs in a subprocess with that
variable set (robust whatever else this pytest process has imported). One
subprocess does the library checks and reports JSON; the CLI gets its own.
Nothing of ir_datasets is mocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LSR_SHARED_DIR", ROOT.parent / "shared"))
MAKE_HOME = SHARED / "tools" / "make-irds-home"
MS = SHARED / "data" / "msmarco"
SCIFACT = SHARED / "data" / "beir" / "scifact"


def _trec_qrels(path: Path) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for line in path.read_text().splitlines():
        q, _, d, r = line.split()
        out.setdefault(q, {})[d] = int(r)
    return out


def _beir_qrels(path: Path) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for line in path.read_text().splitlines()[1:]:
        q, d, r = line.split("\t")
        out.setdefault(q, {})[d] = int(r)
    return out


def _n_lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


@pytest.fixture(scope="module")
def irds_env(tmp_path_factory):
    assert MAKE_HOME.is_file(), f"shared data not found at {SHARED} (set LSR_SHARED_DIR)"
    home = tmp_path_factory.mktemp("irds-home")
    subprocess.run(["bash", str(MAKE_HOME), str(home), "--with-dl19-passages"], check=True,
                   capture_output=True, text=True)
    env = dict(os.environ, IR_DATASETS_HOME=str(home), PYTHONDONTWRITEBYTECODE="1")
    return env, tmp_path_factory.mktemp("irds-work")


CHECKS = r"""
import json, sys, warnings
from lsr import Results
from lsr.eval import load_dataset, evaluate
from lsr.errors import LsrError
out = {}
def qrels_rows(ds): return sum(len(v) for v in ds.qrels().values())

ds = load_dataset("beir/scifact/test")
docs = list(ds.docs_iter())
out["scifact"] = {"name": ds.name, "family": ds.family, "metrics": ds.default_metrics(),
                  "n_queries": len(ds.queries()), "queries": [[q.id, q.text] for q in ds.queries()],
                  "qrels": ds.qrels(), "n_docs": len(docs), "first_doc": list(docs[0])}
plain = load_dataset("beir/scifact")
out["scifact_plain"] = [plain.name, len(plain.queries()), qrels_rows(plain)]
out["irds_prefix"] = load_dataset("irds:beir/scifact/test").name

dl = load_dataset("msmarco-passage/trec-dl-2019/judged")
out["dl19"] = {"family": dl.family, "metrics": dl.default_metrics(), "qrels": dl.qrels(),
               "queries": [[q.id, q.text] for q in dl.queries()],
               "n_docs": sum(1 for _ in dl.docs_iter())}
for name in ("msmarco-passage/dev/small", "msmarco-passage/trec-dl-2020/judged"):
    d = load_dataset(name)
    out[name] = [len(d.queries()), qrels_rows(d), d.default_metrics()]

# a perfect run for DL19 (judged docs by grade, then doc id) plus one unjudged query
hits = []
for qid, judged in dl.qrels().items():
    ranked = sorted(judged, key=lambda d: (-judged[d], d))
    hits += [(qid, d, float(len(ranked) - i), i + 1) for i, d in enumerate(ranked)]
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    ev = evaluate(Results.from_hits(hits + [("no-such-query", "0", 1.0, 1)]), "msmarco-passage/trec-dl-2019/judged")
out["dl19_eval"] = {"aggregate": ev.aggregate, "n": ev.num_queries, "warnings": [str(x.message) for x in w]}

errors = {}
for spec in ("beir/scifactx", "msmarco-passage", "irds:not/a/dataset"):
    try:
        d = load_dataset(spec)
        evaluate(Results.from_hits([("1", "x", 1.0, 1)]), d, ["RR@10"])
        errors[spec] = None
    except LsrError as e:
        errors[spec] = str(e)
try:  # a scifact run against MS MARCO dev qrels: no common query id
    evaluate(Results.from_hits([("1", "31715818", 1.0, 1)]), "msmarco-passage/dev/small")
    errors["mismatch"] = None
except LsrError as e:
    errors["mismatch"] = str(e)
out["errors"] = errors
json.dump(out, sys.stdout)
"""


@pytest.fixture(scope="module")
def report(irds_env):
    env, work = irds_env
    p = subprocess.run([sys.executable, "-c", CHECKS], env=env, cwd=work, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)


def test_beir_scifact_test_matches_the_files(report):
    r = report["scifact"]
    assert r["name"] == "beir/scifact/test" and r["family"] == "beir"
    assert r["metrics"] == ["nDCG@10", "R@100"]
    qrels = _beir_qrels(SCIFACT / "qrels" / "test.tsv")
    assert r["qrels"] == qrels and sum(len(v) for v in qrels.values()) == 339
    assert r["n_queries"] == 300 == len(qrels)
    queries = {}
    for line in (SCIFACT / "queries.jsonl").read_text().splitlines():
        rec = json.loads(line)
        queries[rec["_id"]] = rec["text"]
    assert all(queries[qid] == text for qid, text in r["queries"])
    assert {qid for qid, _ in r["queries"]} == set(qrels)
    first = json.loads((SCIFACT / "corpus.jsonl").read_text().split("\n", 1)[0])
    assert r["n_docs"] == 5183 == _n_lines(SCIFACT / "corpus.jsonl")
    assert r["first_doc"] == [first["_id"], first["title"] + " " + first["text"]]
    # beir/<name> without a split means its test split; irds: prefix accepted
    assert report["scifact_plain"] == ["beir/scifact/test", 300, 339]
    assert report["irds_prefix"] == "beir/scifact/test"


def test_trec_dl_2019_judged_matches_the_files(report):
    r = report["dl19"]
    assert r["family"] == "trec-dl" and r["metrics"] == ["nDCG@10", "R(rel=2)@1000"]
    qrels = _trec_qrels(MS / "topics-qrels" / "qrels" / "qrels.dl19-passage.txt")
    assert r["qrels"] == qrels and sum(len(v) for v in qrels.values()) == 9260
    topics = dict(line.split("\t", 1) for line in
                  (MS / "topics-qrels" / "topics" / "topics.dl19-passage.txt").read_text().splitlines())
    assert len(r["queries"]) == 43 == len(topics) == len(qrels)
    assert dict(r["queries"]) == topics
    assert r["n_docs"] == 4103 == _n_lines(MS / "dl19-judged-passages" / "collection.tsv")


def test_other_msmarco_sets_match_the_files(report):
    dev = MS / "topics-qrels"
    assert report["msmarco-passage/dev/small"] == [
        _n_lines(dev / "topics" / "topics.msmarco-passage.dev-subset.txt"),
        _n_lines(dev / "qrels" / "qrels.msmarco-passage.dev-subset.txt"), ["RR@10", "R@1000"]]
    assert report["msmarco-passage/dev/small"][:2] == [6980, 7437]
    dl20 = _trec_qrels(dev / "qrels" / "qrels.dl20-passage.txt")
    assert report["msmarco-passage/trec-dl-2020/judged"] == [
        len(dl20), 11386, ["nDCG@10", "R(rel=2)@1000"]]
    assert len(dl20) == 54


def test_perfect_run_on_dl19(report):
    r = report["dl19_eval"]
    assert r["n"] == 43
    assert r["aggregate"] == {"nDCG@10": pytest.approx(1.0), "R(rel=2)@1000": pytest.approx(1.0)}
    assert any("1 of 44 query ids" in w and "no-such-query" in w for w in r["warnings"])


def test_clear_errors_for_bad_dataset_ids(report):
    e = report["errors"]
    assert e["beir/scifactx"].startswith("unknown dataset 'beir/scifactx': not an ir_datasets id "
                                         "(did you mean beir/scifact")
    assert "no such file or directory" in e["beir/scifactx"]
    assert e["msmarco-passage"].startswith("dataset msmarco-passage has no relevance judgments")
    assert "msmarco-passage/dev/small" in e["msmarco-passage"]
    assert e["irds:not/a/dataset"].startswith("unknown dataset 'not/a/dataset'")
    assert e["mismatch"].startswith("none of the 1 query ids of run run (1) is in the qrels of "
                                    "msmarco-passage/dev/small (6980 queries")


def _lsr(env, work, *args, stdin=None):
    return subprocess.run([sys.executable, "-m", "lsr", "eval", *args], env=env, cwd=work,
                          capture_output=True, text=True, timeout=300, input=stdin)


def test_cli_eval_on_an_ir_datasets_id(irds_env):
    env, work = irds_env
    qrels = _trec_qrels(MS / "topics-qrels" / "qrels" / "qrels.dl19-passage.txt")
    qid, judged = next(iter(qrels.items()))
    best = max(judged, key=lambda d: (judged[d], d))
    run = work / "dl19.trec"
    run.write_text(f"{qid} Q0 {best} 1 2.5 x\n{qid} Q0 nonjudged 2 1.5 x\n")
    p = _lsr(env, work, str(run), "--dataset", "msmarco-passage/trec-dl-2019/judged",
             "--metrics", "nDCG@10,RR(rel=2)@10", "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    (ev,) = doc["runs"]
    assert doc["dataset"] == "msmarco-passage/trec-dl-2019/judged" and ev["num_queries"] == 43
    # one query of 43 has its best doc at rank 1; the others score 0
    assert ev["aggregate"]["RR(rel=2)@10"] == pytest.approx(1 / 43)
    assert "42 of 43 judged queries" in p.stderr and "Traceback" not in p.stderr
    bad = _lsr(env, work, str(run), "--dataset", "msmarco-passage/trec-dl-2019/judgd")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("lsr: error: unknown dataset 'msmarco-passage/trec-dl-2019/judgd'")
    assert "did you mean msmarco-passage/trec-dl-2019/judged" in bad.stderr
