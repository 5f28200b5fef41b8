"""``lsr index``: build an index from term-weight vectors, or from text with an encoder in one step."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from contextlib import contextmanager

from .argtypes import positive_int

_EPILOG = """\
From text in one step: `lsr index --encoder ENCODER --corpus SRC -o DIR` encodes the corpus (the
sources and model/runtime options of `lsr encode`) and indexes it with no intermediate files; the
index records the encoder and its runtime so `lsr search --query-format text` encodes queries the
same way, and gives the same index as `lsr encode` followed by `lsr index` on its output.
Progress is kept in DIR.partial/ (encoded parts, written at least every minute of encoding, and
state.json with the settings and the corpus fingerprint): rerunning the same command continues
where it stopped, a rerun with other encoder settings or another corpus is refused (--restart
discards DIR.partial), `lsr info DIR` reports how far it got, and DIR.partial is removed once DIR
is in place. --store-text keeps the documents' text in the index (Index.doc_text).

--overwrite replaces only an lsr index (or an empty directory) at OUTPUT, never a file or another
directory, nor an OUTPUT that is or contains an input; the new index takes the old one's place in one
atomic exchange, so a reader finds one or the other (Linux; elsewhere OUTPUT is missing for the moment
between two renames). A build stopped by Ctrl-C or SIGTERM removes its OUTPUT.building-* directory; one
left by a killed process (SIGKILL, a crash) is removed, with a warning, by the next build in the same
directory. An unfinished `lsr encode` directory is refused unless --allow-partial.
Threads: by default torch runs as many threads as there are free CPUs, chosen again every few
seconds; on a shared machine, OMP_WAIT_POLICY=PASSIVE in the environment also keeps idle torch threads from
spinning (see `lsr encode --help`).

examples:
  lsr index vectors/ -o my-index
  lsr index --encoder splade-v3 --corpus corpus.jsonl -o my-index --store-text
  lsr index --encoder models/splade-tiny --corpus irds:beir/scifact -o scifact-index --threads 2
