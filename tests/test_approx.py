"""The approximate processor (``approx``, :mod:`lsr.index.kernels.approx`): exact scores of what it
returns, the exhaustive top k when its knobs are exact, its NumPy reference, its settings and flags."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lsr
from lsr import configs
from lsr.config import APPROX_KEYS, ApproxConfig, SearchConfig, shipped_approx
from lsr.errors import InputError
from lsr.index.kernels.approx import approx_one, approx_ref, kept_terms, kept_terms_ref
from lsr.index.processors import approx_params, range_buffers

KNOBS = [ApproxConfig(), ApproxConfig(alpha=0.7), ApproxConfig(alpha=0.3), ApproxConfig(query_cut=1),
         ApproxConfig(query_cut=2, alpha=0.9), ApproxConfig(query_mass=0.5), ApproxConfig(max_blocks=1),
         ApproxConfig(alpha=0.5, query_mass=0.8, max_blocks=3)]


def _exhaustive_scores(index, terms: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Every document's exact score of one prepared query (from the decoded postings)."""
    acc = np.zeros(index.num_documents, np.float64 if index.is_float else np.int64)
    off = np.asarray(index.term_offsets)
    docs = np.asarray(index.postings_docs)
    imp = np.asarray(index.postings_impacts)
    for t, w in zip(terms.tolist(), weights.tolist()):
        a, b = int(off[t]), int(off[t + 1])
        np.add.at(acc, docs[a:b], imp[a:b].astype(acc.dtype) * w)
    return acc


def _check(index, queries, ks, knobs=KNOBS, reference=True):
    """Every answer: scores exact, sorted (ties by doc id), no duplicates; with exact knobs the
    exhaustive top k; on integer indexes equal to the NumPy reference, single and batch alike."""
    exh = lsr.Searcher(index, algorithm="exhaustive")
    p = exh.prepare(list(queries.items()))
    for k in ks:
        want = exh.search_batch(queries, k=k).by_query()
        for ac in knobs:
            s = lsr.Searcher(index, algorithm="approx", approx=ac)
            batch = s.search_batch(queries, k=k, threads=2).by_query()
            for qi, qid in enumerate(p.ids):
                single = list(s.search(queries[qid], k=k, query_id=qid))
                assert single == batch.get(qid, []), (ac, k, qid)
                a, b = p.offsets[qi], p.offsets[qi + 1]
                full = _exhaustive_scores(index, p.terms[a:b], p.weights[a:b])
                docs = [index.internal_id(h.doc_id) for h in single]
                scores = [h.score for h in single]
                assert len(set(docs)) == len(docs)
                if index.is_float:
                    np.testing.assert_allclose(scores, full[docs], rtol=1e-5)
                else:
                    assert scores == full[docs].tolist(), (ac, k, qid)
                    assert all(s > 0 for s in scores)
                    assert [(-s, d) for s, d in zip(scores, docs)] == sorted((-s, d) for s, d in zip(scores, docs))
                if ac.is_exact:
                    if index.is_float:
                        assert len(single) == len(want.get(qid, []))
                    else:
                        assert single == want.get(qid, []), (k, qid)
                if reference and not index.is_float and b > a:
                    rd, rs = approx_ref(index.term_offsets, index.postings_docs, index.postings_impacts,
                                        index.term_max, index.range_shift, index.num_documents, p.terms[a:b],
                                        p.weights[a:b], k, approx_params(ac))
                    assert docs == rd.tolist() and scores == rs.tolist(), (ac, k, qid)


TERMS = [f"t{i}" for i in range(12)]


