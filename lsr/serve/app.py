"""The HTTP JSON API: :func:`create_app` builds a FastAPI app over a searcher.

Endpoints (none writes anything; the index is opened read-only):

* ``POST /search``: ``{"query": "text" | {"term": weight, ...}, "k": 10, "rerank_depth": 100,
  "query_id": "q1"}`` (only ``query`` is required; ``rerank_depth`` only where the app reranks) ->
  ``{"query_id", "hits": [{"doc_id", "score", "rank"}], "took_ms", "complete"}``, plus ``"shards"``
  (``{"total", "answered", "missing"}``) for a searcher of a sharded index. If a shard did not answer,
  the status is 503 and the body carries the hits of the shards that did, ``"complete": false`` and
  an ``"error"`` line naming the missing shards.
* ``GET /health``: ``{"status": "ok"}`` while the server runs.
* ``GET /info``: the index manifest, as ``manifest.json`` holds it.

Text queries go through the searcher (:meth:`lsr.index.search.Searcher.search`), which encodes them
with the index's recorded query encoder. Errors are JSON ``{"error": "one line"}``: 400 for malformed
JSON and for queries lsr refuses (e.g. a text query on an index that records no encoder), 413 for a
body over :attr:`ServeConfig.max_request_bytes` (refused before it is parsed), 415 for a body not sent
as JSON, 422 for a body of the wrong shape or over a limit, 404/405 for unknown paths and methods, 500
(with the exception's first line) for a failure of the server itself. A search runs on a worker
thread, at most :attr:`ServeConfig.search_threads` at once, so it never blocks the event loop
(``/health`` answers meanwhile); each request searches on its own thread only.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from lsr.errors import InputError, LsrError

from .config import ServeConfig

SEARCH_FIELDS = ("query", "k", "rerank_depth", "query_id")
MAX_QUERY_ID_CHARS = 256


def _fastapi():
    try:
        import fastapi
    except ImportError:
        raise LsrError("lsr serve needs FastAPI and uvicorn: pip install 'lsr[serve]'") from None
    return fastapi


class _BadRequest(Exception):
    """A request the API refuses: an HTTP status and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _count(name: str, v: Any, limit: int) -> int:
    if not _is_int(v):
        raise _BadRequest(422, f"{name} must be an integer, got {json.dumps(v)}")
    if v < 1:
        raise _BadRequest(422, f"{name} must be a positive integer, got {v}")
    if v > limit:
        raise _BadRequest(422, f"{name} must be at most {limit} (this server's limit), got {v}")
    return v


def parse_search_request(body: Any, config: ServeConfig, reranks: bool) -> tuple[str, Any, int, int | None]:
    """``(query_id, query, k, rerank_depth)`` of a ``/search`` body, or :class:`_BadRequest` saying
    what is wrong with it (415: not JSON; 422: the wrong shape, types or values, or over a limit)."""
    from lsr.io import check_vector

    if isinstance(body, (bytes, bytearray)):
        raise _BadRequest(415, "the request body must be JSON, sent with Content-Type: application/json")
    if not isinstance(body, dict):
        got = "nothing" if body is None else f"a JSON {type(body).__name__}"
        raise _BadRequest(422, f'the request body must be a JSON object with a "query", got {got}')
    unknown = [key for key in body if key not in SEARCH_FIELDS]
    if unknown:
        raise _BadRequest(422, f"unknown field(s) {', '.join(map(repr, unknown))} (known: {', '.join(SEARCH_FIELDS)})")
    if "query" not in body:
        raise _BadRequest(422, 'the field "query" is required: a text string or a {"term": weight} object')
    query = body["query"]
    if isinstance(query, str):
        if len(query) > config.max_query_chars:
            raise _BadRequest(422, f"the query text has {len(query)} characters, more than this server's limit "
                                   f"of {config.max_query_chars}")
    elif isinstance(query, dict):
        if len(query) > config.max_query_terms:
            raise _BadRequest(422, f"the query has {len(query)} terms, more than this server's limit of "
                                   f"{config.max_query_terms}")
        for term, w in query.items():
            if len(term) > config.max_query_chars:
                raise _BadRequest(422, f"a query term has {len(term)} characters, more than this server's limit "
                                       f"of {config.max_query_chars}")
            if isinstance(w, bool) or not isinstance(w, (int, float)):
                raise _BadRequest(422, f"the weight of query term {term!r} must be a number, got {json.dumps(w)}")
        try:
            query = check_vector(query, "query")
        except InputError as e:
            raise _BadRequest(422, str(e)) from None
    else:
        raise _BadRequest(422, f'"query" must be a text string or a {{"term": weight}} object, '
                               f"got {json.dumps(query)[:80]}")
    k = _count("k", body["k"], config.max_k) if "k" in body else config.default_k
    depth = None
    if "rerank_depth" in body:
        if not reranks:
            raise _BadRequest(422, '"rerank_depth" is only taken by a server that reranks (lsr serve --rerank)')
        depth = _count("rerank_depth", body["rerank_depth"], config.max_rerank_depth)
    qid = body.get("query_id", "0")
    if not isinstance(qid, str) or not qid or len(qid) > MAX_QUERY_ID_CHARS:
        raise _BadRequest(422, f'"query_id" must be a non-empty string of at most {MAX_QUERY_ID_CHARS} characters, '
                               f"got {json.dumps(qid)[:80]}")
    return qid, query, k, depth