"""

# options that only apply to a build from text, with their defaults (refused without --encoder)
_TEXT_ONLY = {"corpus": None, "store_text": False, "restart": False, "limit": None, "part_size": None,
              "expansion_field": None,
              "revision": None, "model_path": None, "query_encoder": None, "doc_max_length": None,
              "query_max_length": None, "doc_top_k": None, "query_top_k": None, "doc_min_weight": None,
              "query_min_weight": None, "device": "cpu", "dtype": "float32", "threads": None, "batch_size": 32,
              "d2q_model": None, "d2q_gguf_file": None, "d2q_num_queries": None, "d2q_max_new_tokens": None,
              "d2q_top_k": None, "d2q_top_p": None, "d2q_temperature": None, "d2q_seed": None, "no_d2q": False,
              "ray": None, "ray_actors": None}


def register(sub: argparse._SubParsersAction) -> None:
    from .encode import add_encoder_args

    p = sub.add_parser(
        "index", help="build an inverted index from term-weight vectors, or from text with --encoder",
        description="Build a quantised, memory-mapped inverted index from documents with term weights: "
                    "JSONL lines {\"id\": ..., \"contents\": ..., \"vector\": {term: weight}} (Anserini's "
                    "JsonVectorCollection; .gz accepted), or a directory of such files as `lsr encode` writes "
                    "(its encoder.json is recorded so text queries can be encoded at search time); or, with "
                    "--encoder and --corpus, from text in one step.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", nargs="*", help="JSONL file(s) (.jsonl, .jsonl.gz) or vector collection directories, "
                                            "read in the order given (not with --encoder)")
    p.add_argument("-o", "--output", required=True, help="index directory to create")
    text = p.add_argument_group("from text in one step")
    text.add_argument("--encoder", metavar="ENCODER",
                      help="encode --corpus with this encoder (a registered name, YAML preset, checkpoint "
                           "directory or hub id, as `lsr encode` takes) and index it")
    text.add_argument("--corpus", metavar="SRC", help="documents: JSONL, TSV (optionally .gz) or irds:<id>")
    text.add_argument("--store-text", action="store_true",
                      help="keep the documents' text in the index (zlib blocks, memory-mapped; Index.doc_text)")
    text.add_argument("--restart", action="store_true",
                      help="discard the progress of an earlier interrupted build in OUTPUT.partial/ and start again")
    text.add_argument("--limit", type=positive_int, metavar="N", help="index only the first N documents")
    text.add_argument("--part-size", type=positive_int, metavar="N",
                      help="at most N encoded documents per part in OUTPUT.partial/ (default 100000); a part is "
                           "also written after a minute of encoding")
    text.add_argument("--expansion-field", metavar="NAME",
                      help="JSONL field (TSV: a third column) with doc2query text for each document")
    p.add_argument("--config", help="YAML file with index settings (keys of IndexConfig; "
                                    "command-line options override it)")
    p.add_argument("--quantization", choices=["auto", "max", "fixed", "float"],
                   help="auto (default): keep integer weights that fit, else max; max: scale = (2^bits-1) / "
                        "max weight; fixed: impact = round(weight * --scale); float: no quantisation")
    p.add_argument("--bits", type=int, choices=[8, 16], help="impact width in bits (default 8)")
    p.add_argument("--scale", type=float, help="scale for --quantization fixed (e.g. 100, as Anserini)")
    p.add_argument("--block-size", type=int, help="postings per block for block maxima (default 64)")
    p.add_argument("--range-block-docs", type=int,
                   help="documents per doc-range block: doc ids are stored as (block, offset) and the "
                        "block-max traversal bounds blocks (power of two up to 256; default 16)")
    p.add_argument("--reorder", choices=["none", "bp"],
                   help="doc id order: none (default: collection order) or bp (recursive graph bisection, "
                        "for collections whose order has no locality)")
    p.add_argument("--run-postings", type=int,
                   help="postings buffered before a sorted run is spilled to disk; bounds memory at about "
                        "24 bytes a posting (default 32,000,000)")
    p.add_argument("--shards", type=positive_int, metavar="S",
                   help="write a sharded index: build as usual, then split the documents into S contiguous "
                        "ranges, each a normal index in OUTPUT/shard-NNNNN with one global quantisation "
                        "(lsr.index.sharded; needs the index's disk space twice while it splits)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing lsr index (or empty directory) at --output, atomically; anything "
                        "else there is refused")
    p.add_argument("--allow-partial", action="store_true",
                   help="index an unfinished `lsr encode` directory (the documents encoded so far; without this "
                        "it is refused)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar or lines (and, with --encoder, no progress bars or INFO lines from "
                        "transformers and ir_datasets)")
    add_encoder_args(p, queries=False)
    p.set_defaults(func=run)


def quantization_from_args(args: argparse.Namespace, q: dict) -> dict:
    """``q`` (QuantizationConfig settings) with --quantization / --bits / --scale applied (a new dict)."""
    q = dict(q)
    if args.quantization is not None:
        q["method"] = args.quantization
        if args.quantization != "fixed":
            q["scale"] = None
    if args.bits is not None:
        q["bits"] = args.bits
    if args.scale is not None:
        q["scale"] = args.scale
    return q


def config_from_args(args: argparse.Namespace):
    from lsr.config import IndexConfig, QuantizationConfig

    base = IndexConfig.from_yaml(args.config) if args.config else IndexConfig()
    q = quantization_from_args(args, base.quantization.to_dict())
    d = base.to_dict()
    d["quantization"] = QuantizationConfig.from_dict(q)
    if args.block_size is not None:
        d["block_size"] = args.block_size
    if args.run_postings is not None:
        d["run_postings"] = args.run_postings
    if args.range_block_docs is not None:
        d["range_block_docs"] = args.range_block_docs
    if args.reorder is not None:
        d["reorder"] = args.reorder
    return IndexConfig.from_dict(d)


def run(args: argparse.Namespace) -> int:
    from lsr.errors import InputError

    if args.encoder:
        if args.input:
            raise InputError("give either term-weight inputs or --encoder with --corpus, not both")
        if not args.corpus:
            raise InputError("--encoder needs --corpus (the documents to encode)")
        if args.allow_partial:
            raise InputError("--allow-partial applies to term-weight inputs (lsr encode directories)")
        with terminate_cleanly("the build's temporary files were removed; OUTPUT.partial/ keeps the encoded "
                               "parts: rerun to continue"):
            return _run_text(args)
    if not args.input:
        raise InputError("nothing to index: give term-weight inputs, or --encoder and --corpus")
    given = [k for k, default in _TEXT_ONLY.items() if getattr(args, k, default) != default]
    if given:
        raise InputError(f"--{given[0].replace('_', '-')} applies to a build from text (with --encoder)")
    from lsr.index import build_index

    with terminate_cleanly("the build's temporary files were removed"):
        ix, _ = _maybe_sharded(args, lambda out: build_index(
            args.input, out, config_from_args(args), overwrite=args.overwrite,
            progress=not args.no_progress and sys.stderr.isatty(), allow_partial=args.allow_partial))
    _summary(ix)
    return 0


def _maybe_sharded(args: argparse.Namespace, build):
    """``(index, built)``: ``build(args.output)``, or with --shards the index built aside and split into
    a sharded index at --output (:func:`lsr.index.sharded.build_sharded`)."""
    if not args.shards:
        ix = build(args.output)
        return ix, ix
    from lsr.index.sharded import build_sharded

    return build_sharded(build, args.output, args.shards, overwrite=args.overwrite, progress=not args.no_progress)


class Terminated(BaseException):
    """Raised by SIGTERM inside :func:`terminate_cleanly` (a BaseException, like KeyboardInterrupt)."""


@contextmanager
def terminate_cleanly(cleaned: str):
    """While the block runs, SIGTERM unwinds it like Ctrl-C: ``with`` blocks clean up (a build removes its
    ``.building-*`` directory), then ``lsr: terminated; <cleaned>`` is printed and the process exits
    with status 143 (128 + SIGTERM). A second SIGTERM during the cleanup is ignored. The previous
    handler is restored when the block ends. Outside the main thread (where Python cannot take
    signals) the block just runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except Terminated:
        print(f"lsr: terminated; {cleaned}", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _run_text(args: argparse.Namespace) -> int:
    from lsr.index.text_index import build_index_from_text
    from lsr.progress import quiet_libraries

    from .encode import load_from_args, ray_from_args

    config = config_from_args(args)
    ray = ray_from_args(args)
    with quiet_libraries(args.no_progress, irds=args.corpus.startswith("irds:")):
        encoder = load_from_args(args)
        ix, built = _maybe_sharded(args, lambda out: build_index_from_text(
            args.corpus, out, config, encoder=encoder, batch_size=args.batch_size,
            limit=args.limit, expansion_field=args.expansion_field,
            store_text=args.store_text, overwrite=args.overwrite, restart=args.restart,
            progress=not args.no_progress, ray=ray,
            **({"part_size": args.part_size} if args.part_size else {})))
    rep = built.encode_report
    encoded = rep["docs"] - rep["resumed_from"]
    rate = f", {encoded / rep['seconds']:.1f} docs/s" if encoded and rep["seconds"] > 0 else ""
    resumed = f" (resumed after {rep['resumed_from']})" if rep["resumed_from"] else ""
    runtime = built.manifest["encoder"]["runtime"]
    where = (f"Ray ({runtime['ray']['actors']} actor(s), {runtime['threads']} thread(s) each)" if "ray" in runtime
             else f"{runtime['threads']} thread(s)")
    print(f"lsr index: encoded {encoded} documents{resumed} in {rep['seconds']:.1f}s{rate} on "
          f"{where}; truncated {rep['truncated']} at {encoder.config.doc.max_length} "
          f"tokens; empty {rep['empty']}", file=sys.stderr)
    _summary(ix)
    return 0


def _summary(ix) -> None:
    m = ix.manifest
    q = m["quantization"]
    if getattr(ix, "is_sharded", False):
        print(f"indexed {ix.num_documents} documents, {ix.num_terms} terms, {ix.num_postings} postings "
              f"in {ix.num_shards} shard(s) -> {ix.path} ({ix.size_bytes() / 2**20:.1f} MiB; "
              f"impacts {m['impact_dtype']}, quantization {q['method']}, scale {q['scale']:.6g})")
        return
    print(f"indexed {ix.num_documents} documents, {ix.num_terms} terms, {ix.num_postings} postings "
          f"in {m['build_seconds']:.1f} s -> {ix.path} ({ix.size_bytes() / 2**20:.1f} MiB; "
          f"impacts {m['impact_dtype']}, quantization {q['method']}, scale {q['scale']:.6g}"
          f"{'; text stored' if ix.has_text else ''})")
