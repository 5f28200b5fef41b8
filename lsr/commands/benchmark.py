"""``lsr benchmark``: encode (cached), index, search, evaluate and time lsr itself in one command.

The command only turns its arguments into a
:class:`lsr.eval.benchmark.BenchmarkConfig` (on top of a registry entry or a
YAML file, when given) and calls :func:`lsr.eval.benchmark.run_benchmark`
with no baselines. A source checkout's ``python -m benchmarks.pipeline``
takes the same options plus ``--baselines`` (BM25, PISA) and reuses
:func:`register` and :func:`config_from_args`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import InputError
from .argtypes import nonneg_int, positive_int
from .index import quantization_from_args

_EPILOG = """\
Settings come from, in increasing priority: the defaults, --registry NAME (an entry shipped with lsr, see
--list-registry, or a path to such a YAML file) or --config FILE (keys of BenchmarkConfig), then the options
given.

Writes into --output: run.trec, queries.jsonl.gz (encoded queries), index/, results.json (git commit,
configuration, machine facts, every figure) and latency-vs-effectiveness.png, latency-distribution.png;
with --rerank also run.rerank.trec (the reranked run).
Encoded documents are cached in --cache-dir, keyed by dataset and encoder: a second run encodes nothing.

Baselines: none. lsr benchmark measures lsr itself and prints "baselines run: none" with the command that
adds BM25 (pyserini) and PISA (same impacts) from a source checkout, e.g.
  python -m benchmarks.pipeline --dataset beir/scifact/test --encoder splade-tiny --baselines bm25,pisa
A registry entry that names baselines runs here without them (the report says which were not run); one
with no encoder (BM25 only) is refused with that command.

Latency is measured on one thread, one query at a time, over every query (after a warm-up); QPS with
--threads threads over the whole batch. On a shared machine the timings are indicative only.

examples:
  lsr benchmark --dataset beir/scifact/test --encoder splade-tiny
  lsr benchmark -d msmarco-passage/trec-dl-2019/judged -e splade-tiny -o bench/dl19
  lsr benchmark --registry splade-tiny-scifact
  lsr benchmark --registry splade-tiny-scifact --model-path models/splade-tiny   # a local copy, no network
  lsr benchmark -d beir/scifact/test -e splade-tiny --rerank icr-smollm2-135m-instruct --rerank-depth 20
  lsr benchmark --list-registry