def _jsonable(v: Any) -> Any:
    """Shard names, counts and lists of them as plain JSON values."""
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_jsonable(x) for x in (sorted(v) if isinstance(v, (set, frozenset)) else v)]
    return v


def shard_status_dict(status: Any) -> dict:
    """The JSON form of a ``ShardStatus`` (``total``, ``answered``, ``missing``)."""
    return {"total": _jsonable(status.total), "answered": _jsonable(status.answered),
            "missing": _jsonable(status.missing)}


def _shards_missing(status: Any) -> bool:
    complete = getattr(status, "complete", None)
    if complete is not None:
        return not complete
    missing = status.missing
    return bool(missing) if not _is_int(missing) else missing > 0


class _StatusSearcher:
    """A sharded searcher seen as a plain one by :class:`lsr.rerank.Pipeline`: its ``search_batch``
    calls ``search_batch_with_status`` and keeps the shard status of the call. One per request."""

    def __init__(self, searcher: Any):
        self._searcher = searcher
        self.index = searcher.index
        self.config = searcher.config
        self.status = None

    def search_batch(self, queries, k=None):
        results, self.status = self._searcher.search_batch_with_status(queries, k)
        return results


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _hits(results) -> list[dict]:
    return [{"doc_id": d, "score": s, "rank": r}
            for d, s, r in zip(results.doc_ids, results.scores.tolist(), results.ranks.tolist())]


