"""``lsr serve --ray``: the app of :func:`lsr.serve.app.create_app` as a Ray Serve deployment.

Each replica opens the index itself (a path every node of the cluster can read) and builds the same
FastAPI app over its own searcher (``serve.ingress`` with ``__serve_build_asgi_app__``, evaluated in
the replica after its constructor). For a sharded index the replica's searcher is
:class:`lsr.distributed.search.RayShardedSearcher` (shard actors, scatter-gather); otherwise a plain
:class:`lsr.Searcher` inside the replica. Ray Serve's HTTP proxy listens on ``config.host:config.port``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from lsr.errors import InputError, LsrError

from .config import ServeConfig

DEPLOYMENT_NAME = "LsrSearch"


def _ray():
    try:
        import ray
        from ray import serve
    except ImportError:
        raise LsrError("lsr serve --ray needs Ray Serve: pip install 'lsr[distributed]'") from None
    return ray, serve


def deployment(serve: Any):
    """The Ray Serve deployment class (made here so that importing this module needs no Ray)."""

    class LsrSearch:
        """One replica: a searcher over the index, and the HTTP app of :func:`create_app` over it."""

        def __init__(self, index: str, config: dict, reranker: Any, reranker_settings: dict | None,
                     verify: bool) -> None:
            from lsr.serve.config import ServeConfig
            from lsr.serve.server import load_serve_reranker, open_searcher

            self.config = ServeConfig.from_dict(config)
            self.searcher = open_searcher(index, self.config, verify=verify, ray=True)
            self.reranker = load_serve_reranker(reranker, reranker_settings)
            if callable(getattr(self.searcher, "warmup", None)):
                self.searcher.warmup()

        def __serve_build_asgi_app__(self):
            from lsr.serve.app import create_app

            return create_app(self.searcher, self.reranker, self.config)

    return serve.deployment(serve.ingress()(LsrSearch), name=DEPLOYMENT_NAME)


def run_ray(index: Any, config: ServeConfig, reranker: Any, reranker_settings: dict | None, address: str,
            verify: bool, announce: Callable[[str], None] | None) -> None:
    """Deploy the app on Ray Serve (``address``: ``"local"`` or a cluster address), announce its URL,
    wait for SIGTERM/SIGINT, then delete the application (and shut down a Ray instance started here)."""
    from lsr.index import Index

    from .server import LOCAL_RAY, _StopSignals, _url

    if not isinstance(index, (str, os.PathLike)):
        raise InputError("lsr serve --ray takes the index as a directory path (each replica opens it)")
    if config.port == 0:
        raise InputError("lsr serve --ray needs a fixed port (Ray Serve's HTTP proxy), not 0")
    path = os.path.abspath(os.fspath(index))
    Index.open(path, verify=verify)   # a missing or damaged index is an error here, not in a replica
    ray, serve = _ray()
    started = not ray.is_initialized()
    if started and address != LOCAL_RAY:
        _check_reachable(address)
    if started:
        try:
            ray.init(address=None if address == LOCAL_RAY else address, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise LsrError(f"cannot start or join Ray at {address}: {first}") from None
    app_name = config.ray_app_name
    try:
        serve.start(http_options={"host": config.host, "port": config.port})
        dep = deployment(serve).options(num_replicas=config.ray_replicas,
                                        max_ongoing_requests=config.ray_max_ongoing_requests,
                                        ray_actor_options={"num_cpus": config.ray_replica_cpus})
        app = dep.bind(path, config.to_dict(), reranker, reranker_settings, False)
        try:
            serve.run(app, name=app_name, route_prefix="/", blocking=False)
        except Exception as e:   # noqa: BLE001  (a replica that failed to start: Ray's error, first line)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise LsrError(f"the Ray Serve deployment did not start: {first}") from None
        if announce is not None:
            announce(_url(config.host, config.port))
        with _StopSignals() as stops:
            while not stops.stop.wait(1.0):
                pass
    finally:
        try:
            serve.delete(app_name)
        except Exception as e:   # noqa: BLE001  (nothing deployed, or Ray already gone: said, not raised)
            print(f"lsr serve: could not delete the Ray Serve application {app_name!r}: "
                  f"{(str(e).strip().splitlines() or [type(e).__name__])[0]}", file=sys.stderr)
        if started:
            ray.shutdown()


def _check_reachable(address: str) -> None:
    """A ``HOST:PORT`` Ray address must accept a TCP connection within 5 s (Ray itself retries an
    unreachable one for minutes); other forms (``auto``, ``ray://...``) are left to Ray."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "/" in address:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise LsrError(f"cannot reach Ray at {address}: {e.strerror or e}") from None


__all__ = ["DEPLOYMENT_NAME", "deployment", "run_ray"]