@st.composite
def collections(draw):
    n_docs = draw(st.integers(1, 60))
    docs = []
    for _ in range(n_docs):
        terms = draw(st.lists(st.sampled_from(TERMS), max_size=8, unique=True))
        docs.append({t: draw(st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0, 2.75, 3.3])) for t in terms})
    if not any(docs):
        docs[0] = {"t0": 1.0}
    queries = draw(st.lists(st.dictionaries(st.sampled_from(TERMS), st.sampled_from([0.3, 1.0, 2.0, 0.05, 1.7]),
                                            min_size=1, max_size=6), min_size=1, max_size=4))
    method = draw(st.sampled_from(["auto", "max", "float"]))
    range_docs = draw(st.sampled_from([1, 4, 16, 64]))
    dense_df = draw(st.sampled_from([0.0, 0.2]))
    return docs, queries, method, range_docs, dense_df


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(collections())
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_random_collections_exact_scores_and_exact_knobs(tmp_path, data):
    docs, queries, method, range_docs, dense_df = data
    out = tmp_path / "ix"
    ix = lsr.build_index([{"id": f"d{i}", "vector": v} for i, v in enumerate(docs)], out,
                         lsr.IndexConfig(quantization=lsr.QuantizationConfig(method=method), range_block_docs=range_docs),
                         overwrite=True)
    ix = lsr.Index.open(out)
    for dense in (0.0, dense_df):
        s = lsr.Searcher(ix, algorithm="approx", dense_df=dense)
        qs = {f"q{j}": q for j, q in enumerate(queries)}
        _check(s.index, qs, (1, 3, 100))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """500 documents with doc id locality (neighbours share terms), integer impacts, 16-document blocks."""
    rng = np.random.default_rng(7)
    recs = []
    for i in range(500):
        topic = i // 50
        terms = rng.choice(10, 4, replace=False).tolist() + [10 + topic * 3 + j for j in rng.choice(3, 2, replace=False)]
        recs.append({"id": f"d{i}", "vector": {f"t{t}": float(rng.integers(1, 60)) for t in terms}})
    return lsr.build_index(recs, tmp_path_factory.mktemp("approx") / "ix")


def test_seeded_collection_against_the_reference_and_brute_force(seeded):
    rng = np.random.default_rng(8)
    queries = {f"q{i}": {f"t{t}": float(rng.integers(1, 9)) for t in rng.choice(40, 5, replace=False)}
               for i in range(15)}
    _check(seeded, queries, (1, 10, 50))


def test_kept_terms_against_the_reference():
    rng = np.random.default_rng(9)
    term_max = rng.integers(1, 256, 50).astype(np.uint8)
    for _ in range(200):
        m = int(rng.integers(1, 12))
        terms = rng.choice(50, m, replace=False).astype(np.int32)
        weights = rng.integers(1, 5, m).astype(np.int32)   # small: equal bounds happen
        cut = int(rng.integers(0, 14))
        mass = float(rng.choice([1.0, 0.99, 0.8, 0.5, 0.1, 1e-9]))
        got = kept_terms(terms, weights, term_max, cut, mass)
        assert got.tolist() == kept_terms_ref(terms, weights, term_max, cut, mass).tolist()
        assert got.any() and (cut == 0 or got.sum() <= max(cut, 1))


def test_query_cut_keeps_the_largest_bounds():
    term_max = np.array([10, 1, 5, 7], np.uint8)
    terms = np.array([0, 1, 2, 3], np.int32)
    w = np.array([1, 100, 2, 1], np.int32)          # bounds 10, 100, 10, 7
    assert kept_terms(terms, w, term_max, 2, 1.0).tolist() == [True, True, False, False]   # ties: query order
    assert kept_terms(terms, w, term_max, 0, 0.7).tolist() == [False, True, False, False]  # 100 >= 0.7 * 127
    assert kept_terms(terms, w, term_max, 0, 0.8).tolist() == [True, True, False, False]   # 110 >= 0.8 * 127
    assert kept_terms(terms, w, term_max, 0, 0.9).tolist() == [True, True, True, False]
    assert kept_terms(terms, w, term_max, 0, 1.0).all() and kept_terms(terms, w, term_max, 4, 1.0).all()


def test_buffers_are_left_clean_and_stats_written(seeded):
    s = lsr.Searcher(seeded, algorithm="approx", alpha=0.5, query_cut=2, dense_df=0.0)   # pairs, no dense rows
    p = s.prepare([("q", {"t1": 3.0, "t2": 1.0, "t12": 5.0})])
    rb = range_buffers(s, p, None)
    out_d, out_s = np.empty(10, np.int32), np.empty(10, p.score_dtype)
    n = approx_one(s.index_arrays(), p.terms, p.weights, 10, approx_params(s.config.approx), rb, out_d, out_s)
    assert n == 10 and rb.stats[0] >= 1 and rb.stats[2] >= 1
    assert not rb.ub.any() and (rb.head == -1).all() and not rb.local.any()


