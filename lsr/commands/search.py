"""``lsr search``: exact top-k search, written as a TREC run."""

from __future__ import annotations

import argparse
import sys

from lsr.config import ALGORITHMS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", help="search an index with a query file; write a TREC run",
        description="Exact top-k search. Queries: JSONL {\"id\": ..., \"vector\": {term: weight}} (or "
                    "\"text\" for indexes built from `lsr encode` output), or TSV lines `qid<TAB>term:weight ...` "
                    "(a bare term counts 1 per occurrence) or `qid<TAB>text`. Output: a TREC run "
                    "`qid Q0 docid rank score tag`; equal scores are ranked by collection order. An empty query "
                    "(`qid<TAB>` alone, an empty text, a {} vector) gets no hits and a warning; the others "
                    "are searched.",
    )
    p.add_argument("-i", "--index", required=True,
                   help="index directory, or a Hugging Face hub dataset id owner/name (lsr[hub])")
    p.add_argument("-q", "--queries", required=True, help="query file (.jsonl, .jsonl.gz, .tsv)")
    p.add_argument("-o", "--output", help="run file to write (default: standard output); its directory "
                        "must exist and be writable (checked before the search); written to a temporary "
                        "file beside it and renamed, so a failed write leaves no partial file")
    p.add_argument("-k", type=int, help="hits per query (default 10)")
    p.add_argument("--threads", type=int, help="threads for the batch (default 0 = all cores)")
    p.add_argument("--query-format", choices=["auto", "vector", "text"], default="auto",
                   help="how to read TSV queries: auto (a line with a term:NUMBER token is a vector "
                        "query, and then every term:X token must have a number X, else an error naming "
                        "the line; a line without one is text), vector (every line a bag of terms: bare "
                        "terms weigh 1, term:X needs a number X), or text (every line is text, whatever "
                        "it holds) (default auto)")
    p.add_argument("--query-scale", type=float,
                   help="integer indexes: float query weights become round(w * scale) (default 100); "
                        "integer weights are used as they are")
    p.add_argument("--algorithm", choices=list(ALGORITHMS),
                   help="query processor (all return the same top k): auto (default; per query, where the "
                        "doc ids show locality, the block-max traversal for k <= max_k (20 from 300,000 documents on, "
                        "less on smaller collections), else exhaustive; the planner's settings: the `planner:` "
                        "section of a --config file, PlannerConfig), exhaustive "
                        "(term-at-a-time, the reference), blockmax (doc-range block-max traversal), filtered "
                        "(high-impact terms in full, the others only in range blocks that can reach the top k; "
                        "integer impacts), "
                        "document-at-a-time MaxScore, block-max MaxScore (bmm), WAND, Block-Max WAND (bmw), or "
                        "approx (approximate: the block-max traversal with the knobs below; exact scores, the "
                        "top k approximate; at its defaults exact)")
    ap = p.add_argument_group("approximate search (--algorithm approx; ApproxConfig, the `approx:` section of "
                              "--config; defaults: the package's configs/search/approx.yaml, all exact)")
    ap.add_argument("--alpha", type=float, help="score a range block only while alpha x its bound beats the k-th "
                         "score so far; in (0, 1], 1 = exact (default 1)")
    ap.add_argument("--query-cut", type=int, help="only the N query terms with the largest weight x term maximum "
                         "drive the search; the others are added to the hits' scores (default: all)")
    ap.add_argument("--query-mass", type=float, help="only the fewest query terms whose bounds reach this share of "
                         "the query's total bound drive the search; in (0, 1] (default 1 = all)")
    ap.add_argument("--max-blocks", type=int, help="stop after scoring N range blocks (default: no limit)")
    p.add_argument("--config", help="YAML file with search settings (keys of SearchConfig: algorithm, k, threads, "
                        "query_scale, dense_df, dense_mb, an `approx:` mapping of ApproxConfig keys, and a "
                        "`planner:` mapping of PlannerConfig keys, whose defaults are the package's "
                        "configs/search/planner.yaml); command-line options override it")
    p.add_argument("--query-encoder", metavar="SPEC",
                   help="encode text queries with this encoder instead of the one the index records: e.g. the "
                        "`lsr onnx export` directory of the index's model (checked: the same tokenizer and, where "
                        "both are known, the same weights)")
    p.add_argument("--tag", default="lsr", help="run tag, the 6th column (default lsr)")
    rr = p.add_argument_group("reranking (a second stage; text queries)")
    rr.add_argument("--rerank", metavar="YAML|PRESET",
                    help="rerank each query's top --depth hits with this reranker config (a YAML file with "
                         "`reranker: maxsim|icr|sft` and its settings, or a shipped preset: lsr rerank --list); "
                         "the run then holds the top k after reranking")
    rr.add_argument("--rerank-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting of the reranker config (VALUE read as YAML), repeatable")
    rr.add_argument("--depth", type=int, help="first-stage candidates reranked per query (default: the "
                         "reranker config's depth)")
    rr.add_argument("--docs", metavar="SOURCE", help="document texts for the reranker (default: the index's "
                         "stored text); a corpus file or irds:<id>")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the SHA-256 check of the index files on open (sizes and structure are "
                        "still checked)")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from lsr.config import SearchConfig
    from lsr.errors import InputError

    base = SearchConfig.from_yaml(args.config) if args.config else SearchConfig()
    d = base.to_dict()
    for key, val in (("k", args.k), ("threads", args.threads), ("query_scale", args.query_scale),
                     ("algorithm", args.algorithm)):
        if val is not None:
            d[key] = val
    knobs = {key: val for key, val in (("alpha", args.alpha), ("query_cut", args.query_cut),
                                       ("query_mass", args.query_mass), ("max_blocks", args.max_blocks))
             if val is not None}
    if knobs:
        if d["algorithm"] != "approx":
            flags = ", ".join("--" + key.replace("_", "-") for key in knobs)
            raise InputError(f"{flags} go{'es' if len(knobs) == 1 else ''} with --algorithm approx "
                             f"(the algorithm is {d['algorithm']})")
        d["approx"] = {**d["approx"], **knobs}
    return SearchConfig.from_dict(d)


