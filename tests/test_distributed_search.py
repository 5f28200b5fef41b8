"""Sharded search on Ray actors (lsr.distributed.search): equal to the unsharded index, an actor restarted
after it dies, and a shard that stays down named (ShardsUnavailable / ShardStatus)."""

from __future__ import annotations

import numpy as np
import pytest

import lsr
from lsr.config import ALGORITHMS, IndexConfig
from lsr.index.sharded import ShardsUnavailable, ShardStatus, shard_index

EXACT = [a for a in ALGORITHMS if a != "approx"]


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    rng = np.random.default_rng(11)
    docs = [(f"d{i}", {f"t{j}": float(rng.integers(1, 30)) / 10 for j in rng.choice(50, int(rng.integers(1, 9)),
                                                                                       replace=False)})
            for i in range(500)]
    d = tmp_path_factory.mktemp("ray-sharded")
    ix = lsr.build_index(docs, d / "ix", IndexConfig(block_size=8, range_block_docs=8))
    return ix, shard_index(ix.path, d / "s3", 3)


def _queries(seed=12, n=15):
    rng = np.random.default_rng(seed)
    qs = [(f"q{i}", {f"t{j}": float(rng.integers(1, 9)) for j in rng.choice(50, int(rng.integers(1, 5)),
                                                                           replace=False)}) for i in range(n)]
    return qs + [("common", {"t3": 1.0})]


def _same(a, b):
    assert a.query_ids == b.query_ids and a.doc_ids == b.doc_ids
    assert a.scores.dtype == b.scores.dtype and np.array_equal(a.scores, b.scores)
    assert np.array_equal(a.ranks, b.ranks)


@pytest.mark.slow
def test_ray_search_equals_unsharded_for_every_exact_algorithm(ray_local, indexes):
    from lsr.distributed.search import RayShardedSearcher

    ix, sh = indexes
    queries = _queries()
    with RayShardedSearcher(sh.path, shards_per_actor=2) as rs:   # two actors: shards (0, 1) and (2,)
        assert rs.groups == [(0, 1), (2,)]
        for algo in EXACT:
            rs.config = rs.config.with_overrides(algorithm=algo)   # sent with every call
            for k in (10, 1000):
                _same(rs.search_batch(queries, k=k), lsr.Searcher(ix, algorithm=algo).search_batch(queries, k=k))
            qid, q = queries[0]
            _same(rs.search(q, k=10, query_id=qid), lsr.Searcher(ix, algorithm=algo).search(q, k=10, query_id=qid))
        got, status = rs.search_batch_with_status(queries, k=10)
        assert status == ShardStatus(3, (0, 1, 2), ()) and status.complete
        _same(got, lsr.Searcher(ix, algorithm=EXACT[-1]).search_batch(queries, k=10))


@pytest.mark.slow
def test_a_killed_actor_restarts_and_one_that_stays_down_is_named(ray_local, indexes):
    from lsr.distributed.search import RayShardedSearcher, ShardActorsConfig

    ray = ray_local
    ix, sh = indexes
    queries = _queries(13, 6)
    want = lsr.Searcher(ix).search_batch(queries, k=20)
    with RayShardedSearcher(sh.path, actors=ShardActorsConfig(max_restarts=2, max_task_retries=2,
                                                               timeout_s=120)) as rs:
        assert len(rs.actors) == 3
        before = ray.get(rs.actors[1].ready.remote())
        ray.kill(rs.actors[1], no_restart=False)   # the process dies; Ray restarts it and retries the call
        _same(rs.search_batch(queries, k=20), want)
        assert ray.get(rs.actors[1].ready.remote()) != before   # a new process
        ray.kill(rs.actors[2], no_restart=True)   # gone for good
        with pytest.raises(ShardsUnavailable, match="shard 2") as e:
            rs.search_batch(queries, k=20)
        assert e.value.status == ShardStatus(3, (0, 1), (2,))
        got, status = rs.search_batch_with_status(queries, k=20)
        assert status.missing == (2,) and status.answered == (0, 1) and not status.complete
        # the answered shards' merged top k: the unsharded hits in documents 0..starts[2]-1
        end = int(sh.starts[2])
        allowed = set(ix.doc_ids(np.arange(end)))
        part = lsr.Searcher(ix).search_batch(queries, k=500).by_query()
        by_q = got.by_query()
        for qid, hits in part.items():
            assert [(h.doc_id, h.score) for h in by_q.get(qid, [])] == \
                [(h.doc_id, h.score) for h in hits if h.doc_id in allowed][:20]


def test_actor_settings_are_validated_and_the_module_imports_no_ray():
    import subprocess
    import sys

    from lsr.distributed.search import ShardActorsConfig
    from lsr.errors import InputError

    for bad in ({"shards_per_actor": 0}, {"max_restarts": -2}, {"timeout_s": 0}, {"num_cpus": -1},
                {"verify": "yes"}):
        with pytest.raises(InputError):
            ShardActorsConfig(**bad)
    code = "import sys, lsr.distributed.search, lsr.index.sharded; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_ray_search_of_the_real_scifact_index_with_text_queries(ray_local, scifact_splade_index, scifact_dir,
                                                                tmp_path):
    import json

    from lsr.distributed.search import RayShardedSearcher

    ix = lsr.Index.open(scifact_splade_index)
    sh = shard_index(ix.path, tmp_path / "s3", 3)
    texts = []
    with open(scifact_dir / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            texts.append((r["_id"], r["text"]))
            if len(texts) == 20:
                break
    with RayShardedSearcher(sh.path, shards_per_actor=2) as rs:
        for k in (10, 1000):
            _same(rs.search_batch(texts, k=k), lsr.Searcher(ix).search_batch(texts, k=k))
