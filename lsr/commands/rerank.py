"""``lsr rerank``: re-score a first-stage run with a reranker (maxsim, icr, sft); write a TREC run."""

from __future__ import annotations

import argparse
import sys

from .argtypes import positive_int

_EPILOG = """\
The reranker's settings come from, in increasing priority: its defaults, --config (a YAML file with
`reranker: NAME` and settings, or the name of a shipped preset, see --list), then --set KEY=VALUE and the
options given. Every candidate of the run is kept: the top --depth of each query are re-scored and re-ranked,
the rest follow in first-stage order with their scores shifted below the reranked ones.

Queries: TSV `qid<TAB>text`, JSONL {"id", "text"} (BEIR: "_id"), or irds:<id>.
Documents: an index built with --store-text, a corpus (BEIR corpus.jsonl, TSV `id<TAB>text`), or irds:<id>.

examples:
  lsr rerank --reranker sft --model Qwen/Qwen3-Reranker-0.6B --run run.trec --queries irds:beir/scifact/test \\
      --docs irds:beir/scifact --depth 20 -o reranked.trec
  lsr rerank --config icr-smollm2-135m --model models/smollm2 --set doc_words=100 \\
      --run run.trec --queries queries.tsv --docs my-index -o reranked.trec
  lsr rerank --list
"""


