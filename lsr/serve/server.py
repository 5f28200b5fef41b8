"""Running the HTTP API: :func:`run` serves an index with uvicorn on one machine, or deploys the same
FastAPI app (:func:`lsr.serve.app.create_app`) as a Ray Serve application (``ray_address``).

Either way the server stops gracefully on SIGTERM or SIGINT: requests in flight are answered, then it
exits (a Ray Serve application is deleted; a Ray instance that :func:`run` started is shut down).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

from lsr.errors import InputError, LsrError

from .config import ServeConfig

LOCAL_RAY = "local"
"""``ray_address`` value that starts (or joins, as ``ray.init()`` does) a Ray instance on this machine."""


def open_searcher(index: Any, config: ServeConfig, verify: bool = True, ray: bool = False):
    """The searcher a server answers with: an :class:`lsr.Searcher` of ``index`` (a directory, a hub
    id or an opened index; a sharded index gets :class:`lsr.index.sharded.ShardedSearcher`) under
    ``config.search`` with one thread per call, text queries encoded by the index's recorded query
    encoder with ``config.encoder_threads`` torch threads. With ``ray``, a sharded index is searched
    by shard actors instead (:class:`lsr.distributed.search.RayShardedSearcher`)."""
    from lsr.index import Index, Searcher

    search = config.search.with_overrides(threads=1)
    if ray and isinstance(index, (str, os.PathLike)):
        from lsr.index.sharded import is_sharded, read_sharded_manifest

        if is_sharded(index):
            from lsr.distributed.search import RayShardedSearcher, ShardActorsConfig

            path = os.path.abspath(os.fspath(index))
            info = read_sharded_manifest(path).get("encoder")
            return RayShardedSearcher(path, search, actors=ShardActorsConfig(
                                          shards_per_actor=config.ray_shards_per_actor, verify=verify),
                                      query_encoder=_query_encoder(info, config), verify=verify)
    ix = Index.from_pretrained(index, verify=verify) if isinstance(index, (str, os.PathLike)) else index
    return Searcher(ix, search, query_encoder=_query_encoder(ix.encoder, config))


def _query_encoder(info: dict | None, config: ServeConfig):
    """The recorded query encoder ``info`` describes, running ``config.encoder_threads`` torch threads
    per call (None without one)."""
    if not info:
        return None
    from lsr.encoders import load_query_encoder

    return load_query_encoder(info, threads=config.encoder_threads)


def load_serve_reranker(spec: Any, settings: dict | None = None):
    """A reranker from a config spec (a YAML file or a shipped preset, as ``lsr search --rerank``
    takes) with ``settings`` overriding it; a loaded :class:`lsr.Reranker` is used as it is."""
    from lsr.rerank import Reranker, load_reranker

    if spec is None:
        if settings:
            raise InputError("reranker settings go with a reranker (--rerank)")
        return None
    if isinstance(spec, Reranker):
        return spec
    from lsr.progress import quiet_libraries

    with quiet_libraries():
        return load_reranker(spec, **(settings or {}))


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one), or a one-line error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise InputError(f"cannot listen on {host}:{port}: unknown host ({e.strerror})") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _StopSignals:
    """SIGTERM and SIGINT set :attr:`stop` while the block runs (main thread only); the previous
    handlers are put back after it."""

    def __init__(self):
        self.stop = threading.Event()
        self._old: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, lambda *_: self.stop.set())
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def run(index: Any, config: ServeConfig | None = None, reranker: Any = None, reranker_settings: dict | None = None,
        ray_address: str | None = None, verify: bool = True, announce: Callable[[str], None] | None = None) -> None:
    """Serve ``index`` over HTTP until SIGTERM or SIGINT (see :mod:`lsr.serve.app` for the API).

    ``reranker``: a reranker config spec or a loaded reranker, applied to each query's top
    candidates (``reranker_settings`` override the spec's). ``ray_address``: deploy the app on Ray
    Serve instead of running uvicorn here (``"local"``: a Ray instance on this machine, started by
    ``ray.init()``; else the address of a running cluster). ``announce`` is called with the URL
    once the server is about to accept requests.
    """
    config = ServeConfig() if config is None else config
    if not isinstance(config, ServeConfig):
        raise InputError(f"config must be a ServeConfig, not {type(config).__name__}")
    if ray_address is not None:
        from .ray_app import run_ray

        return run_ray(index, config, reranker, reranker_settings, ray_address, verify, announce)
    from .app import _fastapi, create_app

    _fastapi()
    try:
        import uvicorn
    except ImportError:
        raise LsrError("lsr serve needs FastAPI and uvicorn: pip install 'lsr[serve]'") from None
    searcher = open_searcher(index, config, verify)
    rr = load_serve_reranker(reranker, reranker_settings)
    app = create_app(searcher, rr, config)
    if callable(getattr(searcher, "warmup", None)):
        searcher.warmup()   # compile the kernels (cached on disk) before the first request waits on it
    sock = bind_socket(config.host, config.port)
    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(uvicorn.Config(app, log_level=config.log_level, access_log=config.access_log,
                                           timeout_graceful_shutdown=30, lifespan="off"))
    if announce is not None:
        announce(_url(host, port))
    with _StopSignals() as stops:
        # uvicorn captures SIGTERM/SIGINT itself, finishes the requests in flight, then raises the signal
        # again; the handlers installed here take that second delivery, so the call returns normally
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()
    del stops


__all__ = ["LOCAL_RAY", "bind_socket", "load_serve_reranker", "open_searcher", "run"]
