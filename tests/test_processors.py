"""The query processor registry, the search settings (PlannerConfig and its shipped YAML), the batch
thread count, and the kernels' argument layout."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil

import numba
import numpy as np
import pytest
import yaml

import lsr
from lsr import configs
from lsr.config import ALGORITHMS, PLANNER_KEYS, PlannerConfig, SearchConfig, shipped_planner
from lsr.errors import InputError


def test_registry_names_every_algorithm_once():
    from lsr.index.processors import PROCESSORS

    assert tuple(PROCESSORS) == ALGORITHMS
    for name, proc in PROCESSORS.items():
        assert proc.name == name
        assert proc.fallback is None or proc.fallback in PROCESSORS
        # both kernels have the common layout
        one = list(inspect.signature(proc.one.py_func).parameters)
        batch = list(inspect.signature(proc.batch.py_func).parameters)
        assert len(one) == 8 and one[1:4] == ["q_terms", "q_weights", "k"] and one[-2:] == ["out_docs", "out_scores"]
        assert len(batch) == 8 and batch[1:3] == ["queries", "k"] and batch[-3:] == ["out_docs", "out_scores",
                                                                                 "out_counts"]


def _kernels():
    import lsr.index.kernels as K

    names = [f"lsr.index.kernels.{m.name}" for m in pkgutil.iter_modules(K.__path__)]
    for modname in names + ["lsr.index.format", "lsr.index.builder", "lsr.index.docstore"]:
        mod = importlib.import_module(modname)
        for name, f in vars(mod).items():
            py = getattr(f, "py_func", None)
            if py is not None and py.__module__ == mod.__name__:
                yield f"{mod.__name__}.{name}", len(inspect.signature(py).parameters)


def test_every_kernel_takes_at_most_ten_parameters():
    sizes = dict(_kernels())
    assert len(sizes) > 40
    assert {name: n for name, n in sizes.items() if n > 10} == {}


# every public kernel of the query path -> its plain-NumPy reference, against which tests/test_kernels.py
# checks it on random data (the query processors' kernels all compute the exhaustive top k)
REFERENCES = {
    "exhaustive": {"exhaustive_one": "exhaustive_ref", "exhaustive_batch": "exhaustive_ref",
                   "score_terms": "exhaustive_ref", "select_top": "exhaustive_ref"},
    "blockmax": {"blockmax_one": "exhaustive.exhaustive_ref", "blockmax_batch": "exhaustive.exhaustive_ref"},
    "filtered": {"filtered_one": "exhaustive.exhaustive_ref", "filtered_batch": "exhaustive.exhaustive_ref",
                 "full_prefix": "full_prefix_ref", "rest_bounds": "rest_bounds_ref"},
    "planner": {"plan_one": "plan_one_ref", "auto_one": "exhaustive.exhaustive_ref",
                "auto_batch": "exhaustive.exhaustive_ref"},
    "maxscore": {"maxscore_one": "exhaustive.exhaustive_ref", "maxscore_batch": "exhaustive.exhaustive_ref",
                 "next_geq": "next_geq_ref"},
    "wand": {"wand_one": "exhaustive.exhaustive_ref", "wand_batch": "exhaustive.exhaustive_ref"},
    "approx": {"approx_one": "approx_ref", "approx_batch": "approx_ref", "kept_terms": "kept_terms_ref"},
    "cost": {"exhaustive_cost": "exhaustive_cost_ref", "bounds_cost": "bounds_cost_ref"},
    "topk": {"acc_block_maxima": "acc_block_maxima_ref", "listed_block_maxima": "acc_block_maxima_ref",
             "kth_lower_bound": "kth_lower_bound_ref", "doc_bound": "doc_bound_ref",
             **{n: "topk_ref" for n in ("offer_blocks", "offer_listed", "select_blocks", "select_listed",
                                        "bins_select_blocks", "bins_select_listed", "heap_push", "heap_offer",
                                        "heap_sift_down", "heap_sort_desc")}},
    "dense": {"fill_dense_rows": "dense_rows_ref", "add_dense_row": "exhaustive.exhaustive_ref"},
    "postings": {"read_varint": "decode_ref", "term_pairs": "decode_ref", "next_pair": "decode_ref",
                 "low_at": "decode_ref", "decode_term_into": "decode_ref", "decode_docs": "decode_ref",
                 "pair_sizes": "encode_ref", "pair_fill": "encode_ref"},
}
# kernels of the query path without a NumPy twin: the index's consistency check (tested on damaged codes)
NO_REFERENCE: set = set()


def test_every_query_kernel_has_a_numpy_reference():
    for module, refs in REFERENCES.items():
        mod = importlib.import_module(f"lsr.index.kernels.{module}")
        public = {n for n, f in vars(mod).items()
                  if hasattr(f, "py_func") and f.py_func.__module__ == mod.__name__ and not n.startswith("_")}
        assert public - set(refs) == {n.split(".")[1] for n in NO_REFERENCE if n.startswith(module + ".")}, module
        for kernel, ref in refs.items():
            where, _, name = ref.rpartition(".")
            f = getattr(importlib.import_module(f"lsr.index.kernels.{where or module}"), name)
            assert callable(f) and not hasattr(f, "py_func"), (kernel, ref)   # plain Python / NumPy


def test_shipped_planner_yaml_matches_the_dataclass():
    text = configs.path("search", "planner.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert tuple(data) == PLANNER_KEYS                        # every setting, in the dataclass's order
    assert PlannerConfig(**data) == PlannerConfig() == shipped_planner() == SearchConfig().planner
    # a one-line reason above every setting
    lines = text.splitlines()
    for key in data:
        i = next(j for j, line in enumerate(lines) if line.startswith(f"{key}:"))
        assert lines[i - 1].startswith("# ") and len(lines[i - 1]) > 20, key


def test_search_config_shows_the_user_settings_first_and_nests_the_planner():
    names = [f.name for f in dataclasses.fields(SearchConfig)]
    assert names[:4] == ["algorithm", "k", "threads", "query_scale"] and names[-1] == "planner"
    d = SearchConfig().to_dict()
    assert set(d["planner"]) == set(PLANNER_KEYS) and not set(PLANNER_KEYS) & set(d)
    assert SearchConfig.from_dict(d) == SearchConfig()
    # the planner's keys at the top level (the old flat form) move into planner
    cfg = SearchConfig.from_dict({"k": 5, "max_k": 30, "large_k": "filtered"})
    assert cfg.k == 5 and cfg.planner.max_k == 30 and cfg.planner.large_k == "filtered"
    assert cfg.planner.budget_ratio == shipped_planner().budget_ratio
    assert SearchConfig.from_dict({"planner": {"max_k": 7}}).planner == PlannerConfig(max_k=7)
    with pytest.raises(InputError, match="max_k given both at the top level and under planner"):
        SearchConfig.from_dict({"max_k": 3, "planner": {"max_k": 4}})
    with pytest.raises(InputError, match="unknown setting"):
        SearchConfig.from_dict({"planner": {"maxk": 4}})
    with pytest.raises(InputError, match="budget_ratio must be a finite number >= 0"):
        SearchConfig.from_dict({"planner": {"budget_ratio": -1}})
    assert SearchConfig().with_overrides(k=3, sweep_after=-1) == SearchConfig(k=3, planner=PlannerConfig(sweep_after=-1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        SearchConfig().planner.max_k = 3   # type: ignore[misc]


def test_search_config_from_yaml_with_a_planner_section(tmp_path):
    path = tmp_path / "search.yaml"
    path.write_text("algorithm: blockmax\nk: 20\nplanner:\n  sweep_after: 8\n")
    cfg = SearchConfig.from_yaml(path)
    assert cfg.algorithm == "blockmax" and cfg.k == 20 and cfg.planner.sweep_after == 8
    assert cfg.planner.max_k == shipped_planner().max_k


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    rng = np.random.default_rng(3)
    docs = [(f"d{i}", {f"t{j}": float(rng.integers(1, 30)) / 10 for j in rng.choice(30, 7, replace=False)})
            for i in range(500)]
    return lsr.build_index(docs, tmp_path_factory.mktemp("p") / "ix")


def test_batch_puts_numbas_thread_count_back(small):
    from lsr.index.search import _threads

    before = numba.get_num_threads()
    q = [("a", {"t1": 1.0, "t2": 2.0}), ("b", {"t3": 1.5})]
    for threads in (1, 0):
        lsr.Searcher(small).search_batch(q, k=5, threads=threads)
        assert numba.get_num_threads() == before
    # also when the call fails
    if numba.config.NUMBA_NUM_THREADS > 1:
        with pytest.raises(RuntimeError, match="boom"):
            with _threads(1, 10) as workers:
                assert workers == 1 and numba.get_num_threads() == 1
                raise RuntimeError("boom")
        assert numba.get_num_threads() == before
        numba.set_num_threads(1)
        try:
            lsr.Searcher(small).search_batch(q, k=5, threads=0)
            assert numba.get_num_threads() == 1
        finally:
            numba.set_num_threads(before)


def test_every_processor_and_its_fallbacks_give_the_exhaustive_hits(small):
    """Each registry entry, single and batch, including the fallback paths (a float index for
    ``filtered``; the planner's routes), returns the exhaustive top k."""
    rng = np.random.default_rng(4)
    queries = [(f"q{i}", {f"t{j}": float(rng.integers(1, 9)) for j in rng.choice(30, 4, replace=False)})
               for i in range(12)]
    exh = lsr.Searcher(small, algorithm="exhaustive")
    for k in (1, 10, 300):
        want = exh.search_batch(queries, k=k).by_query()
        for algo in ALGORITHMS:
            for kw in ({}, {"max_k_power": 0.0, "locality_ratio": 1e9, "pair_ratio": 1e9},
                       {"max_k": 0, "max_k_power": 0.0, "locality_ratio": 1e9, "pair_ratio": 1e9,
                        "large_k": "filtered"}):
                s = lsr.Searcher(small, algorithm=algo, **kw)
                assert s.search_batch(queries, k=k, threads=2).by_query() == want, (algo, kw)
                for qid, q in queries[:4]:
                    assert list(s.search(q, k=k, query_id=qid)) == want[qid], (algo, kw)


def test_cli_search_reads_a_planner_section(small, tmp_path, capsys):
    from lsr.cli import main

    queries = tmp_path / "q.tsv"
    queries.write_text("a\tt1:1.0 t2:2.0\nb\tt3:1.5\n")
    want = lsr.Searcher(small, algorithm="exhaustive").search_batch([("a", {"t1": 1.0, "t2": 2.0}),
                                                                      ("b", {"t3": 1.5})], k=7)
    for i, text in enumerate(("algorithm: blockmax\nplanner:\n  sweep_after: 0\n", "max_k: 0\nlarge_k: filtered\n")):
        cfg = tmp_path / f"s{i}.yaml"
        cfg.write_text(text)
        out = tmp_path / f"run{i}"
        assert main(["search", "-i", small.path, "-q", str(queries), "-k", "7", "--config", str(cfg),
                     "-o", str(out)]) == 0
        got = [line.split() for line in out.read_text().splitlines()]
        assert [(g[0], g[2]) for g in got] == list(zip(want.query_ids, want.doc_ids))
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("planner:\n  sweep_after: -2\n")
    capsys.readouterr()
    assert main(["search", "-i", small.path, "-q", str(queries), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["lsr: error: sweep_after must be an integer >= -1, got -2"]
