"""``lsr serve``: search an index over HTTP (FastAPI on uvicorn, or Ray Serve with ``--ray``)."""

from __future__ import annotations

import argparse
import sys

from .argtypes import positive_int

_EPILOG = """\
API (JSON; see docs/serve.md):
  POST /search  {"query": "text" | {"term": weight, ...}, "k": 10, "query_id": "q1", "rerank_depth": 100}
                -> {"query_id", "hits": [{"doc_id", "score", "rank"}], "took_ms", "complete"}
  GET  /health  -> {"status": "ok"}
  GET  /info    -> the index manifest
Errors are {"error": "one line"} with 400 (malformed JSON, a query lsr refuses), 413 (body too large),
415 (not JSON) or 422 (wrong fields or types, k / query length over the limits).

examples:
  lsr serve -i my-index
  curl -s localhost:8080/search -H 'Content-Type: application/json' -d '{"query": "what is sparse retrieval", "k": 5}'
  lsr serve -i my-index --rerank sft-qwen3-reranker-0.6b --config serve.yaml
  lsr serve -i my-sharded-index --ray            # Ray Serve on a local Ray instance
  lsr serve -i /shared/my-index --ray auto       # ... on a running Ray cluster
"""


def _port(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number in [0, 65535], got {s!r}") from None
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in [0, 65535], got {s!r}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="search an index over HTTP (a JSON API; FastAPI, or Ray Serve with --ray)",
        description="Serve an index over HTTP until SIGTERM or Ctrl-C: POST /search, GET /health, GET /info. "
                    "Nothing is written to the index. Binds to 127.0.0.1 (this machine only) unless --host says "
                    "otherwise.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--index", required=True,
                   help="index directory (sharded or not), or a Hugging Face hub dataset id owner/name (lsr[hub])")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes the server to the "
                                  "network, which has no authentication)")
    p.add_argument("--port", type=_port, help="TCP port (default 8080; 0 = a free one, printed at start)")
    p.add_argument("--config", metavar="YAML", help="server settings (ServeConfig: host, port, max_request_bytes, "
                        "max_k, default_k, max_query_chars, max_query_terms, max_rerank_depth, rerank_depth, "
                        "encoder_threads, access_log, log_level, ray_*; and a `search:` mapping of SearchConfig "
                        "settings); command-line options override it")
    p.add_argument("--max-k", type=positive_int, help="largest k a request may ask for (default 1000)")
    rr = p.add_argument_group("reranking (text queries)")
    rr.add_argument("--rerank", metavar="YAML|PRESET",
                    help="rerank each query's top candidates with this reranker config (a YAML file with "
                         "`reranker: maxsim|icr|sft` and its settings, or a shipped preset: lsr rerank --list); "
                         "documents' text from the index's docstore")
    rr.add_argument("--rerank-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting of the reranker config (VALUE read as YAML), repeatable")
    rr.add_argument("--depth", type=positive_int, help="candidates reranked per query when a request gives no "
                         "rerank_depth (default: the reranker config's depth)")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="deploy the app on Ray Serve instead (the distributed extra): without ADDRESS on a Ray "
                        "instance on this machine, else on the cluster at ADDRESS (e.g. auto); a sharded index "
                        "is searched by shard actors")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the SHA-256 check of the index files on open (sizes and structure are still checked)")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from lsr.serve.config import ServeConfig

    base = ServeConfig.from_yaml(args.config) if args.config else ServeConfig()
    return base.with_overrides(host=args.host, port=args.port, max_k=args.max_k, rerank_depth=args.depth)


def run(args: argparse.Namespace) -> int:
    from lsr.errors import InputError
    from lsr.serve import run as serve

    from .rerank import parse_settings

    config = config_from_args(args)
    if not args.rerank and (args.rerank_set or args.depth is not None):
        raise InputError("--rerank-set and --depth go with --rerank")

    def announce(url: str) -> None:
        where = "Ray Serve" if args.ray else "uvicorn"
        print(f"lsr serve: {args.index} on {url} ({where}; POST /search, GET /health, GET /info; "
              "stop with Ctrl-C or SIGTERM)", file=sys.stderr, flush=True)

    serve(args.index, config, reranker=args.rerank, reranker_settings=parse_settings(args.rerank_set),
          ray_address=args.ray, verify=not args.no_verify, announce=announce)
    print("lsr serve: stopped", file=sys.stderr)
    return 0
