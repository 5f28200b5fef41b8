"""Sharded search on Ray actors: scatter a query batch to shard actors, gather and merge their top k.

:class:`RayShardedSearcher` opens a sharded index (:mod:`lsr.index.sharded`) as Ray actors, one per
group of ``shards_per_actor`` consecutive shards (:class:`ShardWorker`); each actor opens its shards
memory-mapped (:meth:`lsr.index.Index.open`) and searches them with ordinary
:class:`~lsr.index.Searcher` objects. The driver reads only the top-level manifest, the shards'
manifests, the vocabulary and each term's largest impact (:class:`~lsr.index.sharded.ShardedLayout`),
prepares the queries once (text queries through the index's query encoder), puts them into Ray's
object store once, and makes one remote call per actor per batch. An actor merges its shards' top k
and returns global doc numbers, scores and the hits' external ids; the driver merges the actors' lists
with :func:`~lsr.index.sharded.merge_topk` (ties by global doc order), so the hits are those of the
local :class:`~lsr.index.sharded.ShardedSearcher` and the unsharded index.

Failures: actors are created with ``max_restarts`` and ``max_task_retries``, so an actor process that
dies is restarted by Ray (its shards opened again) and the call retried. An actor whose restarts are
used up, that fails, or that has not answered within ``timeout_s`` leaves its shards missing:
:meth:`RayShardedSearcher.search_batch` then raises :class:`~lsr.index.sharded.ShardsUnavailable`
naming them, and :meth:`RayShardedSearcher.search_batch_with_status` returns the merged top k of the
shards that answered with a :class:`~lsr.index.sharded.ShardStatus` naming the missing ones; no call
returns a partial top k without saying so.

Ray itself is the caller's: ``ray.init(...)`` (local or a cluster address) before creating the
searcher; every node running an actor needs lsr installed and the index at the same path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from lsr.config import SearchConfig
from lsr.errors import InputError, LsrError
from lsr.index.search import QuerySide, _own_query_encoder
from lsr.index.sharded import ShardStatus
from lsr.results import Results

from . import import_ray


@dataclass(frozen=True)
class ShardActorsConfig:
    """How the shard actors run.

    ``shards_per_actor``: consecutive shards each actor opens. ``num_cpus``: Ray CPUs each actor
    reserves (None: Ray's default for actors, one CPU to be placed and none while it runs, so more
    actors than CPUs fit). ``max_restarts``: times Ray restarts a dead actor (-1: without end).
    ``max_task_retries``: times a call is retried after its actor died (-1: without end).
    ``timeout_s``: seconds a batch waits for the actors (None: no limit); those that have not answered
    count as missing. ``verify``: actors check every shard file's SHA-256 when they open it.
    """

    shards_per_actor: int = 1
    num_cpus: float | None = None
    max_restarts: int = 3
    max_task_retries: int = 3
    timeout_s: float | None = 60.0
    verify: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.shards_per_actor, bool) or not isinstance(self.shards_per_actor, int) \
                or self.shards_per_actor < 1:
            raise InputError(f"shards_per_actor must be a positive integer, got {self.shards_per_actor!r}")
        if self.num_cpus is not None and (isinstance(self.num_cpus, bool) or not isinstance(self.num_cpus, (int, float))
                                          or not self.num_cpus >= 0):
            raise InputError(f"num_cpus must be a number >= 0 or None, got {self.num_cpus!r}")
        for name in ("max_restarts", "max_task_retries"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < -1:
                raise InputError(f"{name} must be an integer >= -1, got {v!r}")
        if self.timeout_s is not None and (isinstance(self.timeout_s, bool) or not isinstance(self.timeout_s, (int, float))
                                           or not self.timeout_s > 0):
            raise InputError(f"timeout_s must be a number > 0 or None, got {self.timeout_s!r}")
        if not isinstance(self.verify, bool):
            raise InputError(f"verify must be true or false, got {self.verify!r}")


class ShardWorker:
    """One actor's shards: opened memory-mapped, searched with ordinary searchers (made a Ray actor by
    :class:`RayShardedSearcher`; a plain object here, so that importing this module needs no Ray)."""

    def __init__(self, paths: Sequence[str], starts: Sequence[int], verify: bool):
        from lsr.index import Index

        self.starts = [int(s) for s in starts]
        self.indexes = [Index.open(p, verify=verify) for p in paths]
        self._searchers: dict[SearchConfig, list] = {}

    def searchers(self, config: SearchConfig) -> list:
        """One searcher a shard for ``config`` (made on first use and kept)."""
        from lsr.index import Searcher

        got = self._searchers.get(config)
        if got is None:
            got = self._searchers[config] = [Searcher(ix, config) for ix in self.indexes]
        return got

    def ready(self) -> int:
        """The process id (the actor is up and its shards are open)."""
        return os.getpid()

    def search(self, p, k: int, config: SearchConfig, threads: int | None, single: bool) -> tuple:
        """The top k of prepared queries ``p`` over this actor's shards with the settings ``config``, merged:
        ``(docs int64[nq, k], scores[nq, k], counts[nq], ids)`` with global doc numbers and ``ids`` the
        external ids of the hits, row by row."""
        from lsr.index.sharded import merge_topk, search_shards

        docs, scores, counts = merge_topk(*search_shards(self.searchers(config), self.starts, p, k, threads, single),
                                          k)
        flat = docs[np.arange(docs.shape[1])[None, :] < counts[:, None]]
        which = np.searchsorted(np.asarray(self.starts[1:], np.int64), flat, side="right")
        ids: list[str] = [""] * len(flat)
        for i in np.unique(which):
            pos = np.flatnonzero(which == i)
            for j, d in zip(pos.tolist(), self.indexes[i].doc_ids(flat[pos] - self.starts[i])):
                ids[j] = d
        return docs, scores, counts, ids


class RayShardedSearcher(QuerySide):
    """Exact top-k search over a sharded index whose shards are searched by Ray actors (module docstring).

    ``path``: a sharded index directory (every node that runs an actor sees it at this path). ``config``
    and keyword ``overrides``: the :class:`~lsr.config.SearchConfig` every shard searcher uses, as for
    :class:`~lsr.index.Searcher`. ``shards_per_actor`` overrides ``actors.shards_per_actor``;
    ``actors``: :class:`ShardActorsConfig`. ``query_encoder``: as :class:`~lsr.index.Searcher` takes it.
    The settings go with every call, so ``searcher.config`` may be replaced between calls (e.g. another
    algorithm) without restarting the actors. The actors are started and their shards opened here; an
    actor that cannot start is an :class:`~lsr.errors.LsrError`. :meth:`close` ends them (so does
    dropping the searcher).
    """

    def __init__(self, path: str | os.PathLike, config: SearchConfig | None = None,
                 shards_per_actor: int | None = None, *, actors: ShardActorsConfig | None = None,
                 query_encoder: Any = None, verify: bool = True, **overrides: Any):
        from lsr.index.sharded import ShardedLayout

        ray = import_ray()
        if not ray.is_initialized():
            raise LsrError("RayShardedSearcher uses the running Ray: call ray.init() (or ray.init(address=...)) "
                           "first")
        actors = actors or ShardActorsConfig()
        if shards_per_actor is not None:
            actors = ShardActorsConfig(**{**actors.__dict__, "shards_per_actor": shards_per_actor})
        self.actors_config = actors
        self.index = ShardedLayout(path, verify=verify)
        cfg = config or SearchConfig()
        self.config = cfg.with_overrides(**overrides) if overrides else cfg
        self._query_encoder = _own_query_encoder(query_encoder, self.index.encoder)
        n = self.index.num_shards
        step = actors.shards_per_actor
        # actor a holds shards groups[a]
        self.groups: list[tuple[int, ...]] = [tuple(range(a, min(a + step, n))) for a in range(0, n, step)]
        options: dict[str, Any] = {"max_restarts": actors.max_restarts, "max_task_retries": actors.max_task_retries}
        if actors.num_cpus is not None:
            options["num_cpus"] = actors.num_cpus
        remote = ray.remote(ShardWorker).options(**options)
        starts = self.index.starts
        self.actors = [remote.remote([self.index.shard_paths[i] for i in g],
                                     [int(starts[i]) for i in g] + [int(starts[g[-1] + 1])], actors.verify)
                       for g in self.groups]
        self._ray = ray
        try:
            _gather(ray, [a.ready.remote() for a in self.actors], actors.timeout_s, raise_first=True)
        except BaseException:
            self.close()
            raise

    @property
    def num_shards(self) -> int:
        return self.index.num_shards

    def _scatter(self, p, k: int, threads: int | None, single: bool):
        """One call per actor on ``p``; returns the merged (Results, ShardStatus, first error)."""
        from lsr.index.sharded import ShardStatus, merge_topk

        ray = self._ray
        ref = ray.put(p)
        calls = [a.search.remote(ref, k, self.config, threads, single) for a in self.actors]
        answers, errors = _gather(ray, calls, self.actors_config.timeout_s)
        answered = tuple(i for a, g in enumerate(self.groups) if answers[a] is not None for i in g)
        missing = tuple(i for a, g in enumerate(self.groups) if answers[a] is None for i in g)
        status = ShardStatus(self.num_shards, answered, missing)
        got = [x for x in answers if x is not None]
        nq = len(p.ids)
        if not got:
            return self._results(p.ids, np.zeros((nq, k), np.int64), np.zeros((nq, k), p.score_dtype),
                                 np.zeros(nq, np.int64), {}), status, errors
        docs, scores, counts = merge_topk([g[0] for g in got], [g[1] for g in got], [g[2] for g in got], k)
        names: dict[int, str] = {}
        for d, _, c, ids in got:
            flat = d[np.arange(d.shape[1])[None, :] < c[:, None]]
            names.update(zip(flat.tolist(), ids))
        return self._results(p.ids, docs, scores.astype(p.score_dtype, copy=False), counts, names), status, errors

    def _run(self, queries, k: int | None, threads: int | None, single: bool):
        from lsr.index.search import _query_items

        items = _query_items(queries)
        k = self._check_k(k)
        if not items:
            from lsr.index.sharded import ShardStatus

            return Results(), ShardStatus(self.num_shards, tuple(range(self.num_shards)), ()), []
        p = self.prepare(items)
        self._warn(p)
        return self._scatter(p, k, threads, single)

    def search_batch_with_status(self, queries, k: int | None = None,
                                 threads: int | None = None) -> tuple[Results, ShardStatus]:
        """The top k of every query over the shards that answered, and which answered: with
        ``status.complete`` false the hits are the top k of the answered shards only."""
        results, status, _ = self._run(queries, k, threads, single=False)
        return results, status

    def search_batch(self, queries, k: int | None = None, threads: int | None = None) -> Results:
        """The top k of every query (one call per actor); :class:`~lsr.index.sharded.ShardsUnavailable`
        when a shard did not answer."""
        from lsr.index.sharded import ShardsUnavailable

        results, status, errors = self._run(queries, k, threads, single=False)
        if not status.complete:
            raise ShardsUnavailable(status, errors[0] if errors else "")
        return results

    def search(self, query, k: int | None = None, query_id: str = "0") -> Results:
        """The top k of one query (each actor searches it on its calling thread)."""
        from lsr.index.sharded import ShardsUnavailable

        results, status, errors = self._run([(query_id, query)], k, None, single=True)
        if not status.complete:
            raise ShardsUnavailable(status, errors[0] if errors else "")
        return results

    def close(self) -> None:
        """End the actors (no restart). Killing an actor that is already dead is a no-op in Ray; after
        ``ray.shutdown()`` there is nothing left to end."""
        ray = getattr(self, "_ray", None)
        if ray is not None and ray.is_initialized():
            for a in getattr(self, "actors", []):
                ray.kill(a, no_restart=True)
        self.actors = []

    def __enter__(self) -> "RayShardedSearcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _gather(ray, refs: list, timeout_s: float | None, raise_first: bool = False) -> tuple[list, list[str]]:
    """Wait for ``refs`` (at most ``timeout_s`` seconds in all): ``(values, errors)`` with None for a call
    that failed or did not finish and one line per failure. ``raise_first``: an LsrError instead."""
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    done = set(ready)
    values: list = []
    errors: list[str] = []
    for i, r in enumerate(refs):
        if r not in done:
            values.append(None)
            errors.append(f"actor {i} did not answer within {timeout_s} s")
            continue
        try:
            values.append(ray.get(r))
        except Exception as e:   # the actor died (restarts used up) or its call raised
            values.append(None)
            errors.append(f"actor {i}: {_one_line(e)}")
    if raise_first and errors:
        raise LsrError(f"a shard actor did not start: {errors[0]}")
    return values, errors


def _one_line(e: BaseException) -> str:
    """A short message for an exception Ray raised (the LsrError it wraps where there is one)."""
    seen = 0
    while e is not None and seen < 5:
        cause = getattr(e, "cause", None)
        if isinstance(cause, LsrError):
            return str(cause).split("\n", 1)[0]
        e2 = e.__cause__ or cause
        if e2 is None or e2 is e:
            break
        e, seen = e2, seen + 1
    lines = [s for s in str(e).splitlines() if s.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]


__all__ = ["RayShardedSearcher", "ShardActorsConfig", "ShardWorker"]