def create_app(searcher: Any, reranker: Any = None, config: ServeConfig | None = None):
    """A FastAPI app serving ``searcher`` (an :class:`lsr.Searcher`, or a searcher of a sharded index
    with ``search_batch_with_status``) over HTTP, reranking with ``reranker`` (an
    :class:`lsr.Reranker`) when one is given, under the limits of ``config``. See the module
    docstring for the endpoints. The searcher's index is not modified by any endpoint."""
    fastapi = _fastapi()
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    config = ServeConfig() if config is None else config
    if not isinstance(config, ServeConfig):
        raise InputError(f"config must be a ServeConfig, not {type(config).__name__}")
    sharded = callable(getattr(searcher, "search_batch_with_status", None))
    manifest = getattr(searcher, "manifest", None)
    if manifest is None:
        manifest = searcher.index.manifest
    info_body = json.dumps(manifest, ensure_ascii=False).encode("utf-8")   # a snapshot: /info cannot change it
    docs = None
    default_depth = None
    if reranker is not None:
        from lsr.rerank import Pipeline, Reranker

        if not isinstance(reranker, Reranker):
            raise InputError(f"reranker must be an lsr Reranker, not {type(reranker).__name__}")
        base = Pipeline(searcher, reranker, depth=config.rerank_depth)   # checks the depth, opens the docs
        docs, default_depth = base.docs, base.depth
        if default_depth > config.max_rerank_depth:
            raise InputError(f"the rerank depth {default_depth} exceeds max_rerank_depth ({config.max_rerank_depth})")

    too_large = f"the request body is larger than this server's limit of {config.max_request_bytes} bytes"

    class _App(fastapi.FastAPI):
        """FastAPI with a JSON 413 for a declared Content-Length over the limit, answered before the
        body is read; a body without one is cut off by FastAPI's own limit (``max_body_size``) as it is
        read, and its 413 goes through the handler below."""

        def build_middleware_stack(self):
            inner = super().build_middleware_stack()

            async def guard(scope, receive, send):
                if scope["type"] == "http":
                    declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
                    if declared.isdigit() and int(declared) > config.max_request_bytes:
                        await JSONResponse({"error": too_large}, status_code=413)(scope, receive, send)
                        return
                await inner(scope, receive, send)

            return guard

    app = _App(title="lsr", description="Learned sparse retrieval: search an lsr index over HTTP.",
               max_body_size=config.max_request_bytes)
    app.state.lsr_config = config

    def error(status: int, message: str, **extra) -> JSONResponse:
        return JSONResponse({"error": " ".join(message.split()), **extra}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc):
        errs = exc.errors()
        bad = next((e for e in errs if e.get("type") == "json_invalid"), None)
        if bad is not None:
            return error(400, f"malformed JSON: {(bad.get('ctx') or {}).get('error', bad.get('msg'))} "
                              f"at character {bad['loc'][-1]}")
        first = errs[0] if errs else {}
        if first.get("type") == "missing" and tuple(first.get("loc", ())) == ("body",):
            return error(422, "the request body must be a JSON object with a \"query\"")
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return error(422, f"{where + ': ' if where else ''}{first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc):
        if exc.status_code == 413:
            return error(413, too_large)
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(_BadRequest)
    async def _bad(request, exc):
        return error(exc.status, exc.message)

    @app.exception_handler(LsrError)
    async def _lsr(request, exc):
        status = getattr(exc, "status", None)
        if status is not None and hasattr(status, "missing"):   # ShardsUnavailable: no hits, shards named
            return error(503, str(exc), complete=False, shards=shard_status_dict(status))
        return error(400, str(exc))

    @app.exception_handler(Exception)
    async def _internal(request, exc):   # answered as JSON; the traceback goes to the server's log
        first = (str(exc).strip().splitlines() or [""])[0]
        return error(500, f"internal error: {type(exc).__name__}{': ' + first if first else ''}")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/info")
    def info() -> Response:
        return Response(info_body, media_type="application/json")

    import anyio

    limiter = anyio.CapacityLimiter(config.search_threads or _usable_cpus())

    @app.post("/search")
    async def search(body: Any = fastapi.Body(None)) -> Response:   # noqa: B008  (FastAPI's way to take the body)
        # the search runs on a worker thread (the event loop keeps answering), at most search_threads at once
        return await anyio.to_thread.run_sync(answer, body, limiter=limiter)

    def answer(body: Any) -> Response:
        qid, query, k, depth = parse_search_request(body, config, reranker is not None)
        t0 = time.perf_counter()
        status = None
        if reranker is not None:
            from lsr.rerank import Pipeline

            first = _StatusSearcher(searcher) if sharded else searcher
            pipeline = Pipeline(first, reranker, depth=depth or default_depth, docs=docs)
            results = pipeline.search_batch([(qid, query)], k=k)
            status = first.status if sharded else None
        elif sharded:
            results, status = searcher.search_batch_with_status([(qid, query)], k)
        else:
            results = searcher.search(query, k=k, query_id=qid)
        took = (time.perf_counter() - t0) * 1000
        out = {"query_id": qid, "hits": _hits(results), "took_ms": round(took, 3), "complete": True}
        if status is None:
            return JSONResponse(out)
        out["shards"] = shard_status_dict(status)
        if _shards_missing(status):
            out["complete"] = False
            missing = out["shards"]["missing"]
            named = ", ".join(map(str, missing)) if isinstance(missing, list) else f"{missing}"
            return JSONResponse({"error": f"not every shard answered (missing: {named}); the hits are the top k "
                                          "of the shards that did", **out}, status_code=503)
        return JSONResponse(out)

    return app


__all__ = ["create_app", "parse_search_request", "shard_status_dict"]