def register(sub: argparse._SubParsersAction) -> None:
    from lsr.rerank.base import available_rerankers

    p = sub.add_parser(
        "rerank", help="rerank a run with a ColBERT-style (maxsim), ICR or SFT reranker",
        description="Re-score the top candidates of a first-stage TREC run with a reranker and write the "
                    "reranked run (qid Q0 docid rank score tag).",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reranker", choices=available_rerankers(), help="which reranker (or name it in --config)")
    p.add_argument("--config", metavar="YAML|PRESET", help="reranker settings: a YAML file or a shipped preset name")
    p.add_argument("--model", metavar="PATH|HUB_ID", help="checkpoint: a local directory or a Hugging Face hub id")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="any setting of the reranker's config (VALUE read as YAML), repeatable")
    p.add_argument("--run", metavar="RUN", help="first-stage TREC run to rerank")
    p.add_argument("--queries", metavar="QUERIES", help="query texts: TSV, JSONL or irds:<id>")
    p.add_argument("--docs", metavar="SOURCE", help="document texts: an index with stored text, a corpus file "
                   "or irds:<id>")
    p.add_argument("--depth", type=positive_int, help="candidates re-scored per query (default: the config's, 100)")
    p.add_argument("-k", type=positive_int, help="hits per query written (default: all of the run's)")
    p.add_argument("--batch-size", type=positive_int, help="sequences per forward pass")
    p.add_argument("--device", help="torch device: cpu, cuda, cuda:N (default cpu)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="compute dtype (default float32)")
    p.add_argument("-o", "--output", help="reranked run file (default: standard output); written atomically")
    p.add_argument("--tag", default="lsr-rerank", help="run tag, the 6th column (default lsr-rerank)")
    st = p.add_argument_group("precomputed document vectors (maxsim)")
    st.add_argument("--embed-docs", metavar="DIR",
                    help="encode every document of --docs with the maxsim model into a memory-mapped store at DIR "
                         "and exit (no run needed); rerank with it by --set doc_embeddings=DIR")
    st.add_argument("--compression", choices=["none", "float16", "residual", "pq"], default="none",
                    help="store compression (faiss): residual = k-means centroids + scalar-quantised residuals "
                         "(ColBERTv2-style), pq = product quantisation (default none); the token error is in the "
                         "store's manifest")
    st.add_argument("--overwrite", action="store_true", help="replace an existing store at --embed-docs")
    p.add_argument("--list", action="store_true", help="list the rerankers and the shipped presets and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress line or bar on stderr")
    p.set_defaults(func=run)


def parse_settings(items: list[str]) -> dict:
    """``KEY=VALUE`` strings as a mapping, each VALUE read as YAML (``3`` is an int, ``null`` None);
    a number in exponent form without a dot (``1e-4``, a string to YAML 1.1) is read as a float."""
    import re

    import yaml

    from lsr.errors import InputError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            v = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            v = value
        if isinstance(v, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", v.strip()):
            v = float(v)
        out[key.strip()] = v
    return out


def config_from_args(args: argparse.Namespace):
    """``(name, RerankerConfig)`` the arguments describe."""
    from lsr.errors import InputError
    from lsr.rerank.base import reranker_config

    if args.config is None and args.reranker is None:
        raise InputError("name the reranker with --reranker {maxsim,icr,sft} or --config YAML|PRESET")
    spec = args.config if args.config is not None else {}
    overrides = parse_settings(args.settings)
    for key in ("model", "depth", "batch_size", "device", "dtype"):
        v = getattr(args, key)
        if v is not None:
            overrides[key] = v
    if args.config is None and "model" not in overrides:
        raise InputError("give --model PATH|HUB_ID (or a --config that names one)")
    return reranker_config(spec, args.reranker, **overrides)


def run(args: argparse.Namespace) -> int:
    from lsr.errors import InputError, LsrError
    from lsr.io import check_output_file
    from lsr.progress import quiet_libraries
    from lsr.rerank.base import available_presets, available_rerankers, reranker_class
    from lsr.rerank.pipeline import top_k
    from lsr.results import Results

    if args.list:
        print("rerankers: " + ", ".join(available_rerankers()))
        print("presets:   " + ", ".join(available_presets()))
        return 0
    if args.embed_docs:
        return _embed_docs(args)
    for opt in ("run", "queries"):
        if getattr(args, opt) is None:
            raise InputError(f"give --{opt}")
    name, config = config_from_args(args)
    if args.docs is None and not getattr(config, "doc_embeddings", None):
        raise InputError("give --docs (the documents' text)" + (" or --set doc_embeddings=DIR" if name == "maxsim"
                                                                  else ""))
    if args.output:
        check_output_file(args.output, "run file")
    run_ = Results.read_trec(args.run)
    if len(run_) == 0:
        raise InputError(f"{args.run}: the run is empty (no hits to rerank)")
    from lsr.rerank.sources import open_docs, query_texts

    queries = query_texts(args.queries)
    docs = open_docs(args.docs) if args.docs is not None else None
    import time

    with quiet_libraries():
        reranker = reranker_class(name)(config)
    t0 = time.perf_counter()
    out = reranker.rerank(queries, run_, docs, progress=not args.no_progress)
    elapsed = time.perf_counter() - t0
    if args.k is not None:
        out = top_k(out, args.k)
    if args.output:
        out.write_trec(args.output, tag=args.tag)
    else:
        try:
            out.write_trec(sys.stdout, tag=args.tag)
            sys.stdout.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise LsrError(f"cannot write the run to standard output ({e.strerror or e})") from None
    if not args.no_progress:
        nq = len(out.query_order())
        stats = ", ".join(f"{k} {v}" for k, v in reranker.stats.items())
        print(f"lsr rerank: {nq} queries, depth {config.depth}, {name} in {elapsed:.1f} s "
              f"({1000 * elapsed / max(nq, 1):.0f} ms/query)" + (f"; {stats}" if stats else "")
              + (f" -> {args.output}" if args.output else ""), file=sys.stderr)
    return 0


def _embed_docs(args: argparse.Namespace) -> int:
    """``--embed-docs DIR``: the maxsim model's document token vectors of every document of --docs."""
    from lsr.errors import InputError
    from lsr.progress import quiet_libraries
    from lsr.rerank.base import reranker_class
    from lsr.rerank.colbert_store import build_doc_embeddings
    from lsr.rerank.sources import iter_docs

    name, config = config_from_args(args)
    if name != "maxsim":
        raise InputError(f"--embed-docs stores MaxSim document vectors; the {name} reranker has none")
    if args.docs is None:
        raise InputError("give --docs (the documents to encode)")
    if args.run is not None:
        raise InputError("--embed-docs builds a store and reranks nothing: leave out --run")
    with quiet_libraries():
        reranker = reranker_class(name)(config)
    store = build_doc_embeddings(reranker, iter_docs(args.docs), args.embed_docs, args.compression,
                                 overwrite=args.overwrite, progress=not args.no_progress)
    print(f"lsr rerank: stored {len(store.doc_ids)} documents' token vectors ({args.compression}) -> "
          f"{args.embed_docs}; rerank with --set doc_embeddings={args.embed_docs}", file=sys.stderr)
    return 0