def test_max_blocks_bounds_the_blocks_scored(seeded):
    s = lsr.Searcher(seeded, algorithm="approx", max_blocks=2)
    p = s.prepare([("q", {"t1": 3.0, "t2": 1.0})])
    rb = range_buffers(s, p, None)
    out_d, out_s = np.empty(10, np.int32), np.empty(10, p.score_dtype)
    n = approx_one(s.index_arrays(), p.terms, p.weights, 10, approx_params(s.config.approx), rb, out_d, out_s)
    assert rb.stats[0] == 2 and 1 <= n <= 10


def test_shipped_approx_yaml_matches_the_dataclass():
    import yaml

    text = configs.path("search", "approx.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert tuple(data) == APPROX_KEYS
    assert ApproxConfig(**data) == ApproxConfig() == shipped_approx() == SearchConfig().approx
    assert ApproxConfig().is_exact
    lines = text.splitlines()
    for key in data:
        i = next(j for j, line in enumerate(lines) if line.startswith(f"{key}:"))
        assert lines[i - 1].startswith("# ") and len(lines[i - 1]) > 20, key


@pytest.mark.parametrize("bad, message", [
    ({"alpha": 0}, "alpha must be a number in (0, 1], got 0"),
    ({"alpha": 1.5}, "alpha must be a number in (0, 1], got 1.5"),
    ({"alpha": "x"}, "alpha must be a number in (0, 1], got 'x'"),
    ({"query_cut": 0}, "query_cut must be an integer >= 1, got 0"),
    ({"query_cut": 2.5}, "query_cut must be an integer >= 1, got 2.5"),
    ({"query_mass": 0}, "query_mass must be a number in (0, 1], got 0"),
    ({"max_blocks": 0}, "max_blocks must be an integer >= 1, got 0"),
    ({"alfa": 1}, "ApproxConfig: unknown setting(s) alfa (known: alpha, max_blocks, query_cut, query_mass)"),
])
def test_approx_config_errors_are_one_line(bad, message):
    with pytest.raises(InputError) as e:
        SearchConfig.from_dict({"algorithm": "approx", "approx": bad})
    assert str(e.value) == message and "\n" not in str(e.value)


def test_search_config_nests_approx_and_takes_its_keys_as_overrides(tmp_path):
    cfg = SearchConfig().with_overrides(algorithm="approx", alpha=0.8, query_cut=4, max_k=5)
    assert cfg.approx == ApproxConfig(alpha=0.8, query_cut=4) and cfg.planner.max_k == 5
    assert SearchConfig.from_dict(cfg.to_dict()) == cfg
    path = tmp_path / "s.yaml"
    path.write_text("algorithm: approx\napprox:\n  alpha: 0.9\n  query_mass: 0.95\n")
    got = SearchConfig.from_yaml(path)
    assert got.algorithm == "approx" and got.approx == ApproxConfig(alpha=0.9, query_mass=0.95)


def test_cli_flags(seeded, tmp_path, capsys):
    from lsr.cli import main

    queries = tmp_path / "q.tsv"
    queries.write_text("a\tt1:3 t2:1 t12:5\nb\tt3:1.5 t20:2\n")
    out = tmp_path / "run"
    assert main(["search", "-i", seeded.path, "-q", str(queries), "--algorithm", "approx", "--alpha", "0.6",
                 "--query-cut", "2", "-o", str(out)]) == 0
    want = lsr.Searcher(seeded, algorithm="approx", alpha=0.6, query_cut=2).search_batch(
        [("a", {"t1": 3.0, "t2": 1.0, "t12": 5.0}), ("b", {"t3": 1.5, "t20": 2.0})])
    got = [line.split() for line in out.read_text().splitlines()]
    assert [(g[0], g[2]) for g in got] == list(zip(want.query_ids, want.doc_ids))
    capsys.readouterr()
    assert main(["search", "-i", seeded.path, "-q", str(queries), "--alpha", "0.6"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "lsr: error: --alpha goes with --algorithm approx (the algorithm is auto)"]
    assert main(["search", "-i", seeded.path, "-q", str(queries), "--algorithm", "approx", "--alpha", "2"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["lsr: error: alpha must be a number in (0, 1], got 2.0"]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"algorithm": "approx", "approx": {"max_blocks": -3}}))
    assert main(["search", "-i", seeded.path, "-q", str(queries), "--config", str(cfg)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["lsr: error: max_blocks must be an integer >= 1, got -3"]


# --------------------------------------------------------------------------- a real index
def _recall(s_approx, s_exact, queries, k) -> float:
    got = s_approx.search_batch(queries, k=k, threads=1).by_query()
    want = s_exact.search_batch(queries, k=k, threads=1).by_query()
    r = []
    for qid, hits in want.items():
        if not hits:
            continue
        kth = hits[-1].score
        r.append(min(len(hits), sum(1 for h in got.get(qid, []) if h.score >= kth)) / len(hits))
    return float(np.mean(r))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_real_splade_index(scifact_splade_index, scifact_dir):
    """On the real SciFact splade-tiny index: exact knobs give the exhaustive top k; every returned
    score is exact; recall falls as alpha falls (on the mean over 300 queries, with a small slack:
    one query's recall need not fall, since a lower alpha changes the threshold's path)."""
    ix = lsr.Index.open(scifact_splade_index)
    texts = [json.loads(line) for line in (scifact_dir / "queries.jsonl").read_text().splitlines()][:300]
    enc = lsr.Searcher(ix)._encode_texts([q["text"] for q in texts])
    queries = {q["_id"]: v for q, v in zip(texts, enc)}
    exact = lsr.Searcher(ix, algorithm="exhaustive")
    for k in (10, 100):
        assert lsr.Searcher(ix, algorithm="approx").search_batch(queries, k=k).by_query() == \
            exact.search_batch(queries, k=k).by_query()
    sub = dict(list(queries.items())[:40])
    _check(ix, sub, (10,), knobs=[ApproxConfig(alpha=0.5, query_cut=5), ApproxConfig(query_mass=0.7)],
           reference=False)
    recalls = [_recall(lsr.Searcher(ix, algorithm="approx", alpha=a), exact, queries, 10)
               for a in (1.0, 0.9, 0.7, 0.5, 0.3)]
    assert recalls[0] == 1.0
    assert all(b <= a + 0.01 for a, b in zip(recalls, recalls[1:])), recalls
    assert recalls[-1] < recalls[0]
    cut = [_recall(lsr.Searcher(ix, algorithm="approx", query_cut=c), exact, queries, 10) for c in (1000, 8, 2)]
    assert cut[0] == 1.0 and cut[2] <= cut[1] + 0.01 and cut[2] < 1.0, cut


# --------------------------------------------------------------------------- the benchmark's pieces
def test_benchmark_engines_take_approx_settings(seeded):
    from benchmarks import peers as P
    from benchmarks.approx_bench import lsr_variants, parser, pareto

    data = P.PeerData(seeded)
    qs = P.QuerySet.from_queries(seeded, [("a", {"t1": 3.0, "t12": 5.0}), ("b", {"t3": 2.0, "t20": 1.0})])
    args = parser().parse_args(["--collection", "real", "--lsr-alpha", "1,0.5", "--lsr-cut", "0,1",
                                "--lsr-alpha-mass", "1", "--lsr-mass", "0.5"])
    variants = lsr_variants(args)
    assert list(variants) == ["auto", "approx alpha=1", "approx alpha=1,cut=1", "approx alpha=0.5",
                              "approx alpha=0.5,cut=1", "approx alpha=1,mass=0.5"]
    eng = P.LsrEngine(variants=variants)
    assert eng.settings() == list(variants)
    eng.build(data)
    want = P.LsrEngine(["exhaustive"])
    want.build(data)
    exact = want.search(qs, 10, "exhaustive")
    for s in eng.settings():
        for h, w in zip(eng.search(qs, 10, s), exact):
            got = data.exact_scores(h.docs, *[x[qs.ids.index("a" if w is exact[0] else "b")]
                                              for x in (qs.terms, qs.weights)])
            assert h.scores.tolist() == got.tolist()   # exact scores of what it returns
            if s in ("auto", "approx alpha=1"):
                assert h.docs.tolist() == w.docs.tolist()
    bmp = P.BmpEngine(bsize=16, search=[(1.0, 1.0), (0.5, 0.8)])
    assert bmp.settings() == ["bsize=16,alpha=1,beta=1", "bsize=16,alpha=0.5,beta=0.8"]
    assert P.BmpEngine().settings() == ["bsize=32,alpha=1,beta=1"]
    assert pareto([(1.0, 2.0), (0.9, 1.0), (0.9, 1.5), (0.8, 1.0), (1.0, 2.0)]) == [True, True, False, False, True]