"""


def register(subparsers) -> None:
    from lsr.config import ALGORITHMS

    p = subparsers.add_parser(
        "benchmark", help="encode, index, search, evaluate and time lsr on a dataset in one command",
        description="Benchmark an encoder (or a pre-encoded collection) on a dataset: encode what is not cached, "
                    "build the index, search every query, evaluate (ir-measures), time query encoding, retrieval "
                    "and both (1 thread) and queries/s (all threads). Prints one table; saves runs, results.json "
                    "and plots. Runs no baselines (see below for BM25 and PISA).",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("what to benchmark")
    src.add_argument("--dataset", "-d", metavar="SPEC",
                     help="ir_datasets id (e.g. beir/scifact/test, msmarco-passage/trec-dl-2019/judged) or a "
                          "BEIR/flat directory; must have documents, queries and qrels")
    src.add_argument("--encoder", "-e", metavar="SPEC",
                     help="encoder: registered name (lsr encode --list), YAML preset, checkpoint directory or hub id")
    src.add_argument("--model-path", metavar="DIR",
                     help="local checkpoint directory that replaces the encoder's model (e.g. a downloaded copy of "
                          "a preset's hub model, to run without network)")
    src.add_argument("--vectors", metavar="DIR",
                     help="pre-encoded vector collection (lsr encode output, or JsonVectorCollection files) "
                          "instead of encoding; queries use --encoder, else the collection's encoder.json")
    src.add_argument("--registry", "-r", metavar="NAME",
                     help="start from a reproducibility registry entry (a name of --list-registry, or a YAML path)")
    src.add_argument("--config", metavar="FILE", help="start from a YAML file of BenchmarkConfig settings")
    src.add_argument("--list-registry", action="store_true",
                     help="list the registry entries shipped with lsr and exit")

    io = p.add_argument_group("output")
    io.add_argument("--output", "-o", metavar="DIR",
                    help="output directory (default benchmark-runs/<registry name or dataset>)")
    io.add_argument("--cache-dir", metavar="DIR",
                    help="encoded-document cache (default $XDG_CACHE_HOME/lsr/benchmark, ~/.cache/lsr/benchmark)")
    io.add_argument("--no-plots", dest="plots", action="store_const", const=False, help="do not draw the plots")
    io.add_argument("--json", action="store_true", help="print results.json instead of the table")
    io.add_argument("--no-progress", action="store_true", help="no progress messages or bars on stderr")

    se = p.add_argument_group("search and evaluation")
    se.add_argument("-k", type=positive_int, metavar="K", help="hits per query in the runs (default 1000)")
    se.add_argument("--latency-k", type=positive_int, metavar="K",
                    help="hits per query when timing latency and QPS (default: -k)")
    se.add_argument("--latency-queries", type=positive_int, metavar="N",
                    help="time only the first N queries one at a time (default: all; QPS always uses all)")
    se.add_argument("--metrics", "-m", action="append", metavar="M[,M...]",
                    help="ir-measures names, repeatable (default: the dataset family's: RR@10,R@1000 for MS MARCO "
                         "dev; nDCG@10,R(rel=2)@1000 for TREC DL; nDCG@10,R@100,R@1000 for BEIR)")
    se.add_argument("--algorithms", metavar="A[,A...]",
                    help=f"lsr query processors to time, the run comes from the first; of {', '.join(ALGORITHMS)} "
                         "(default auto,exhaustive,bmw)")
    se.add_argument("--threads", type=nonneg_int, metavar="N", help="threads for QPS (default 0 = all cores)")
    se.add_argument("--query-scale", type=float, metavar="S",
                    help="integer indexes: query weights become round(w * S) (default 100)")
    se.add_argument("--repeats", type=positive_int, metavar="N", help="QPS batch repetitions, median (default 3)")
    se.add_argument("--latency-rounds", type=positive_int, metavar="N",
                    help="passes of the latency timing: per query every system runs in a shuffled order, and a "
                         "query's time is the median over the passes (default 3)")

    rr = p.add_argument_group("reranking (a second stage after lsr's first)")
    rr.add_argument("--rerank", metavar="YAML|PRESET",
                    help="rerank lsr's run with this reranker config (a YAML file with `reranker: maxsim|icr|sft`, "
                         "or a preset of lsr rerank --list); reports its latency apart from retrieval and query "
                         "encoding, and effectiveness before and after")
    rr.add_argument("--rerank-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting of the reranker config (VALUE read as YAML), repeatable")
    rr.add_argument("--rerank-depth", type=positive_int, metavar="N", help="candidates reranked per query "
                         "(default: the config's)")
    rr.add_argument("--rerank-queries", type=positive_int, metavar="N",
                    help="rerank only the first N queries (before/after effectiveness on those N)")

    ix = p.add_argument_group("index")
    ix.add_argument("--quantization", choices=["auto", "max", "fixed", "float"],
                    help="document weight quantisation (default auto: 8-bit max scaling for float weights)")
    ix.add_argument("--bits", type=int, choices=[8, 16], help="impact bits (default 8)")
    ix.add_argument("--scale", type=float, help="scale for --quantization fixed")
    ix.add_argument("--block-size", type=int, help="postings per block for block maxima (default 64)")

    en = p.add_argument_group("document encoding")
    en.add_argument("--max-docs", type=positive_int, metavar="N",
                    help="only the first N documents (for smoke tests: figures are not comparable)")
    en.add_argument("--batch-size", type=positive_int, metavar="N", help="documents per batch (default 32)")
    en.add_argument("--device", help="cpu, cuda, cuda:N or mps (default cpu)")
    en.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="compute dtype (default float32)")
    en.add_argument("--encode-threads", type=positive_int, metavar="N", help="torch threads (default: torch's)")

    p.set_defaults(func=run, prog_name="lsr benchmark")


_DIRECT = ("dataset", "encoder", "model_path", "vectors", "output", "cache_dir", "k", "latency_k", "latency_queries", "algorithms",
           "threads", "query_scale", "repeats", "latency_rounds", "max_docs", "batch_size", "device", "dtype", "encode_threads",
           "plots", "rerank", "rerank_depth", "rerank_queries")
# what python -m benchmarks.pipeline adds (its options; read here when present)
_BASELINE_OPTIONS = ("baselines", "bm25_k1", "bm25_b", "pisa_algorithm")


def config_from_args(args: argparse.Namespace):
    """The BenchmarkConfig the arguments describe (the CLI's whole logic)."""
    from lsr.eval.benchmark import BenchmarkConfig, load_registry_entry

    if args.registry and args.config:
        raise InputError("give --registry or --config, not both")
    if args.registry:
        base = load_registry_entry(args.registry).config.to_dict()
    elif args.config:
        from lsr.config import read_yaml_mapping

        base = read_yaml_mapping(args.config, "BenchmarkConfig file")
    else:
        base = {}
    d = dict(base)
    for key in (*_DIRECT, *_BASELINE_OPTIONS):
        v = getattr(args, key, None)
        if v is not None:
            d[key] = v
    if args.metrics:
        d["metrics"] = list(args.metrics)
    if getattr(args, "rerank_set", None):
        from lsr.rerank.base import reranker_config

        from .rerank import parse_settings

        if d.get("rerank") is None:
            raise InputError("--rerank-set goes with --rerank")
        name, rcfg = reranker_config(d["rerank"], **parse_settings(args.rerank_set))
        d["rerank"] = {"reranker": name, **rcfg.to_dict()}
    index = dict(d.get("index") or {})
    quant = quantization_from_args(args, index.get("quantization") or {})
    if quant:
        index["quantization"] = quant
    if args.block_size is not None:
        index["block_size"] = args.block_size
    if index:
        d["index"] = index
    if not d.get("dataset"):
        raise InputError("give --dataset (e.g. beir/scifact/test), --registry NAME or --config FILE")
    return BenchmarkConfig.from_dict(d)


def run(args: argparse.Namespace, make_baselines=None) -> int:
    """Run the benchmark the arguments describe; ``make_baselines(config)`` gives the
    :class:`~lsr.eval.benchmark.Baseline` objects to measure too (``lsr benchmark``: none)."""
    from lsr.eval.benchmark import load_registry_entry, registry_entries, run_benchmark

    if args.list_registry:
        for name in registry_entries():
            e = load_registry_entry(name)
            print(f"{name}: {e.description}")
        return 0
    config = config_from_args(args)
    quiet = args.no_progress

    def log(msg: str) -> None:
        if not quiet:
            print(f"{args.prog_name}: {msg}", file=sys.stderr, flush=True)

    baselines = make_baselines(config) if make_baselines is not None else ()
    result = run_benchmark(config, log=log, progress=not quiet and sys.stderr.isatty(), baselines=baselines)
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        path = result.files.get("results")
        rel = os.path.relpath(path)
        print(result.table())
        print(f"\nresults: {path if rel.startswith('..') else rel}")
    return 0