def run(args: argparse.Namespace) -> int:
    from lsr.errors import InputError, LsrError
    from lsr.index import Index, Searcher
    from lsr.io import check_output_file, read_queries

    config = config_from_args(args)
    if args.output:
        check_output_file(args.output, "run file")   # before any work: a long search must not end in this
    index = Index.from_pretrained(args.index, verify=not args.no_verify)
    queries = read_queries(args.queries, args.query_format)
    if not queries:
        raise InputError(f"{args.queries}: no queries")
    searcher = Searcher(index, config, query_encoder=args.query_encoder)
    if args.rerank:
        results = _search_and_rerank(args, searcher, queries, config.k)
    else:
        if args.depth is not None or args.docs is not None or args.rerank_set:
            raise InputError("--depth, --docs and --rerank-set go with --rerank")
        results = searcher.search_batch(queries)
    if args.output:
        results.write_trec(args.output, tag=args.tag)
        n_q = len(set(results.query_ids))
        print(f"searched {len(queries)} queries ({n_q} with hits), k={config.k} -> {args.output}",
              file=sys.stderr)
    else:
        try:
            results.write_trec(sys.stdout, tag=args.tag)
            sys.stdout.flush()
        except BrokenPipeError:
            raise   # the reader went away (`| head`): the CLI ends quietly
        except OSError as e:
            raise LsrError(f"cannot write the run to standard output ({e.strerror or e})") from None
    return 0


def _search_and_rerank(args: argparse.Namespace, searcher, queries, k: int):
    from lsr.errors import InputError
    from lsr.progress import quiet_libraries
    from lsr.rerank import Pipeline, load_reranker

    from .rerank import parse_settings

    missing = [q.id for q in queries if q.text is None]
    if missing:
        raise InputError(f"--rerank needs text queries; query {missing[0]!r} is term weights")
    with quiet_libraries():
        reranker = load_reranker(args.rerank, **parse_settings(args.rerank_set))
    pipeline = Pipeline(searcher, reranker, depth=args.depth, docs=args.docs)
    results = pipeline.search_batch(queries, k=k)
    t = pipeline.last_timings
    print(f"lsr search: retrieval {t['retrieval_s']:.2f} s, reranking ({reranker.name}, depth "
          f"{pipeline.depth}) {t['rerank_s']:.2f} s", file=sys.stderr)
    return results
