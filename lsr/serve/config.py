"""``ServeConfig``: the settings of ``lsr serve`` (the HTTP JSON API), frozen and self-validating.

Loaded from YAML like the other configs (:meth:`ServeConfig.from_yaml`); a ``search:`` mapping in it
holds :class:`~lsr.config.SearchConfig` settings for the searcher the server opens. Every request
limit below is enforced by :func:`lsr.serve.app.create_app` with a 4xx JSON error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from lsr.config import SearchConfig, _Config, _int_at_least, _number_in
from lsr.errors import InputError

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass(frozen=True)
class ServeConfig(_Config):
    """Settings of the HTTP server (``lsr serve``, :func:`lsr.serve.run`, :func:`lsr.serve.create_app`).

    Listening:

    * ``host`` (default ``127.0.0.1``, loopback only): the address to bind; ``0.0.0.0`` exposes the
      server to the network (there is no authentication).
    * ``port`` (default 8080): the TCP port; 0 lets the system pick a free one (``lsr serve`` prints
      the address it listens on). Ray Serve (``--ray``) needs a fixed port.

    Request limits (each violation is answered with a 4xx JSON ``{"error": "..."}``):

    * ``max_request_bytes`` (default 65,536): a request body larger than this is refused with 413
      before it is parsed (by its Content-Length, or while it is read when it has none).
    * ``max_k`` (default 1,000): the largest ``k`` a request may ask for (422 above it; ``k`` must be
      a positive integer).
    * ``default_k`` (default 10): ``k`` when a request gives none.
    * ``max_query_chars`` (default 4,096): the longest text query in characters, and the longest
      term of a ``{term: weight}`` query (422 above it).
    * ``max_query_terms`` (default 1,024): the most terms a ``{term: weight}`` query may have (422).
    * ``max_rerank_depth`` (default 1,000): the largest ``rerank_depth`` a request may ask for when
      the server reranks (422 above it).
    * ``rerank_depth`` (default None = the reranker config's ``depth``): candidates reranked per
      query when a request gives no ``rerank_depth``.

    Searching:

    * ``search``: :class:`~lsr.config.SearchConfig` of the searcher ``lsr serve`` opens (its
      ``threads`` is replaced by 1: each request runs on one thread, requests run in parallel).
    * ``search_threads`` (default 0 = this process's usable CPUs): searches that run at once, each on
      its own worker thread; further requests wait for a free one (the event loop goes on accepting
      them and answering ``/health``).
    * ``encoder_threads`` (default 1): torch threads of the query encoder per text query.
    * ``access_log`` (default False): log every request (uvicorn's access log).
    * ``log_level`` (default ``warning``): uvicorn's log level.

    Ray Serve (``lsr serve --ray``):

    * ``ray_app_name`` (default ``lsr``): the Serve application's name.
    * ``ray_replicas`` (default 1): replicas of the deployment.
    * ``ray_replica_cpus`` (default 1.0): CPUs Ray reserves for each replica.
    * ``ray_shards_per_actor`` (default 1): for a sharded index, consecutive shards each shard actor
      of a replica's :class:`~lsr.distributed.search.RayShardedSearcher` opens.
    * ``ray_max_ongoing_requests`` (default 64): requests Ray Serve hands one replica at once (its
      ``max_ongoing_requests``). The replica queues them for its ``search_threads``; with Ray's own
      default (5), requests beyond it wait in Ray's router, which backs off and retries.
    """

    _nested: ClassVar[dict[str, type]] = {"search": SearchConfig}

    host: str = "127.0.0.1"
    port: int = 8080
    max_request_bytes: int = 65_536
    max_k: int = 1000
    default_k: int = 10
    max_query_chars: int = 4096
    max_query_terms: int = 1024
    max_rerank_depth: int = 1000
    rerank_depth: int | None = None
    search: SearchConfig = field(default_factory=SearchConfig)
    search_threads: int = 0
    encoder_threads: int = 1
    access_log: bool = False
    log_level: str = "warning"
    ray_app_name: str = "lsr"
    ray_replicas: int = 1
    ray_replica_cpus: float = 1.0
    ray_shards_per_actor: int = 1
    ray_max_ongoing_requests: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip():
            raise InputError(f"host must be a non-empty address, got {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise InputError(f"port must be an integer in [0, 65535], got {self.port!r}")
        _int_at_least("max_request_bytes", self.max_request_bytes, 64)
        _int_at_least("max_k", self.max_k, 1)
        _int_at_least("default_k", self.default_k, 1)
        if self.default_k > self.max_k:
            raise InputError(f"default_k ({self.default_k}) must not exceed max_k ({self.max_k})")
        _int_at_least("max_query_chars", self.max_query_chars, 1)
        _int_at_least("max_query_terms", self.max_query_terms, 1)
        _int_at_least("max_rerank_depth", self.max_rerank_depth, 1)
        if self.rerank_depth is not None:
            _int_at_least("rerank_depth", self.rerank_depth, 1)
            if self.rerank_depth > self.max_rerank_depth:
                raise InputError(f"rerank_depth ({self.rerank_depth}) must not exceed max_rerank_depth "
                                 f"({self.max_rerank_depth})")
        if not isinstance(self.search, SearchConfig):
            raise InputError("search must be a SearchConfig (or a mapping of its settings)")
        _int_at_least("search_threads", self.search_threads, 0)
        _int_at_least("encoder_threads", self.encoder_threads, 1)
        if not isinstance(self.access_log, bool):
            raise InputError(f"access_log must be true or false, got {self.access_log!r}")
        if self.log_level not in LOG_LEVELS:
            raise InputError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if not isinstance(self.ray_app_name, str) or not self.ray_app_name.strip():
            raise InputError(f"ray_app_name must be a non-empty name, got {self.ray_app_name!r}")
        _int_at_least("ray_replicas", self.ray_replicas, 1)
        _number_in("ray_replica_cpus", self.ray_replica_cpus, 0, float("inf"))
        _int_at_least("ray_shards_per_actor", self.ray_shards_per_actor, 1)
        _int_at_least("ray_max_ongoing_requests", self.ray_max_ongoing_requests, 1)

    def with_overrides(self, **overrides: Any) -> ServeConfig:
        """A copy with the given settings replaced (``None`` values are skipped), validated again."""
        d = self.to_dict()
        d.update({key: val for key, val in overrides.items() if val is not None})
        return type(self).from_dict(d)


__all__ = ["LOG_LEVELS", "ServeConfig"]
