"""``lsr benchmark`` end to end on real data, offline, and its registry.

ir_datasets runs from an IR_DATASETS_HOME filled by shared/tools/make-irds-home
(with the 4,103 DL19 passages), in subprocesses (ir_datasets fixes its paths on
import; pyserini's JVM is one per process). The model is the real splade-tiny
checkpoint of shared/models. To stay fast, the SciFact runs use the first 150
documents (``--max-docs``, the smoke-test option) with all 300 test queries,
and time the first few queries only (``--latency-queries``). Checks:

* the table, results.json (every field), the runs and the plots;
* nDCG@10 equals a brute-force computation over the same encodings: scores
  by SciPy sparse dot products of the cached document vectors and the saved
  query vectors, ranked with lsr's tie rule (collection order), evaluated with
  ir-measures directly: with the default 8-bit index (impacts re-derived from
  the documented rule: the run itself must be identical) and with float
  impacts (float64 scores; nDCG@10 to 1e-4);
* ``lsr benchmark`` runs no baselines and says so, with the command that runs
  them; ``python -m benchmarks.pipeline`` (same options, ``--baselines``)
  runs BM25 and PISA through the same pipeline (``peers`` marker): the BM25
  run equals pyserini's own command-line run on the same index and topics,
  doc for doc and score for score; PISA over the same impacts gives lsr's
  scores for every query;
* a second run hits the encode cache; TREC DL gets its family's metrics;
* bad input: one line, exit status 2;
* every registry entry is a valid BenchmarkConfig whose encoder resolves,
  and its ``command`` parses to the same configuration; an entry that
  benchmarks a baseline only is refused by ``lsr benchmark`` in one line.

Nothing is mocked.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from brute import doc_matrix, query_vector, topk
from test_bm25 import pyserini_own_run, read_run

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LSR_SHARED_DIR", ROOT.parent / "shared"))
MAKE_HOME = SHARED / "tools" / "make-irds-home"
SCIFACT = SHARED / "data" / "beir" / "scifact"
MODEL = SHARED / "models" / "splade-tiny"
N_DOCS = 150


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    assert MAKE_HOME.is_file() and MODEL.is_dir(), f"shared data not found at {SHARED} (set LSR_SHARED_DIR)"
    home = tmp_path_factory.mktemp("irds-home")
    subprocess.run(["bash", str(MAKE_HOME), str(home), "--with-dl19-passages"], check=True, capture_output=True)
    work = tmp_path_factory.mktemp("bench")
    e = dict(os.environ, IR_DATASETS_HOME=str(home), PYTHONDONTWRITEBYTECODE="1", XDG_CACHE_HOME=str(work / "xdg"))
    return e, work


def bench(env, *args, timeout=900, pipeline=False):
    """``lsr benchmark ARGS`` (or, with ``pipeline``, ``python -m benchmarks.pipeline ARGS``) in a subprocess."""
    e, work = env
    cmd = ["-m", "benchmarks.pipeline"] if pipeline else ["-m", "lsr", "benchmark"]
    e = dict(e, PYTHONPATH=os.pathsep.join([str(ROOT), e.get("PYTHONPATH", "")])) if pipeline else e
    return subprocess.run([sys.executable, *cmd, *args], env=e, cwd=work, capture_output=True, text=True,
                          timeout=timeout)


def _run_ok(p):
    assert p.returncode == 0, p.stderr[-4000:]
    assert "Traceback" not in p.stderr
    return p


SF_ARGS = ("--dataset", "beir/scifact/test", "--encoder", str(MODEL), "--max-docs", str(N_DOCS), "--algorithms",
           "exhaustive,bmw", "--latency-queries", "30", "--repeats", "1", "--encode-threads", "1")


@pytest.fixture(scope="module")
def sf(env):
    """SciFact, default settings (8-bit index, plots), ``lsr benchmark``: no baselines."""
    _, work = env
    out = work / "scifact"
    p = _run_ok(bench(env, *SF_ARGS, "-o", str(out), "--cache-dir", str(work / "cache")))
    return p, json.loads((out / "results.json").read_text()), out


@pytest.fixture(scope="module")
def sf_peers(env, sf):
    """The same through ``python -m benchmarks.pipeline`` with its default baselines, BM25 and PISA."""
    _, work = env
    out = work / "scifact-peers"
    p = _run_ok(bench(env, *SF_ARGS, "-o", str(out), "--cache-dir", str(work / "cache"), pipeline=True))
    return p, json.loads((out / "results.json").read_text()), out


@pytest.fixture(scope="module")
def sf_float(env, sf):
    """The same dataset and encoder again (encode cache hit), float impacts, no baselines."""
    _, work = env
    out = work / "scifact-float"
    p = _run_ok(bench(env, "-d", "beir/scifact/test", "-e", str(MODEL), "--max-docs", str(N_DOCS), "-o", str(out),
                      "--cache-dir", str(work / "cache"), "--quantization", "float",
                      "--algorithms", "exhaustive", "--latency-queries", "10", "--repeats", "1", "--no-plots"))
    return p, json.loads((out / "results.json").read_text()), out


# --------------------------------------------------------------------------- brute force
def _read_parts(directory: str) -> list[tuple[str, dict]]:
    out = []
    for name in sorted(os.listdir(directory)):
        if re.fullmatch(r"part-\d{5}\.jsonl\.gz", name):
            with gzip.open(os.path.join(directory, name), "rt", encoding="utf-8") as f:
                out += [(r["id"], r["vector"]) for r in map(json.loads, f)]
    return out


def _read_queries(path: Path) -> list[tuple[str, dict]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [(r["id"], r["vector"]) for r in map(json.loads, f)]


def _scifact_qrels() -> dict:
    qrels: dict = {}
    for line in (SCIFACT / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        q, d, r = line.split("\t")
        qrels.setdefault(q, {})[d] = int(r)
    return qrels


def _brute_run(results: dict, out: Path, is_float: bool, k: int = 1000) -> dict:
    """``{qid: [(doc_id, score), ...]}``: SciPy scores, top k, equal scores in collection order."""
    docs = _read_parts(results["encode"]["directory"])
    assert len(docs) == results["dataset"]["documents"]
    vocab = sorted({t for _, v in docs for t in v})
    m = doc_matrix([v for _, v in docs], vocab, method="float" if is_float else "auto", bits=8)
    if is_float:
        m = m.astype(np.float64)
    run = {}
    for qid, qv in _read_queries(out / "queries.jsonl.gz"):
        q = query_vector(qv, vocab, is_float, 100.0)
        idx, scores = topk(m, q.astype(np.float64) if is_float else q, k)
        run[qid] = [(docs[i][0], s) for i, s in zip(idx.tolist(), scores.tolist())]
    return run


def _ndcg10(run: dict, qrels: dict) -> float:
    """nDCG@10 by ir-measures over every judged query (a query without hits scores 0)."""
    import ir_measures

    ranked = {q: {d: float(len(hits) - i) for i, (d, _) in enumerate(hits)} for q, hits in run.items() if hits}
    per = {m.query_id: m.value for m in ir_measures.iter_calc([ir_measures.nDCG @ 10], qrels, ranked)}
    return sum(per.get(q, 0.0) for q in qrels) / len(qrels)


# --------------------------------------------------------------------------- tests
def test_interleaved_timing_shuffles_per_query_and_takes_the_median_of_the_rounds():
    from lsr.eval.benchmark import interleaved_ms

    calls = []
    fake = {"a": [5.0, 1.0, 3.0], "b": [2.0, 2.0, 2.0], "c": [1.0, 4.0, 9.0]}   # ms per round, same every query
    now = [0]

    def timer(name):
        def fn(i):   # takes fake[name][round] ms on the clock below
            r = sum(1 for n, j in calls if n == name and j == i)
            calls.append((name, i))
            now[0] += int(fake[name][r] * 1e6)
        return fn

    got = interleaved_ms({"a": (timer("a"), 4), "b": (timer("b"), 4), "c": (timer("c"), 2)}, rounds=3,
                         clock=lambda: now[0])
    assert [len(got[k]) for k in "abc"] == [4, 4, 2]
    # every timer ran every query it takes once a round; within a (round, query) the order is shuffled
    assert len(calls) == 3 * (4 + 4 + 2)
    groups, at = [], 0
    for _ in range(3):
        for i in range(4):
            size = 3 if i < 2 else 2
            group = calls[at:at + size]
            assert {j for _, j in group} == {i} and len({n for n, _ in group}) == size
            groups.append(tuple(n for n, _ in group))
            at += size
    orders = {g for g in groups if len(g) == 3}
    assert len(orders) > 1
    # the median over the rounds, per query
    assert got == {"a": [3.0] * 4, "b": [2.0] * 4, "c": [4.0] * 2}


def test_paired_latency_ratio_and_sign_test():
    from lsr.eval.benchmark import paired_latency

    r = paired_latency([1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 6.0, 2.0])
    assert r == {"queries": 4, "median_ratio": 0.75, "a_faster": 2, "ties": 1, "sign_test_p": 1.0}
    assert paired_latency([1.0] * 20, [2.0] * 20)["sign_test_p"] == pytest.approx(2 / 2**20)
    assert paired_latency([1.0], [1.0, 2.0]) is None


@pytest.mark.slow
def test_table_json_runs_and_plots(sf):
    """lsr benchmark: lsr's rows only, and the line that says which baselines ran (none) and how to run them."""
    p, r, out = sf
    lines = p.stdout.splitlines()
    assert lines[0] == (f"lsr benchmark: beir/scifact/test ({N_DOCS} documents, 300 queries, 300 judged), "
                        f"first {N_DOCS} documents only (smoke test)")
    header = next(x for x in lines if x.startswith("system"))
    assert header.split() == ["system", "nDCG@10", "R@100", "R@1000", "ret", "mean", "ret", "p50", "ret", "p90",
                              "ret", "p99", "ret/first", "(p)", "e2e", "p50", "QPS", "index", "MiB", "build", "s"]
    rows = {x.split("  ")[0]: x for x in lines[lines.index(header) + 1:] if x and not x.startswith(("note", "results"))}
    assert set(rows) == {"lsr exhaustive", "lsr bmw"}
    assert ("baselines run: none (lsr benchmark measures lsr itself; BM25 and PISA run from a source checkout: "
            f"python -m benchmarks.pipeline --dataset beir/scifact/test --encoder {MODEL} --baselines bm25,pisa)"
            in lines)
    assert r["baselines"] == {"ran": [], "not_run": []} and not (out / "bm25").exists()
    assert r["table"] in p.stdout and lines[-1] == f"results: {out.name}/results.json"  # relative to the cwd
    for name in ("run.trec", "queries.jsonl.gz", "results.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in ("latency-vs-effectiveness.png", "latency-distribution.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < len(data) < 200_000, name

    assert r["format"] == "lsr-benchmark/1"
    commit = r["git"]["commit"]
    if (ROOT / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", commit) and isinstance(r["git"]["dirty"], bool)
    c = r["config"]
    assert (c["dataset"], c["encoder"], c["max_docs"], c["k"]) == ("beir/scifact/test", str(MODEL), N_DOCS, 1000)
    assert c["algorithms"] == ["exhaustive", "bmw"] and c["baselines"] == []
    mach = r["machine"]
    assert mach["cores"] >= 1 and mach["ram_bytes"] > 2**30 and mach["cpu"] and mach["python"]
    assert all(mach["versions"][v] for v in ("numpy", "numba", "torch", "matplotlib"))
    assert r["dataset"] == {"name": "beir/scifact/test", "spec": "beir/scifact/test", "family": "beir",
                            "documents": N_DOCS, "queries": 300, "judged_queries": 300, "max_docs": N_DOCS}
    assert r["metrics"] == ["nDCG@10", "R@100", "R@1000"]
    enc = r["encode"]
    assert enc["cached"] is False and enc["docs"] == enc["encoded"] == N_DOCS and enc["docs_per_second"] > 0
    assert r["query_encoding"]["ms"]["n"] == 30 and r["query_encoding"]["ms"]["median"] > 0
    assert r["index"]["documents"] == N_DOCS and r["index"]["bytes"] > 0 and r["index"]["impact_dtype"] == "uint8"
    assert r["latency"]["k"] == 1000 and r["latency"]["queries_timed"] == 30 and r["latency"]["threads"] == 1
    for s in r["systems"]:
        assert set(s["metrics"]) == set(r["metrics"]), s["name"]
        st = s["retrieval_ms"]
        assert st["n"] == 30 and 0 < st["min"] <= st["median"] <= st["p90"] <= st["p99"] <= st["max"], s["name"]
        assert len(s["retrieval_ms_per_query"]) == 30
        assert s["qps"] > 0 and s["index_bytes"] > 0 and s["build_seconds"] > 0 and os.path.isfile(s["run"])
        e2e = s["end_to_end_ms"]
        assert e2e["n"] == 30 and (e2e == st) == (s["kind"] == "bm25"), s["name"]  # BM25 takes text: same figure
        assert (s["end_to_end_ms_per_query"] is None) == (s["kind"] == "bm25")
    lsr = [s for s in r["systems"] if s["kind"] == "lsr"]
    assert lsr[0]["metrics"] == lsr[1]["metrics"] and lsr[1]["checks"] == {"same_run_as": "exhaustive"}
    # timed interleaved, paired per query against the first processor
    assert r["latency"]["rounds"] == 3 and "shuffled" in r["latency"]["order"]
    assert lsr[0]["paired"] is None
    pr = lsr[1]["paired"]
    assert pr["against"] == "lsr exhaustive" and pr["retrieval"]["queries"] == 30
    ratios = np.array(lsr[1]["retrieval_ms_per_query"]) / np.array(lsr[0]["retrieval_ms_per_query"])
    assert pr["retrieval"]["median_ratio"] == pytest.approx(float(np.median(ratios)), rel=1e-2)  # 4-digit lists
    assert 0 < pr["retrieval"]["sign_test_p"] <= 1 and pr["end_to_end"]["queries"] == 30
    assert r["seconds"] > 0 and {"encode", "index", "latency", "plots"} <= set(r["phase_seconds"])


@pytest.mark.slow
def test_ndcg_equals_brute_force_on_the_8bit_index(sf):
    _, r, out = sf
    brute = _brute_run(r, out, is_float=False)
    run = read_run(out / "run.trec")
    assert {q: [(d, f"{s:.6f}") for d, s in hits] for q, hits in brute.items() if hits} == run
    lsr = next(s for s in r["systems"] if s["kind"] == "lsr")
    assert lsr["metrics"]["nDCG@10"] == pytest.approx(_ndcg10(brute, _scifact_qrels()), abs=1e-9)


@pytest.mark.slow
def test_ndcg_equals_brute_force_on_float_impacts_and_the_cache_is_hit(sf, sf_float):
    p, r, out = sf_float
    assert r["index"]["impact_dtype"] == "float32"
    brute = _brute_run(r, out, is_float=True)
    lsr = r["systems"][0]
    assert lsr["metrics"]["nDCG@10"] == pytest.approx(_ndcg10(brute, _scifact_qrels()), abs=1e-4)
    # the second run encoded nothing and reports the first run's speed, saying so
    first = sf[1]["encode"]
    enc = r["encode"]
    assert enc["cached"] is True and enc["directory"] == first["directory"]
    assert enc["docs_per_second"] == pytest.approx(first["docs_per_second"])
    assert "encode cache hit" in p.stderr and "(cached: encoded " in p.stdout
    assert not (out / "latency-vs-effectiveness.png").exists() and [s["kind"] for s in r["systems"]] == ["lsr"]


@pytest.mark.peers
def test_pipeline_runs_the_baselines_like_lsr(sf, sf_peers):
    p, r, out = sf_peers
    lines = p.stdout.splitlines()
    assert "baselines run: bm25, pisa" in lines
    header = next(x for x in lines if x.startswith("system"))
    rows = {x.split("  ")[0] for x in lines[lines.index(header) + 1:] if x and not x.startswith(("note", "results"))}
    assert rows == {"lsr exhaustive", "lsr bmw", "BM25 (pyserini)", "PISA block_max_wand"}
    assert r["baselines"] == {"ran": ["bm25", "pisa"], "not_run": []}
    assert r["config"]["baselines"] == ["bm25", "pisa"] and r["encode"]["cached"] is True
    assert [s["metrics"] for s in r["systems"][:2]] == [s["metrics"] for s in sf[1]["systems"]]  # lsr: same run
    for s in r["systems"]:
        st = s["retrieval_ms"]
        assert st["n"] == 30 and 0 < st["min"] <= st["median"] <= st["p99"] <= st["max"], s["name"]
        assert s["qps"] > 0 and s["index_bytes"] > 0 and s["build_seconds"] > 0 and os.path.isfile(s["run"])
        e2e = s["end_to_end_ms"]
        assert e2e["n"] == 30 and (e2e == st) == (s["kind"] == "bm25"), s["name"]  # BM25 takes text: same figure
        assert (s["end_to_end_ms_per_query"] is None) == (s["kind"] == "bm25")
    for name in ("run.bm25.trec", "run.pisa.trec"):
        assert (out / name).stat().st_size > 0
    assert {"bm25", "pisa"} <= set(r["phase_seconds"])
    # the baselines were timed in the same interleaved passes, paired with lsr's first processor per query
    pisa = next(s for s in r["systems"] if s["kind"] == "pisa")
    assert pisa["paired"]["against"] == "lsr exhaustive" and pisa["paired"]["retrieval"]["queries"] == 30


@pytest.mark.peers
def test_bm25_baseline_equals_pyserinis_own_run(sf_peers, tmp_path):
    from benchmarks.bm25 import write_topics

    _, r, out = sf_peers
    bm = next(s for s in r["systems"] if s["kind"] == "bm25")
    assert bm["settings"]["k1"] == 0.9 and bm["settings"]["b"] == 0.4
    test_ids = set(_scifact_qrels())
    topics = [(q["_id"], q["text"]) for q in map(json.loads, (SCIFACT / "queries.jsonl").read_text().splitlines())
              if q["_id"] in test_ids]
    write_topics(topics, tmp_path / "topics.tsv")
    theirs = pyserini_own_run(out / "bm25" / "index", tmp_path / "topics.tsv", tmp_path / "own.trec", 1000, tmp_path)
    mine = read_run(out / "run.bm25.trec")
    assert len(mine) == 300 and mine == theirs


@pytest.mark.peers
def test_pisa_scores_the_same_impacts(sf_peers):
    _, r, _ = sf_peers
    pisa = next(s for s in r["systems"] if s["kind"] == "pisa")
    lsr = next(s for s in r["systems"] if s["kind"] == "lsr")
    assert pisa["checks"] == {"queries_with_lsr_scores": 300, "queries": 300}
    for m, v in lsr["metrics"].items():  # same scores; only the order of equal scores may differ
        assert pisa["metrics"][m] == pytest.approx(v, abs=0.01)


@pytest.fixture(scope="module")
def dl19(env):
    _, work = env
    out = work / "dl19"
    p = _run_ok(bench(env, "-d", "msmarco-passage/trec-dl-2019/judged", "-e", str(MODEL), "--max-docs", "300",
                      "-o", str(out), "--cache-dir", str(work / "cache"), "--algorithms",
                      "maxscore", "-k", "100", "--latency-queries", "10", "--repeats", "1", "--no-plots", "--json",
                      "--encode-threads", "1"))
    return json.loads(p.stdout), out


@pytest.mark.slow
def test_trec_dl_subset_gets_the_trec_dl_metrics(dl19):
    r, out = dl19
    assert r["metrics"] == ["nDCG@10", "R(rel=2)@1000"] and r["dataset"]["family"] == "trec-dl"
    assert r["dataset"]["documents"] == 300 and r["dataset"]["queries"] == r["dataset"]["judged_queries"] == 43
    (s,) = r["systems"]
    assert s["name"] == "lsr maxscore" and 0 < s["metrics"]["nDCG@10"] <= 1 and r["config"]["k"] == 100
    assert len(read_run(out / "run.trec")) == 43


@pytest.mark.slow
def test_pre_encoded_vectors_on_msmarco_ids(env, dl19):
    """--vectors (the first run's encoded documents; queries by their encoder.json)."""
    first, _ = dl19
    _, work = env
    out = work / "dl19-vectors"
    p = _run_ok(bench(env, "-d", "msmarco-passage/trec-dl-2019/judged", "--vectors", first["encode"]["directory"],
                      "--max-docs", "300", "-o", str(out), "--cache-dir", str(work / "cache"),
                      "--algorithms", "exhaustive", "-k", "100", "--latency-queries", "10", "--repeats", "1",
                      "--no-plots", "--no-progress"))
    r = json.loads((out / "results.json").read_text())
    assert r["encode"]["pre_encoded"] is True and r["encoder"]["used_for"] == "queries"
    assert "documents: pre-encoded (" in p.stdout
    (lsr,) = r["systems"]
    assert lsr["metrics"] == first["systems"][0]["metrics"]  # same vectors, same queries, same run
    assert read_run(out / "run.trec") == read_run(work / "dl19" / "run.trec")


@pytest.mark.parametrize("args, message", [
    (["-d", "beir/scifactx", "-e", "MODEL"], "lsr: error: unknown dataset 'beir/scifactx'"),
    (["-d", "msmarco-passage", "-e", "MODEL"], "lsr: error: dataset msmarco-passage has no relevance judgments"),
    (["-d", "beir/scifact/test", "-e", "no-such-encoder"], "lsr: error: unknown encoder 'no-such-encoder'"),
])
def test_bad_input_is_one_line_and_exit_2(env, args, message):
    _, work = env
    out = work / "never"
    p = bench(env, *[str(MODEL) if a == "MODEL" else a for a in args], "-o", str(out), "--cache-dir",
              str(work / "cache-bad"), "--no-progress")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    err = [x for x in p.stderr.splitlines() if x.startswith("lsr:")]
    assert len(err) == 1 and err[0].startswith(message), p.stderr
    assert not out.exists() and not (work / "cache-bad").exists()


@pytest.mark.parametrize("args, message", [
    (["--algorithms", "nope"], "unknown algorithm 'nope'"),
    (["--quantization", "fixed"], "quantization method 'fixed' needs a positive, finite scale"),
    (["--registry", "no-such-entry"], "unknown registry entry 'no-such-entry'"),
    (["--latency-k", "0"], None),
])
def test_bad_options_in_process(capsys, args, message):
    from lsr.cli import main

    if message is None:  # argparse's own check: exit status 2 and its usage line
        with pytest.raises(SystemExit) as e:
            main(["benchmark", "-d", "beir/scifact/test", "-e", "splade-tiny", *args])
        assert e.value.code == 2 and "expected a positive integer, got '0'" in capsys.readouterr().err
        return
    rc = main(["benchmark", "-d", "beir/scifact/test", "-e", "splade-tiny", *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("lsr: error: ") and message in err and err.count("\n") == 1


def test_nothing_to_benchmark(capsys):
    from lsr.cli import main

    assert main(["benchmark", "-d", "beir/scifact/test"]) == 2
    assert capsys.readouterr().err == "lsr: error: nothing to benchmark: give an encoder or pre-encoded vectors\n"
    with pytest.raises(SystemExit) as e:   # the baseline options are the pipeline's
        main(["benchmark", "-d", "beir/scifact/test", "--baselines", "bm25"])
    assert e.value.code == 2 and "unrecognized arguments: --baselines" in capsys.readouterr().err


def test_baseline_only_registry_entry_is_refused_in_one_line(capsys):
    from lsr.cli import main

    assert main(["benchmark", "--registry", "bm25-msmarco-dev", "-o", "never-written"]) == 2
    err = capsys.readouterr().err
    assert err == ("lsr: error: bm25-msmarco-dev has no encoder or vectors: it benchmarks the bm25 baseline only, "
                   "which lsr benchmark does not run (it measures lsr itself); from a source checkout: "
                   "python -m benchmarks.pipeline --registry bm25-msmarco-dev --baselines bm25\n")
    assert not os.path.exists("never-written")


@pytest.mark.parametrize("args, message", [
    (["--baselines", "bm25,lucene"], "unknown baseline 'lucene'"),
    (["--pisa-algorithm", "fast"], "unknown PISA algorithm 'fast'"),
    (["--bm25-b", "2"], "bm25_b must be in [0, 1]"),
    (["--registry", "no-such-entry"], "unknown registry entry 'no-such-entry'"),
])
def test_pipeline_bad_options(capsys, args, message):
    from benchmarks.pipeline import main

    assert main(["-d", "beir/scifact/test", "-e", "splade-tiny", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("benchmarks.pipeline: error: ") and message in err and err.count("\n") == 1


def test_help_is_true_to_the_code(capsys):
    from lsr.commands.benchmark import _BASELINE_OPTIONS, _DIRECT
    from lsr.cli import build_parser
    from lsr.eval.benchmark import BenchmarkConfig

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["benchmark", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    d = BenchmarkConfig(dataset="x", encoder="y")
    for fragment in (f"(default {d.k})", f"(default {','.join(d.algorithms)})",
                     f"(default {d.repeats})", f"(default {d.batch_size})", f"(default {d.device})",
                     f"(default {d.dtype})", f"(default {d.query_scale:g})",
                     f"(default {d.threads} = all cores)", f"impact bits (default {d.index.quantization.bits})",
                     f"block maxima (default {d.index.block_size})", f"(default {d.index.quantization.method}:"):
        assert fragment in text, fragment
    sub = parser._subparsers._group_actions[0].choices["benchmark"]
    dests = {a.dest for a in sub._actions}
    fields = {f.name for f in dataclasses.fields(BenchmarkConfig)}
    assert set(_DIRECT) <= dests and set(_DIRECT) <= fields
    assert fields - set(_DIRECT) - set(_BASELINE_OPTIONS) == {"name", "metrics", "index", "expected", "expected_source"}
    assert not set(_BASELINE_OPTIONS) & dests and "baselines run: none" in text
    # the pipeline's parser: the same options plus the baselines', their defaults in its help
    from benchmarks.pipeline import DEFAULT_BASELINES, parser as pipeline_parser

    pp = pipeline_parser()
    assert set(_DIRECT) | set(_BASELINE_OPTIONS) <= {a.dest for a in pp._actions}
    ptext = " ".join(pp.format_help().split())
    for fragment in (f"(default {','.join(DEFAULT_BASELINES)},", f"(default {d.bm25_k1}, Anserini's)",
                     f"(default {d.bm25_b}, Anserini's)", f"(default {d.pisa_algorithm})"):
        assert fragment in ptext, fragment


def test_config_round_trip_and_validation(tmp_path):
    from lsr.config import IndexConfig, QuantizationConfig
    from lsr.errors import InputError
    from lsr.eval.benchmark import BenchmarkConfig

    c = BenchmarkConfig(dataset="beir/scifact/test", encoder="splade-tiny", metrics="nDCG@10,R(rel=2)@1000",
                        algorithms=["bmw"], baselines="bm25", index=IndexConfig(QuantizationConfig("float")),
                        expected={"lsr": {"nDCG@10": 0.5}})
    assert c.metrics == ("nDCG@10", "R(rel=2)@1000") and c.algorithms == ("bmw",) and c.baselines == ("bm25",)
    assert BenchmarkConfig.from_dict(c.to_dict()) == c
    import yaml

    (tmp_path / "b.yaml").write_text(yaml.safe_dump(c.to_dict()))
    assert BenchmarkConfig.from_yaml(tmp_path / "b.yaml") == c
    with pytest.raises(dataclasses_frozen_error()):
        c.k = 5  # type: ignore[misc]
    for bad, msg in (({"dataset": ""}, "needs a dataset"), ({"k": 0}, "k must be a positive integer"),
                     ({"colour": 1}, "unknown setting(s) colour"), ({"threads": -1}, "threads must be"),
                     ({"metrics": []}, "metrics is empty"), ({"algorithms": ["bmw", "bmw"]}, "lists one twice"),
                     ({"expected": {"lsr": {"RR@10": "high"}}}, "must be a number"),
                     ({"expected": {"splade": {"RR@10": 1}}}, "unknown system kind"),
                     ({"index": {"block_size": 3}}, "block_size"), ({"dtype": "int8"}, "dtype must be")):
        with pytest.raises(InputError, match=re.escape(msg)):
            BenchmarkConfig.from_dict({"dataset": "d", "encoder": "e", **bad})


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_registry_entries_are_valid_and_their_commands_match():
    import shlex

    from lsr.cli import build_parser
    from lsr.commands.benchmark import config_from_args
    from lsr.encoders import resolve_config
    from lsr.eval.benchmark import load_registry_entry, registry_entries

    entries = registry_entries()
    assert {"splade-pp-ed-msmarco-dev", "unicoil-msmarco-dev", "deepimpact-msmarco-dev", "bm25-msmarco-dev",
            "splade-tiny-scifact", "splade-tiny-dl19-judged"} <= set(entries)
    from benchmarks.pipeline import parser as pipeline_parser

    parser = build_parser()
    for name in entries:
        e = load_registry_entry(name)
        c = e.config
        assert e.name == name == c.name and e.description and e.source and c.expected, name
        if c.encoder is not None:
            resolve_config(c.encoder)  # the preset exists (nothing is downloaded)
        argv = shlex.split(e.command)
        if c.baselines:   # baselines run from a source checkout
            assert argv[:3] == ["python", "-m", "benchmarks.pipeline"], name
            from_command = config_from_args(pipeline_parser().parse_args(argv[3:]))
        else:
            assert argv[:2] == ["lsr", "benchmark"], name
            from_command = config_from_args(parser.parse_args(argv[1:]))
        keep = {"name": c.name, "expected": c.expected, "expected_source": c.expected_source}
        assert from_command.to_dict() | keep == c.to_dict(), name
        for kind, figures in c.expected.items():
            assert kind in ("lsr", "bm25", "pisa") and all(0 < v <= 1 for v in figures.values()), name


# --------------------------------------------------------------------------- the reranking stage
@pytest.mark.slow
def test_benchmark_with_a_reranking_stage(env, sf):
    """``lsr benchmark --rerank``: the reranked run is the reranker's own rerank of lsr's run (first N queries),
    its latency is timed per query apart from retrieval, and effectiveness is measured before and after."""
    from benchmarks.rerankers import minilm_colbert
    from lsr.eval import evaluate
    from lsr.rerank import load_reranker
    from lsr.rerank.sources import query_texts
    from lsr.results import Results

    _, work = env
    model = minilm_colbert(str(work / "models"), dim=16, seed=5)
    cfg = work / "maxsim.yaml"
    cfg.write_text(f"reranker: maxsim\nmodel: {model}\nbatch_size: 16\n")
    out = work / "scifact-rerank"
    p = _run_ok(bench(env, *SF_ARGS, "-o", str(out), "--cache-dir", str(work / "cache"), "--no-plots",
                      "--rerank", str(cfg), "--rerank-depth", "5", "--rerank-queries", "4"))
    res = json.loads((out / "results.json").read_text())
    rr = res["rerank"]
    assert rr["reranker"] == "maxsim" and rr["depth"] == 5 and rr["queries"] == 4 and rr["subset"]
    assert len(rr["ms_per_query"]) == 4 and rr["ms"]["mean"] > 0 and rr["stats"]["forward_passes"] > 0
    assert "reranking: maxsim" in p.stdout and "rerank latency (ms per query" in p.stdout
    first = Results.read_trec(out / "run.trec")
    qids = first.query_order()[:4]
    idx = [i for i, q in enumerate(first.query_ids) if q in qids]
    first4 = Results([first.query_ids[i] for i in idx], [first.doc_ids[i] for i in idx], first.scores[idx],
                     first.ranks[idx])
    corpus = {}
    with open(SCIFACT / "corpus.jsonl") as f:
        for line in f:
            r = json.loads(line)
            corpus[r["_id"]] = (r["title"] + " " + r["text"]).strip()
    queries = {q: t for q, t in query_texts(str(SCIFACT / "queries.jsonl")).items() if q in qids}
    want = load_reranker(str(cfg), depth=5).rerank(queries, first4, corpus)
    got = Results.read_trec(out / "run.rerank.trec")
    assert got.query_ids == want.query_ids and got.doc_ids == want.doc_ids
    assert np.allclose(got.scores, want.scores, atol=1e-4)
    qrels = {q: v for q, v in _scifact_qrels().items() if q in qids}
    assert rr["metrics_before"]["nDCG@10"] == pytest.approx(evaluate(first4, qrels, ["nDCG@10"]).aggregate["nDCG@10"])
    assert rr["metrics_after"]["nDCG@10"] == pytest.approx(evaluate(want, qrels, ["nDCG@10"]).aggregate["nDCG@10"])
